#include <vector>

#include "cpu/huge_pages.h"
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

  // ring[slot] holds the terms of the event `window` rows before the one that
  // will overwrite it; events before row 0 (or before this chunk's warm-up) are 0.
  std::vector<RollingTerms> ring(static_cast<std::size_t>(window), RollingTerms{});
  RollingTerms sum{};
  const std::int64_t first = std::max<std::int64_t>(0, begin - window + 1);
  std::int64_t slot = first % window;
  std::int64_t until_reanchor = kReanchorRows;
  L1Quote<T> before = quote(std::max<std::int64_t>(0, first - 1));

  for (std::int64_t i = first; i < end; ++i) {
    const L1Quote<T> now = quote(i);
    const L1Quote<T>* previous = i > 0 ? &before : nullptr;
    const T* row = in + i * table.row_stride;
    const RollingTerms x =
        rolling_terms(now, previous, row[4 * table.col_stride], row[5 * table.col_stride]);
    sum = sum + x - ring[slot];
    ring[slot] = x;
    if (++slot == window) slot = 0;
    if (i >= begin) {
      if (--until_reanchor == 0) {
        until_reanchor = kReanchorRows;
        sum = RollingTerms{};
        for (const RollingTerms& r : ring) sum = sum + r;
      }
      T* row_out = out + i * kMicrostructureFeatures;
      l1_features_row(now, previous, row_out);
      rolling_features(sum, row_out[1], row_out + kL1Features);
    }
    before = now;
  }
}

}  // namespace

void microstructure_features_cpu(const Matrix& table, std::int64_t window, std::uintptr_t out,
                                 DType dtype) {
  if (table.rows == 0) return;
  // A window longer than the series sums the same rows as one of its length,
  // and the ring buffer must not grow with a huge W.
  window = std::min(window, table.rows);
  dispatch_float(dtype, [&](auto* type_tag) {
    using T = std::remove_pointer_t<decltype(type_tag)>;
    const T* in = reinterpret_cast<const T*>(table.data);
    T* features = reinterpret_cast<T*>(out);
    advise_huge_pages(out, sizeof(T) * kMicrostructureFeatures * table.rows);
    // Each chunk re-reads `window - 1` rows before it: keep chunks much longer.
    const std::int64_t grain = std::max<std::int64_t>(1 << 15, 16 * window);
    parallel_for(table.rows, grain, [&](std::int64_t begin, std::int64_t end) {
      features_rows(in, table, window, begin, end, features);
    });
  });
}

}  // namespace ma_kernels
