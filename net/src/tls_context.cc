#include <openssl/err.h>
#include <openssl/ssl.h>

#include <cstring>
#include <fstream>
#include <map>
#include <vector>

#include "absl/strings/escaping.h"
#include "absl/strings/str_cat.h"
#include "ringline/net/tls.h"
#include "tls_session.h"

namespace ringline::net {

namespace detail {
// identity -> key, from a psktool file.
struct PskKeys {
  std::map<std::string, std::vector<unsigned char>, std::less<>> keys;
};
}  // namespace detail

namespace {

// OpenSSL's limit for a TLS 1.2 PSK (PSK_MAX_PSK_LEN).
constexpr std::size_t kMaxPskBytes = 512;

absl::StatusOr<std::unique_ptr<detail::PskKeys>> LoadPskFile(const std::string& path) {
  std::ifstream in(path);
  if (!in) {
    return absl::InvalidArgumentError(absl::StrCat("TLS PSK file ", path, ": cannot be read"));
  }
  auto out = std::make_unique<detail::PskKeys>();
  std::string line;
  for (int n = 1; std::getline(in, line); ++n) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
    if (line.empty()) continue;
    const auto bad = [&](const std::string& why) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS PSK file ", path, ":", n, ": ", why,
                       " (expected identity:hexkey, as `psktool -u NAME -p FILE` writes)"));
    };
    const std::size_t colon = line.find(':');
    if (colon == std::string::npos) return bad("no ':' between identity and key");
    if (colon == 0) return bad("empty identity");
    const std::string hex = line.substr(colon + 1);
    if (hex.empty() || hex.size() % 2 != 0 ||
        hex.find_first_not_of("0123456789abcdefABCDEF") != std::string::npos) {
      return bad("the key is not an even number of hex digits");
    }
    if (hex.size() / 2 > kMaxPskBytes) {
      return bad(absl::StrCat("the key is longer than ", kMaxPskBytes, " bytes"));
    }
    const std::string bytes = absl::HexStringToBytes(hex);
    if (!out->keys
             .emplace(line.substr(0, colon), std::vector<unsigned char>(bytes.begin(), bytes.end()))
             .second) {
      return bad(absl::StrCat("identity '", line.substr(0, colon), "' appears twice"));
    }
  }
  if (out->keys.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("TLS PSK file ", path, ": no keys in it"));
  }
  return out;
}

const detail::PskKeys* KeysOf(SSL* ssl) {
  return static_cast<const detail::PskKeys*>(SSL_CTX_get_app_data(SSL_get_SSL_CTX(ssl)));
}

// TLS 1.3: an external PSK is a session whose master key is the PSK. The
// cipher fixes the binder's hash: SHA-256, which clients assume for external
// PSKs unless told otherwise (RFC 8446 4.2.11).
int FindPskSession(SSL* ssl, const unsigned char* identity, std::size_t len, SSL_SESSION** out) {
  *out = nullptr;
  const detail::PskKeys* psk = KeysOf(ssl);
  const std::string id(reinterpret_cast<const char*>(identity), len);
  if (!psk) return 1;
  auto it = psk->keys.find(id);
  if (it == psk->keys.end()) return 1;  // unknown: go on without a PSK
  static constexpr unsigned char kAes128GcmSha256[] = {0x13, 0x01};
  const SSL_CIPHER* cipher = SSL_CIPHER_find(ssl, kAes128GcmSha256);
  SSL_SESSION* s = SSL_SESSION_new();
  if (!cipher || !s || SSL_SESSION_set1_master_key(s, it->second.data(), it->second.size()) != 1 ||
      SSL_SESSION_set_cipher(s, cipher) != 1 ||
      SSL_SESSION_set_protocol_version(s, TLS1_3_VERSION) != 1) {
    SSL_SESSION_free(s);
    return 0;  // fails the handshake
  }
  detail::TlsSession::NotePskIdentity(ssl, id);
  *out = s;
  return 1;
}

// TLS 1.2 PSK cipher suites: the key's length, or 0 for an unknown identity.
unsigned int PskServerKey(SSL* ssl, const char* identity, unsigned char* key, unsigned int max) {
  const detail::PskKeys* psk = KeysOf(ssl);
  if (!psk || !identity) return 0;
  auto it = psk->keys.find(std::string_view(identity));
  if (it == psk->keys.end() || it->second.size() > max) return 0;
  std::memcpy(key, it->second.data(), it->second.size());
  detail::TlsSession::NotePskIdentity(ssl, identity);
  return static_cast<unsigned int>(it->second.size());
}

std::string OpensslReason() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out.empty() ? "unknown OpenSSL error" : out;
}

int ProtoVersion(TlsVersion v) { return v == TlsVersion::kTls13 ? TLS1_3_VERSION : TLS1_2_VERSION; }

absl::Status Configure(SSL_CTX* ctx, TlsVersion min, TlsVersion max, const std::string& cert,
                       const std::string& key) {
  SSL_CTX_set_min_proto_version(ctx, ProtoVersion(min));
  SSL_CTX_set_max_proto_version(ctx, ProtoVersion(max));
  // Records are queued whole; the buffer behind them may move between writes.
  SSL_CTX_set_mode(ctx, SSL_MODE_ACCEPT_MOVING_WRITE_BUFFER | SSL_MODE_RELEASE_BUFFERS);
  if (!cert.empty()) {
    if (SSL_CTX_use_certificate_chain_file(ctx, cert.c_str()) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS certificate file ", cert, ": ", OpensslReason()));
    }
    if (SSL_CTX_use_PrivateKey_file(ctx, key.c_str(), SSL_FILETYPE_PEM) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS private key file ", key, ": ", OpensslReason()));
    }
    if (SSL_CTX_check_private_key(ctx) != 1) {
      return absl::InvalidArgumentError(absl::StrCat(
          "TLS private key ", key, " does not match certificate ", cert, ": ", OpensslReason()));
    }
  }
  return absl::OkStatus();
}

}  // namespace

absl::StatusOr<std::shared_ptr<TlsServerContext>> TlsServerContext::Create(
    const TlsServerOptions& o) {
  if (o.cert_file.empty() != o.key_file.empty() || (o.cert_file.empty() && o.psk_file.empty())) {
    return absl::InvalidArgumentError(
        "TLS server: give cert_file and key_file, or psk_file, or all three");
  }
  std::unique_ptr<detail::PskKeys> psk;
  if (!o.psk_file.empty()) {
    auto loaded = LoadPskFile(o.psk_file);
    if (!loaded.ok()) return loaded.status();
    psk = std::move(*loaded);
  }
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", OpensslReason()));
  std::shared_ptr<TlsServerContext> out(new TlsServerContext(ctx));
  if (auto st = Configure(ctx, o.min_version, o.max_version, o.cert_file, o.key_file); !st.ok()) {
    return st;
  }
  // TLS 1.2 PSK suites are not in OpenSSL's default list.
  const std::string ciphers =
      !o.cipher_list.empty() ? o.cipher_list : (psk ? "DEFAULT:PSK" : std::string());
  if (!ciphers.empty() && SSL_CTX_set_cipher_list(ctx, ciphers.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS cipher list \"", ciphers, "\": ", OpensslReason()));
  }
  if (psk) {
    out->psk_ = std::move(psk);
    // The callbacks find the keys through the context; they outlive it (member).
    SSL_CTX_set_app_data(ctx, const_cast<detail::PskKeys*>(out->psk_.get()));
    SSL_CTX_set_psk_find_session_callback(ctx, &FindPskSession);
    SSL_CTX_set_psk_server_callback(ctx, &PskServerKey);
  }
  if (!o.client_ca_file.empty()) {
    if (SSL_CTX_load_verify_locations(ctx, o.client_ca_file.c_str(), nullptr) != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS client CA file ", o.client_ca_file, ": ", OpensslReason()));
    }
    STACK_OF(X509_NAME)* names = SSL_load_client_CA_file(o.client_ca_file.c_str());
    if (names) SSL_CTX_set_client_CA_list(ctx, names);
    SSL_CTX_set_verify(
        ctx, SSL_VERIFY_PEER | (o.require_client_cert ? SSL_VERIFY_FAIL_IF_NO_PEER_CERT : 0),
        nullptr);
  }
  // Sessions are not resumed across workers' SSL objects by default; a cache
  // keyed per context is fine (OpenSSL locks it).
  static const unsigned char kSidCtx[] = "ringline";
  SSL_CTX_set_session_id_context(ctx, kSidCtx, sizeof kSidCtx - 1);
  return out;
}

TlsServerContext::TlsServerContext(SSL_CTX* ctx) : ctx_(ctx) {}
TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }
std::size_t TlsServerContext::psk_identities() const { return psk_ ? psk_->keys.size() : 0; }

absl::StatusOr<std::shared_ptr<TlsClientContext>> TlsClientContext::Create(
    const TlsClientOptions& o) {
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_client_method());
  if (!ctx) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", OpensslReason()));
  std::shared_ptr<TlsClientContext> out(new TlsClientContext(ctx, o.verify_peer));
  if (!o.cert_file.empty() && o.key_file.empty()) {
    return absl::InvalidArgumentError("TLS client: cert_file needs key_file");
  }
  if (auto st = Configure(ctx, o.min_version, o.max_version, o.cert_file, o.key_file); !st.ok()) {
    return st;
  }
  if (o.verify_peer) {
    const int ok = o.ca_file.empty()
                       ? SSL_CTX_set_default_verify_paths(ctx)
                       : SSL_CTX_load_verify_locations(ctx, o.ca_file.c_str(), nullptr);
    if (ok != 1) {
      return absl::InvalidArgumentError(
          absl::StrCat("TLS CA file ", o.ca_file.empty() ? "(system default)" : o.ca_file, ": ",
                       OpensslReason()));
    }
    SSL_CTX_set_verify(ctx, SSL_VERIFY_PEER, nullptr);
  } else {
    SSL_CTX_set_verify(ctx, SSL_VERIFY_NONE, nullptr);
  }
  return out;
}

TlsClientContext::~TlsClientContext() { SSL_CTX_free(ctx_); }

}  // namespace ringline::net
