#pragma once
// ListenerState: one worker's accept on a listening socket (possibly shared with
// other workers: see listener.h), re-armed single-shot after each connection,
// and the queue of accepted connections not yet taken by Accept(). Owned by NetWorker;
// freed once no handle references it and its accept has finally completed.
// Thread-safety: worker-local.

#include <chrono>
#include <cstdint>
#include <memory>
#include <vector>

#include "ringline/internal/op_slab.h"
#include "ringline/internal/promise_base.h"
#include "ringline/net/options.h"
#include "ringline/net/socket_address.h"
#include "ringline/unique_fd.h"
#include "ringline/wait_list.h"

namespace ringline::net::detail {

class NetWorker;
class ConnState;

// One listening socket of the process (ListenSocket's state). Immutable after
// creation; shared by the handles and by every worker's ListenerState that
// accepts on it, so any thread may hold it.
struct ListenSocketState {
  ListenSocketState(UniqueFd f, const SocketAddress& a, bool unlink)
      : fd(std::move(f)), address(a), unlink_path(unlink) {}
  ListenSocketState(const ListenSocketState&) = delete;
  ListenSocketState& operator=(const ListenSocketState&) = delete;
  ~ListenSocketState();  // closes; unlinks a Unix path this process bound

  UniqueFd fd;
  SocketAddress address;
  bool unlink_path;
};

class ListenerState {
 public:
  // `socket` may be shared by several workers (each with its own ListenerState).
  ListenerState(NetWorker& nw, std::shared_ptr<const ListenSocketState> socket,
                const ListenOptions& options);
  ListenerState(const ListenerState&) = delete;
  ListenerState& operator=(const ListenerState&) = delete;
  ~ListenerState();

  uint32_t ops() const { return ops_; }
  const SocketAddress& local() const { return local_; }
  bool closed() const { return closed_; }

  void Ref() { ++refs_; }
  void Unref();  // the last reference closes the listener

  void Start() { Update(); }
  void Close();

  // An accepted connection (with the queue's reference, now the caller's), or null.
  ConnState* Pop();
  // Accept() callers waiting for a connection: one is woken per connection
  // queued, all on Close().
  WaitList& accept_waiters() { return waiters_; }

 private:
  static void OnAccept(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnBackoff(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnConnReady(void* ctx, ConnState* c);
  void Accepted(int fd);
  void Refuse(int fd, const char* why);
  void Update();  // arm or pause the accept
  void WakeOne();
  void MaybeFree();

  NetWorker& nw_;
  std::shared_ptr<const ListenSocketState> socket_;
  const SocketAddress& local_;  // socket_->address
  ListenOptions opts_;
  uint32_t refs_ = 0;
  uint32_t ops_ = 0;
  bool closed_ = false;
  OpSlot* accept_slot_ = nullptr;
  bool cancel_sent_ = false;
  OpSlot* backoff_slot_ = nullptr;
  std::vector<ConnState*> ready_;  // FIFO (front = oldest)
  std::size_t ready_head_ = 0;
  uint32_t installing_ = 0;
  WaitList waiters_;
  uint64_t refused_since_log_ = 0;
  std::chrono::steady_clock::time_point last_refuse_log_{};
};

}  // namespace ringline::net::detail
