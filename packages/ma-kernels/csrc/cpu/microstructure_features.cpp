#include <vector>

#include "cpu/parallel.h"
#include "microstructure_features.h"

namespace ma_kernels {
namespace {

// The window sum is kept by adding the new event's terms and subtracting the
// oldest; it is recomputed from the ring this often so rounding cannot drift.
constexpr std::int64_t kReanchorRows = 4096;

template <typename T>
void features_rows(const T* in, const Matrix& table, std::int64_t window, std::int64_t begin,
                   std::int64_t end, T* out) {
  auto quote = [&](std::int64_t i) { return load_quote(in, i, table.row_stride, table.col_stride); };
  auto terms = [&](std::int64_t i) {
    const T* row = in + i * table.row_stride;
    const L1Quote<T> now = quote(i);
    const T price = row[4 * table.col_stride], size = row[5 * table.col_stride];
    if (i == 0) return rolling_terms<T>(now, nullptr, price, size);
    const L1Quote<T> before = quote(i - 1);
    return rolling_terms(now, &before, price, size);
  };

  // ring[slot] holds the terms of the event `window` rows before the one that
  // will overwrite it; events before row 0 (or before this chunk's warm-up) are 0.
  std::vector<RollingTerms> ring(static_cast<std::size_t>(window), RollingTerms{});
  RollingTerms sum{};
  const std::int64_t first = std::max<std::int64_t>(0, begin - window + 1);
  std::int64_t slot = first % window;
  auto push = [&](const RollingTerms& x) {
    sum = sum + x - ring[slot];
    ring[slot] = x;
    if (++slot == window) slot = 0;
  };
  for (std::int64_t i = first; i < begin; ++i) push(terms(i));

  for (std::int64_t i = begin; i < end; ++i) {
    push(terms(i));
    if ((i - begin) % kReanchorRows == kReanchorRows - 1) {
      sum = RollingTerms{};
      for (const RollingTerms& x : ring) sum = sum + x;
    }
    T* row_out = out + i * kMicrostructureFeatures;
    const L1Quote<T> now = quote(i);
    if (i == 0) {
      l1_features_row<T>(now, nullptr, row_out);
    } else {
      const L1Quote<T> before = quote(i - 1);
      l1_features_row(now, &before, row_out);
    }
    rolling_features(sum, row_out[1], row_out + kL1Features);
  }
}

}  // namespace

void microstructure_features_cpu(const Matrix& table, std::int64_t window, std::uintptr_t out,
                                 DType dtype) {
  dispatch_float(dtype, [&](auto* type_tag) {
    using T = std::remove_pointer_t<decltype(type_tag)>;
    const T* in = reinterpret_cast<const T*>(table.data);
    T* features = reinterpret_cast<T*>(out);
    // Each chunk re-reads `window - 1` rows before it: keep chunks much longer.
    const std::int64_t grain = std::max<std::int64_t>(1 << 15, 16 * window);
    parallel_for(table.rows, grain, [&](std::int64_t begin, std::int64_t end) {
      features_rows(in, table, window, begin, end, features);
    });
  });
}

}  // namespace ma_kernels
