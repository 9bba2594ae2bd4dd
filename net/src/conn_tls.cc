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
  hs_ = Handshake::kRunning;
  close_notify_sent_ = false;
  // Bytes the peer sent after its plaintext request (STARTTLS) are the start of
  // its handshake: they are ciphertext from here on, never application data.
  rx_.TakeAllBuffered([this](const uint8_t* p, std::size_t n) { tls_->Feed(p, n); });
  DriveTls();
}

void ConnState::OnCipher(const uint8_t* p, std::size_t n) {
  tls_->Feed(p, n);
  DriveTls();
}

void ConnState::DriveTls() {
  if (hs_ == Handshake::kRunning) {
    const int r = tls_->Handshake();
    DrainTlsOutput();  // handshake messages (or an alert) go out in order
    if (r < 0) {
      FailHandshake(EPROTO, tls_->reason().c_str());
      return;
    }
    if (r == 0) return;
    hs_ = Handshake::kDone;
    nw_.metrics().tls_handshakes.Add();
    if (!tls_->psk_identity().empty()) {
      RL_LOG_INFO("TLS with %s: %s, PSK identity '%s'", peer_.ToString(), tls_->version(),
                  tls_->psk_identity());
    }
    handshake_done_.NotifyAll();
    PumpSendWaiters();
  } else if (hs_ != Handshake::kDone) {
    return;
  }
  uint8_t* scratch = nw_.scratch();
  for (;;) {
    const int k = tls_->Read(scratch, NetWorker::kScratch);
    if (k > 0) {
      rx_.Deliver(scratch, static_cast<std::size_t>(k));
      continue;
    }
    if (k == -1) {
      rx_.End();  // close_notify
    } else if (k == -2) {
      RL_LOG_WARN("TLS connection to %s: %s", peer_.ToString(), tls_->reason());
      rx_.Fail(EPROTO);
    }
    break;
  }
  DrainTlsOutput();  // post-handshake messages, key updates
  rx_.Notify();
}

void ConnState::FailHandshake(int err, const char* why) {
  if (hs_ != Handshake::kRunning) return;
  hs_ = Handshake::kFailed;
  hs_error_ = err;
  nw_.metrics().tls_failures.Add();
  RL_LOG_WARN("TLS handshake with %s failed: %s", peer_.ToString(), why);
  handshake_done_.NotifyAll();
  rx_.Fail(EPROTO);
  // A graceful close still delivers the alert OpenSSL queued.
  BeginClose(true);
}

}  // namespace ringline::net::detail
