#pragma once
// ListenerState: one worker's listening socket, its multishot accept and the
// queue of accepted connections not yet taken by Accept(). Owned by NetWorker;
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

namespace ringline::net::detail {

class NetWorker;
class ConnState;

class ListenerState {
 public:
  // `fd` is shared by every worker listening on one Unix path.
  ListenerState(NetWorker& nw, std::shared_ptr<UniqueFd> fd, const SocketAddress& local,
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
  void Park(PromiseBase* p) { waiters_.push_back(p); }
  void Unpark(PromiseBase* p) { std::erase(waiters_, p); }

 private:
  static void OnAccept(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnBackoff(void* owner, OpSlot& slot, int32_t res, uint32_t flags);
  static void OnConnReady(void* ctx, ConnState* c);
  void Accepted(int fd);
  void Refuse(int fd, const char* why);
  void Update();  // arm or pause the multishot accept
  void WakeOne();
  void MaybeFree();

  NetWorker& nw_;
  std::shared_ptr<UniqueFd> fd_;
  SocketAddress local_;
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
  std::vector<PromiseBase*> waiters_;
  uint64_t refused_since_log_ = 0;
  std::chrono::steady_clock::time_point last_refuse_log_{};
};

}  // namespace ringline::net::detail
