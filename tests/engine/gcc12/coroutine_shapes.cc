// Self-contained reproducer of the two coroutine shapes Debian 12's g++ 12.2
// miscompiles (docs/gcc12-coroutines.md), next to the shapes ringline uses
// instead. No ringline code: a minimal lazy task with symmetric transfer, the
// shape of ringline::Task, so the file can go into a compiler bug report.
//
//   coroutine_shapes --list        prints "<shape> <safe|unsafe>" lines
//   coroutine_shapes SHAPE         runs one shape: exit 0 and "ok" when it
//                                  behaved, 1 and what went wrong otherwise
//                                  (a miscompiled shape may also crash; build
//                                  with -fsanitize=address to see where)
//
// Build with -DWITH_INIT_LIST to add the braced-initializer shape, which g++
// 12 rejects at compile time ("array used as initializer").
#include <coroutine>
#include <cstdio>
#include <cstring>
#include <exception>
#include <optional>
#include <string>
#include <utility>
#include <vector>

template <typename T>
struct Task {
  struct promise_type {
    std::optional<T> value;
    std::coroutine_handle<> continuation;
    Task get_return_object() {
      return Task{std::coroutine_handle<promise_type>::from_promise(*this)};
    }
    std::suspend_always initial_suspend() noexcept { return {}; }
    struct Final {
      bool await_ready() noexcept { return false; }
      std::coroutine_handle<> await_suspend(std::coroutine_handle<promise_type> h) noexcept {
        auto c = h.promise().continuation;
        return c ? c : std::noop_coroutine();
      }
      void await_resume() noexcept {}
    };
    Final final_suspend() noexcept { return {}; }
    template <typename U>
    void return_value(U&& v) {
      value.emplace(std::forward<U>(v));
    }
    void unhandled_exception() { std::terminate(); }
  };
  explicit Task(std::coroutine_handle<promise_type> h) : handle(h) {}
  Task(Task&& o) noexcept : handle(std::exchange(o.handle, {})) {}
  ~Task() {
    if (handle) handle.destroy();
  }
  bool await_ready() { return false; }
  std::coroutine_handle<> await_suspend(std::coroutine_handle<> c) {
    handle.promise().continuation = c;
    return handle;
  }
  T await_resume() { return std::move(*handle.promise().value); }
  std::coroutine_handle<promise_type> handle;
};

int g_started = 0;  // how many awaited callees ran
Task<bool> Positive(int v) {
  ++g_started;
  co_return v > 0;
}
Task<int> Value(int v) {
  ++g_started;
  co_return v;
}
// An aggregate (no user-declared constructor) with a member that owns memory.
struct Options {
  std::string name;
  int count = 0;
};
// The same with a constructor.
struct NamedOptions {
  explicit NamedOptions(std::string n) : name(std::move(n)) {}
  std::string name;
};
Task<std::size_t> NameLength(const Options& o) { co_return o.name.size(); }
Task<std::size_t> NameLengthByValue(Options o) { co_return o.name.size(); }
Task<std::size_t> NameLength(const NamedOptions& o) { co_return o.name.size(); }
std::size_t PlainLength(const Options& o) { return o.name.size(); }

// Every shape returns 1 when it behaved. Bodies that must have no local
// variable at their outermost block say so: that is part of the shape.

// UNSAFE: co_await in an if condition, in a coroutine whose outermost block
// declares no variable: the coroutine suspends before evaluating the
// condition and never continues (GCC PR 106188).
Task<int> IfConditionNoLocals() {
  if (!(co_await Positive(1))) co_return -1;
  co_return 1;
}
// UNSAFE: the same with switch.
Task<int> SwitchConditionNoLocals() {
  switch (co_await Value(1)) {
    case 1:
      co_return 1;
    default:
      break;
  }
  co_return -1;
}
// Works on g++ 12 only because `result` gives the body an outermost scope:
// fragile (delete the variable and it breaks), so ringline does not use it.
Task<int> IfConditionWithALocal() {
  int result = 1;
  if (!(co_await Positive(1))) result = -1;
  co_return result;
}
// SAFE: await into a named local, then branch on it.
Task<int> AwaitIntoLocalThenIf() {
  const bool positive = co_await Positive(1);
  if (!positive) co_return -1;
  co_return 1;
}
// UNSAFE: an aggregate temporary owning memory in a full-expression that
// contains co_await: g++ 12 destroys a bitwise copy of it (ASan:
// "attempting free on address which was not malloc()-ed" / double free).
Task<int> AggregateTemporaryInAwait() {
  auto n = co_await NameLength(Options{.name = "short"});
  co_return n == 5 ? 1 : -1;
}
Task<int> AggregateTemporaryByValueInAwait() {
  auto n = co_await NameLengthByValue(Options{.name = "a name longer than the small buffer"});
  co_return n == 35 ? 1 : -1;
}
// UNSAFE: also when the aggregate is not an operand of the co_await itself.
Task<int> AggregateTemporaryBesideAwait() {
  auto n = PlainLength(Options{.name = "short"}) + co_await Value(7);
  co_return n == 12 ? 1 : -1;
}
// SAFE: the aggregate in a named variable.
Task<int> NamedAggregate() {
  const Options options{.name = "short"};
  auto n = co_await NameLength(options);
  co_return n == 5 ? 1 : -1;
}
// SAFE: a temporary of a class with a constructor.
Task<int> TemporaryWithConstructor() {
  auto n = co_await NameLength(NamedOptions("short"));
  co_return n == 5 ? 1 : -1;
}
// SAFE on g++ 12 and clang 14 (measured): co_await in both arms of ?:.
Task<int> Ternary() {
  const bool first = true;
  const int v = first ? co_await Value(1) : co_await Value(2);
  co_return v;
}
#ifdef WITH_INIT_LIST
// g++ 12 rejects this valid code at compile time.
Task<int> BracedInitializerList() {
  std::vector<int> v{co_await Value(1), co_await Value(2)};
  co_return v.size() == 2 && v[0] == 1 && v[1] == 2 ? 1 : -1;
}
#endif

struct Shape {
  const char* name;
  bool safe;
  Task<int> (*run)();
};
const Shape kShapes[] = {
    {"if-condition-no-locals", false, IfConditionNoLocals},
    {"switch-condition-no-locals", false, SwitchConditionNoLocals},
    {"if-condition-with-a-local", false, IfConditionWithALocal},
    {"await-into-local-then-if", true, AwaitIntoLocalThenIf},
    {"aggregate-temporary-in-await", false, AggregateTemporaryInAwait},
    {"aggregate-temporary-by-value-in-await", false, AggregateTemporaryByValueInAwait},
    {"aggregate-temporary-beside-await", false, AggregateTemporaryBesideAwait},
    {"named-aggregate", true, NamedAggregate},
    {"temporary-with-constructor", true, TemporaryWithConstructor},
    {"ternary", true, Ternary},
#ifdef WITH_INIT_LIST
    {"braced-initializer-list", true, BracedInitializerList},
#endif
};

int main(int argc, char** argv) {
  if (argc != 2) {
    std::fprintf(stderr, "usage: %s --list | SHAPE\n", argv[0]);
    return 2;
  }
  for (const Shape& s : kShapes) {
    if (std::strcmp(argv[1], "--list") == 0) {
      std::printf("%s %s\n", s.name, s.safe ? "safe" : "unsafe");
      continue;
    }
    if (std::strcmp(argv[1], s.name) != 0) continue;
    Task<int> t = s.run();
    t.handle.resume();  // every callee completes inline: one resume runs it all
    if (!t.handle.done()) {
      std::printf("never finished (awaited callees started: %d)\n", g_started);
      return 1;
    }
    const int v = *t.handle.promise().value;
    std::printf(v == 1 ? "ok\n" : "wrong value %d\n", v);
    return v == 1 ? 0 : 1;
  }
  return std::strcmp(argv[1], "--list") == 0 ? 0 : 2;
}
