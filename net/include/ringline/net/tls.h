#pragma once
// TLS 1.3/1.2 contexts (OpenSSL 3). A context is built once from files, is
// immutable afterwards and is shared by every worker (OpenSSL locks the few
// things SSL_new touches); each connection gets its own SSL session driven
// through memory BIOs over the connection's ordinary recv and send paths (the
// kernel here has no kTLS).
//
// Handshake failures are logged with OpenSSL's reason (and the certificate
// verification error, when that is the cause) and counted in
// NetMetrics::tls_failures.
//
// Pre-shared keys (TlsServerOptions::psk_file): TLS 1.3 external PSKs (the
// key becomes the session's resumption secret, with TLS_AES_128_GCM_SHA256's
// hash for the binder, which is what GnuTLS clients such as libnbd use) and
// TLS 1.2 PSK cipher suites. A client whose identity is unknown falls back to
// certificate authentication, and fails when the server has no certificate;
// a known identity with the wrong key fails the handshake (binder or Finished
// mismatch). The identity a client authenticated with is logged at info level
// when the handshake completes.

#include <memory>
#include <string>

#include "absl/status/statusor.h"

using SSL_CTX = struct ssl_ctx_st;

namespace ringline::net {

namespace detail {
struct PskKeys;
}

enum class TlsVersion { kTls12, kTls13 };

struct TlsServerOptions {
  // PEM certificate chain (leaf first) and its private key. Both, or neither
  // when psk_file is set (a PSK-only server).
  std::string cert_file;
  std::string key_file;
  // Pre-shared keys in GnuTLS psktool's format (as nbdkit and qemu-nbd read
  // them): one "identity:hexkey" per line, identities without ':'. Read once
  // by Create(); the keys stay in the context's memory.
  std::string psk_file;
  // Non-empty: ask for a client certificate and verify it against these CAs.
  std::string client_ca_file;
  bool require_client_cert = false;  // refuse clients without one (with client_ca_file)
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
  std::string cipher_list;  // TLS 1.2 ciphers (OpenSSL syntax); empty: OpenSSL default
};

struct TlsClientOptions {
  std::string ca_file;  // PEM CA bundle; empty: the system's default trust store
  bool verify_peer = true;
  std::string cert_file;  // optional client certificate
  std::string key_file;
  TlsVersion min_version = TlsVersion::kTls12;
  TlsVersion max_version = TlsVersion::kTls13;
};

class TlsServerContext {
 public:
  // Loads and checks the files; InvalidArgument names the file and OpenSSL's reason.
  static absl::StatusOr<std::shared_ptr<TlsServerContext>> Create(const TlsServerOptions& options);
  TlsServerContext(const TlsServerContext&) = delete;
  TlsServerContext& operator=(const TlsServerContext&) = delete;
  ~TlsServerContext();
  SSL_CTX* raw() const { return ctx_; }
  // Identities in the PSK file (0 without one).
  std::size_t psk_identities() const;

 private:
  explicit TlsServerContext(SSL_CTX* ctx);
  SSL_CTX* ctx_;
  // Read by the PSK callbacks on any worker; immutable after Create().
  std::unique_ptr<const detail::PskKeys> psk_;
};

class TlsClientContext {
 public:
  static absl::StatusOr<std::shared_ptr<TlsClientContext>> Create(const TlsClientOptions& options);
  TlsClientContext(const TlsClientContext&) = delete;
  TlsClientContext& operator=(const TlsClientContext&) = delete;
  ~TlsClientContext();
  SSL_CTX* raw() const { return ctx_; }
  bool verify_peer() const { return verify_peer_; }

 private:
  TlsClientContext(SSL_CTX* ctx, bool verify) : ctx_(ctx), verify_peer_(verify) {}
  SSL_CTX* ctx_;
  bool verify_peer_;
};

}  // namespace ringline::net
