// ConnState: TLS over the connection's own recv and send paths.
#include <cerrno>

#include "conn_state.h"
#include "net_worker.h"
#include "ringline/log.h"
#include "ringline/worker.h"
#include "tls_session.h"

namespace ringline::net::detail {

void ConnState::AttachTls(std::unique_ptr<TlsSession> tls) {
  tls_ = std::move(tls);
  hs_state_ = 0;
  close_notify_sent_ = false;
  // Bytes the peer sent after its plaintext request (STARTTLS) are the start of
  // its handshake: they are ciphertext from here on, never application data.
  if (!acc_.empty()) {
    tls_->Feed(acc_.data().data(), acc_.size());
    acc_.Clear();
  }
  DriveTls();
}

void ConnState::OnCipher(const uint8_t* p, std::size_t n) {
  tls_->Feed(p, n);
  DriveTls();
}

void ConnState::DriveTls() {
  if (hs_state_ == 0) {
    const int r = tls_->Handshake();
    DrainTlsOutput();  // handshake messages (or an alert) go out in order
    if (r < 0) {
      FailHandshake(EPROTO, tls_->reason().c_str());
      return;
    }
    if (r == 0) return;
    hs_state_ = 1;
    nw_.metrics().tls_handshakes.Add();
    if (!tls_->psk_identity().empty()) {
      RL_LOG_INFO("TLS with %s: %s, PSK identity '%s'", peer_.ToString(), tls_->version(),
                  tls_->psk_identity());
    }
    if (PromiseBase* p = std::exchange(hs_waiter_, nullptr)) nw_.worker().internals().Schedule(p);
    PumpSendWaiters();
  } else if (hs_state_ != 1) {
    return;
  }
  uint8_t* scratch = nw_.scratch();
  for (;;) {
    const int k = tls_->Read(scratch, NetWorker::kScratch);
    if (k > 0) {
      Deliver(scratch, static_cast<std::size_t>(k));
      continue;
    }
    if (k == -1) {
      eof_ = true;  // close_notify
    } else if (k == -2) {
      RL_LOG_WARN("TLS connection to %s: %s", peer_.ToString(), tls_->reason());
      SetRecvError(EPROTO);
    }
    break;
  }
  DrainTlsOutput();  // post-handshake messages, key updates
  WakeRecv();
}

void ConnState::FailHandshake(int err, const char* why) {
  if (hs_state_ != 0) return;
  hs_state_ = err;
  nw_.metrics().tls_failures.Add();
  RL_LOG_WARN("TLS handshake with %s failed: %s", peer_.ToString(), why);
  if (PromiseBase* p = std::exchange(hs_waiter_, nullptr)) nw_.worker().internals().Schedule(p);
  SetRecvError(EPROTO);
  // A graceful close still delivers the alert OpenSSL queued.
  BeginClose(true);
}

}  // namespace ringline::net::detail
