#include <openssl/err.h>
#include <openssl/ssl.h>

#include "absl/strings/str_cat.h"
#include "ringline/net/tls.h"

namespace ringline::net {
namespace {

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
  if (o.cert_file.empty() || o.key_file.empty()) {
    return absl::InvalidArgumentError("TLS server: cert_file and key_file are required");
  }
  ERR_clear_error();
  SSL_CTX* ctx = SSL_CTX_new(TLS_server_method());
  if (!ctx) return absl::InternalError(absl::StrCat("SSL_CTX_new: ", OpensslReason()));
  std::shared_ptr<TlsServerContext> out(new TlsServerContext(ctx));
  if (auto st = Configure(ctx, o.min_version, o.max_version, o.cert_file, o.key_file); !st.ok()) {
    return st;
  }
  if (!o.cipher_list.empty() && SSL_CTX_set_cipher_list(ctx, o.cipher_list.c_str()) != 1) {
    return absl::InvalidArgumentError(
        absl::StrCat("TLS cipher list \"", o.cipher_list, "\": ", OpensslReason()));
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

TlsServerContext::~TlsServerContext() { SSL_CTX_free(ctx_); }

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
