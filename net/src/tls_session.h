#pragma once
// TlsSession: one OpenSSL SSL object driven through two memory BIOs.
//
// Ciphertext received by the connection is fed in with Feed(); Handshake() and
// Read() advance the state machine; whatever TLS wants to send (handshake
// messages, records, alerts, close_notify) accumulates in the output BIO and the
// connection moves it into its ordered send queue with TakeOutput(). Nothing here
// does I/O, so the same recv and send paths serve plaintext and TLS.
// Thread-safety: owned by one connection on one worker thread. The OpenSSL
// error queue is thread-local, so reasons are read right after the failing call.

#include <openssl/ssl.h>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <string>

namespace ringline::net::detail {

class TlsSession {
 public:
  // Server side of a handshake (accepted connection or STARTTLS).
  static std::unique_ptr<TlsSession> NewServer(SSL_CTX* ctx);
  // Client side: `server_name` goes out as SNI and, when `verify_host`, must
  // match the server certificate (SSL_set1_host).
  static std::unique_ptr<TlsSession> NewClient(SSL_CTX* ctx, const std::string& server_name,
                                               bool verify_host);
  TlsSession(const TlsSession&) = delete;
  TlsSession& operator=(const TlsSession&) = delete;
  ~TlsSession();

  void Feed(const uint8_t* p, std::size_t n);
  // 1: handshake complete, 0: in progress, -1: failed (see reason()).
  int Handshake();
  // > 0: plaintext bytes written to dst; 0: needs more input; -1: the peer sent
  // close_notify; -2: error (see reason()).
  int Read(uint8_t* dst, std::size_t cap);
  // Encrypts all of [p, p+n) into the output BIO. False on error.
  bool Write(const uint8_t* p, std::size_t n);
  // Queues close_notify.
  void Shutdown();
  std::size_t Pending() const;
  std::size_t TakeOutput(uint8_t* dst, std::size_t cap);

  const std::string& reason() const { return reason_; }
  std::string version() const;
  std::string cipher() const;
  std::string peer_subject() const;
  // The PSK identity the peer authenticated with; empty without a PSK.
  const std::string& psk_identity() const { return psk_identity_; }
  // For the server's PSK callbacks: records the identity on the session that
  // owns `ssl` (a no-op for an SSL object no TlsSession owns).
  static void NotePskIdentity(SSL* ssl, std::string identity);

 private:
  explicit TlsSession(SSL* ssl);
  void SetReason(int ssl_ret, const char* what);

  SSL* ssl_;
  BIO* rbio_;  // owned by ssl_
  BIO* wbio_;  // owned by ssl_
  std::string reason_;
  std::string psk_identity_;
};

}  // namespace ringline::net::detail
