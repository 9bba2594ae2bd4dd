#pragma once
// UdpState: a UDP socket, its multishot RECVMSG on its own provided buffer
// ring, the queue of received datagrams and its in-flight sends. Owned by
// NetWorker; the socket is closed and the state freed once no handle refers to
// it and the kernel has returned every operation (the recvmsg template and the
// buffer ring live here until then).
// Thread-safety: worker-local.

#include <sys/socket.h>

#include <cstdint>
#include <deque>
#include <memory>
#include <vector>

#include "absl/status/status.h"
#include "buffer_ring.h"
#include "ringline/internal/op_slab.h"
#include "ringline/internal/promise_base.h"
#include "ringline/net/udp.h"
#include "ringline/unique_fd.h"
#include "ringline/wait_list.h"

namespace ringline::net::detail {

class NetWorker;

class UdpState {
 public:
  UdpState(NetWorker& nw, UniqueFd fd, const SocketAddress& local, const UdpOptions& options);
  UdpState(const UdpState&) = delete;
  UdpState& operator=(const UdpState&) = delete;
  ~UdpState();
  absl::Status Init();

  uint32_t ops() const { return ops_; }
  bool starved() const { return starved_; }
  bool closed() const { return closed_; }
  const SocketAddress& local() const { return local_; }
  int fd() const { return fd_.get(); }

  void Ref() { ++refs_; }
  void Unref();
  void Close();
  void OnBuffersPublished();

  // Receiving.
  bool receiving = false;
  bool HasDatagram() const { return !queue_.empty(); }
  Datagram PopDatagram();
  // The receiving task waits here for a datagram or the close.
  WaitList& datagram_or_close() { return recv_waiters_; }

  // Sending: the result of the operation in `slot` goes to *res, then `p` resumes.
  struct SendWait {
    OpSlot* slot = nullptr;
    PromiseBase* promise = nullptr;
    int32_t res = 0;
    bool done = false;
  };
  void StartSend(SendWait* w, std::span<const uint8_t> payload, const SocketAddress& to);
  void ForgetSend(SendWait* w);

 private:
  static void OnRecv(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnSend(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  void Arm();
  void MaybeFree();

  NetWorker& nw_;
  UniqueFd fd_;
  SocketAddress local_;
  UdpOptions opts_;
  uint32_t refs_ = 0;
  uint32_t ops_ = 0;
  bool closed_ = false;
  std::unique_ptr<BufferRing> ring_;
  msghdr msg_{};  // read by the kernel for every datagram of the multishot recvmsg
  OpSlot* recv_slot_ = nullptr;
  bool cancel_sent_ = false;
  bool starved_ = false;
  std::deque<Datagram> queue_;
  WaitList recv_waiters_;
  std::vector<SendWait*> sends_;
};

}  // namespace ringline::net::detail
