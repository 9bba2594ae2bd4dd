#pragma once
// TaskGroup: tasks of one worker that an owner waits for (a gate).
//
//   TaskGroup handlers;
//   while (auto conn = co_await Accept()) handlers.Spawn(Handle(std::move(*conn)));
//   handlers.Cancel();             // members watching token() wind down
//   co_await handlers.Wait();      // returns once every member has ended
//
// A member runs as its own task on the current worker (as Spawn does) and is
// counted until it ends or is destroyed (worker shutdown, which destroys every
// remaining task at the end of Config::shutdown_grace). Wait() completes when
// the count is zero; members may join while someone waits.
// Destroying the group cancels token() and lets the members still running go on
// (they share the group's small state, not the group).
// Cost: one shared state per group (allocated once); a member costs its task
// frame (frame allocator) and nothing else.
// Thread-safety: worker-local; every call on the worker that created it.

#include <cstddef>
#include <memory>
#include <utility>

#include "ringline/cancellation.h"
#include "ringline/spawn.h"
#include "ringline/task.h"
#include "ringline/wait_list.h"

namespace ringline {

class TaskGroup {
 public:
  TaskGroup() : state_(std::make_shared<State>()) {}
  TaskGroup(const TaskGroup&) = delete;
  TaskGroup& operator=(const TaskGroup&) = delete;
  ~TaskGroup() { state_->cancel.Cancel(); }

  // Runs `task` on the current worker as a member of this group.
  void Spawn(Task<> task) {
    ++state_->running;
    ringline::Spawn(Run(Member(state_), std::move(task))).Detach();
  }
  // Members running now.
  std::size_t running() const { return state_->running; }

  // Cancelled by Cancel() or the group's destruction: members watch it to end early.
  CancellationToken token() const { return state_->cancel.token(); }
  void Cancel() { state_->cancel.Cancel(); }

  // Completes when no member runs (at once if none).
  Task<> Wait() {
    std::shared_ptr<State> s = state_;
    while (s->running > 0) co_await s->idle.Wait();
  }

 private:
  struct State {
    std::size_t running = 0;
    WaitList idle;  // woken when running reaches 0
    CancellationSource cancel;
  };
  // A parameter of the member's wrapper task, so it is destroyed with the frame
  // even if the task never started.
  class Member {
   public:
    explicit Member(std::shared_ptr<State> s) : s_(std::move(s)) {}
    Member(Member&&) noexcept = default;
    Member& operator=(Member&&) = delete;
    ~Member() {
      if (!s_) return;
      if (--s_->running == 0) s_->idle.NotifyAll();
    }

   private:
    std::shared_ptr<State> s_;
  };
  static Task<> Run(Member member, Task<> task) {
    (void)member;
    co_await std::move(task);
  }

  std::shared_ptr<State> state_;
};

}  // namespace ringline
