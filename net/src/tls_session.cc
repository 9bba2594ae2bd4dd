#include "tls_session.h"

#include <openssl/err.h>
#include <openssl/x509.h>
#include <openssl/x509v3.h>

#include <climits>

#include "absl/strings/str_cat.h"

namespace ringline::net::detail {
namespace {
std::string DrainErrors() {
  std::string out;
  while (unsigned long e = ERR_get_error()) {
    char buf[256];
    ERR_error_string_n(e, buf, sizeof buf);
    if (!out.empty()) out += "; ";
    out += buf;
  }
  return out;
}
}  // namespace

TlsSession::TlsSession(SSL* ssl) : ssl_(ssl) {
  rbio_ = BIO_new(BIO_s_mem());
  wbio_ = BIO_new(BIO_s_mem());
  // An empty memory BIO reports "retry" instead of EOF, which is what a
  // non-blocking transport looks like to OpenSSL.
  BIO_set_mem_eof_return(rbio_, -1);
  SSL_set_bio(ssl_, rbio_, wbio_);
  SSL_set_app_data(ssl_, this);  // for NotePskIdentity; cleared with ssl_
}

void TlsSession::NotePskIdentity(SSL* ssl, std::string identity) {
  if (auto* self = static_cast<TlsSession*>(SSL_get_app_data(ssl))) {
    self->psk_identity_ = std::move(identity);
  }
}

TlsSession::~TlsSession() { SSL_free(ssl_); }

std::unique_ptr<TlsSession> TlsSession::NewServer(SSL_CTX* ctx) {
  SSL* ssl = SSL_new(ctx);
  if (!ssl) return nullptr;
  std::unique_ptr<TlsSession> s(new TlsSession(ssl));
  SSL_set_accept_state(ssl);
  return s;
}

std::unique_ptr<TlsSession> TlsSession::NewClient(SSL_CTX* ctx, const std::string& server_name,
                                                  bool verify_host) {
  SSL* ssl = SSL_new(ctx);
  if (!ssl) return nullptr;
  std::unique_ptr<TlsSession> s(new TlsSession(ssl));
  SSL_set_connect_state(ssl);
  if (!server_name.empty()) {
    SSL_set_tlsext_host_name(ssl, server_name.c_str());
    if (verify_host) {
      // An IP literal is checked against the certificate's IP SANs, a name
      // against its DNS names.
      X509_VERIFY_PARAM* param = SSL_get0_param(ssl);
      if (X509_VERIFY_PARAM_set1_ip_asc(param, server_name.c_str()) != 1) {
        ERR_clear_error();
        SSL_set_hostflags(ssl, X509_CHECK_FLAG_NO_PARTIAL_WILDCARDS);
        SSL_set1_host(ssl, server_name.c_str());
      }
    }
  }
  return s;
}

void TlsSession::Feed(const uint8_t* p, std::size_t n) {
  while (n > 0) {
    const int k = BIO_write(rbio_, p, static_cast<int>(std::min<std::size_t>(n, INT_MAX)));
    if (k <= 0) return;  // a memory BIO only fails when out of memory
    p += k;
    n -= static_cast<std::size_t>(k);
  }
}

void TlsSession::SetReason(int ssl_ret, const char* what) {
  const int err = SSL_get_error(ssl_, ssl_ret);
  std::string detail = DrainErrors();
  const long verify = SSL_get_verify_result(ssl_);
  if (verify != X509_V_OK) {
    detail =
        absl::StrCat("certificate verification failed: ", X509_verify_cert_error_string(verify),
                     detail.empty() ? "" : " (", detail, detail.empty() ? "" : ")");
  }
  if (detail.empty()) {
    detail =
        err == SSL_ERROR_SYSCALL ? "unexpected end of stream" : absl::StrCat("SSL error ", err);
  }
  reason_ = absl::StrCat(what, ": ", detail);
}

int TlsSession::Handshake() {
  ERR_clear_error();
  const int r = SSL_do_handshake(ssl_);
  if (r == 1) return 1;
  const int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
  SetReason(r, "handshake");
  return -1;
}

int TlsSession::Read(uint8_t* dst, std::size_t cap) {
  ERR_clear_error();
  const int r = SSL_read(ssl_, dst, static_cast<int>(std::min<std::size_t>(cap, INT_MAX)));
  if (r > 0) return r;
  const int err = SSL_get_error(ssl_, r);
  if (err == SSL_ERROR_WANT_READ || err == SSL_ERROR_WANT_WRITE) return 0;
  if (err == SSL_ERROR_ZERO_RETURN) return -1;
  SetReason(r, "read");
  return -2;
}

bool TlsSession::Write(const uint8_t* p, std::size_t n) {
  while (n > 0) {
    ERR_clear_error();
    const int r = SSL_write(ssl_, p, static_cast<int>(std::min<std::size_t>(n, 1 << 20)));
    if (r <= 0) {
      SetReason(r, "write");
      return false;
    }
    p += r;
    n -= static_cast<std::size_t>(r);
  }
  return true;
}

void TlsSession::Shutdown() {
  ERR_clear_error();
  SSL_shutdown(ssl_);
  ERR_clear_error();
}

std::size_t TlsSession::Pending() const { return BIO_ctrl_pending(wbio_); }

std::size_t TlsSession::TakeOutput(uint8_t* dst, std::size_t cap) {
  const int k = BIO_read(wbio_, dst, static_cast<int>(std::min<std::size_t>(cap, INT_MAX)));
  return k > 0 ? static_cast<std::size_t>(k) : 0;
}

std::string TlsSession::version() const { return SSL_get_version(ssl_); }

std::string TlsSession::cipher() const {
  const char* c = SSL_get_cipher_name(ssl_);
  return c ? c : "";
}

std::string TlsSession::peer_subject() const {
  X509* cert = SSL_get1_peer_certificate(ssl_);
  if (!cert) return "";
  char buf[512];
  X509_NAME_oneline(X509_get_subject_name(cert), buf, sizeof buf);
  X509_free(cert);
  return buf;
}

}  // namespace ringline::net::detail
