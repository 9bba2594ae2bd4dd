// An outside program built against an installed ringline.
#include <ringline/ringline.h>

#include <cstdio>

ringline::Task<int> Answer() {
  co_await ringline::Sleep(std::chrono::milliseconds(1));
  auto r = co_await ringline::Nop();
  co_return r.ok() ? 42 : -1;
}

int main() {
  auto worker = ringline::Worker::Create(ringline::Config{});
  if (!worker.ok()) {
    std::fprintf(stderr, "%s\n", worker.status().ToString().c_str());
    return 1;
  }
  auto v = (*worker)->BlockOn(Answer());
  std::printf("consumer: %d\n", v.value_or(-1));
  return v.value_or(-1) == 42 ? 0 : 1;
}
