// A minimal parallel-for over an index range on std::thread, so the extension
// needs no OpenMP runtime that could clash with the one torch ships.
#pragma once

#include <algorithm>
#include <cstdint>
#include <cstdlib>
#include <thread>
#include <vector>

namespace ma_kernels {

// Threads to use: MA_KERNELS_NUM_THREADS if set, else the hardware's count.
inline int num_threads() {
  if (const char* env = std::getenv("MA_KERNELS_NUM_THREADS")) {
    int n = std::atoi(env);
    if (n > 0) return n;
  }
  return std::max(1u, std::thread::hardware_concurrency());
}

// Calls fn(begin, end) on contiguous chunks of [0, n), each at least `grain` long.
template <typename Fn>
void parallel_for(std::int64_t n, std::int64_t grain, Fn&& fn) {
  if (n <= 0) return;
  const std::int64_t chunks = std::min<std::int64_t>(num_threads(), (n + grain - 1) / grain);
  if (chunks <= 1) {
    fn(std::int64_t{0}, n);
    return;
  }
  const std::int64_t step = (n + chunks - 1) / chunks;
  std::vector<std::thread> workers;
  workers.reserve(chunks - 1);
  for (std::int64_t begin = step; begin < n; begin += step) {
    workers.emplace_back([&fn, begin, end = std::min(n, begin + step)] { fn(begin, end); });
  }
  fn(std::int64_t{0}, std::min(n, step));
  for (auto& w : workers) w.join();
}

}  // namespace ma_kernels
