// One thread per chunk of consecutive rows, running the same row function as
// the CPU threads (csrc/book_features.h), without their memo of terms. Each
// chunk first sums the rows its windows reach back to, so chunks are several
// times the longest event window.
#include <algorithm>
#include <type_traits>

#include "book_features.h"
#include "cuda/check.cuh"

namespace ma_kernels {
namespace {

constexpr int kThreads = 128;
constexpr std::int64_t kMaxChunks = 8192;

template <typename T, typename U>
__global__ void book_features_kernel(BookSeries series, BookFeatureSpec spec,
                                     std::int64_t chunk, U* out) {
  const std::int64_t begin = (std::int64_t(blockIdx.x) * kThreads + threadIdx.x) * chunk;
  if (begin >= series.rows) return;
  const std::int64_t end = begin + chunk < series.rows ? begin + chunk : series.rows;
  book_features_rows<T>(series, spec, begin, end, out, book::TermsMemo{nullptr, nullptr, 0});
}

}  // namespace

void book_features_cuda(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                        std::uintptr_t out, DType out_dtype, int device, std::uintptr_t stream) {
  std::int64_t longest = 1;
  for (int w = 0; w < spec.window_count; ++w) longest = std::max(longest, spec.windows[w]);
  std::int64_t chunk = std::max<std::int64_t>(256, 4 * std::min(longest, series.rows));
  // A time window's length in events is unknown here (the times stay on the
  // device): at most kMaxChunks chunks bound what the warm-ups re-sum.
  if (spec.time_window_count) chunk = std::max(chunk, (series.rows + kMaxChunks - 1) / kMaxChunks);
  const std::int64_t chunks = (series.rows + chunk - 1) / chunk;
  const std::int64_t blocks = (chunks + kThreads - 1) / kThreads;
  cudaStream_t s = use_device(device, stream);
  dispatch_float(dtype, [&](auto* in_tag) {
    dispatch_float(out_dtype, [&](auto* out_tag) {
      using T = std::remove_pointer_t<decltype(in_tag)>;
      using U = std::remove_pointer_t<decltype(out_tag)>;
      book_features_kernel<T, U><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(
          series, spec, chunk, reinterpret_cast<U*>(out));
    });
  });
  cuda_check(cudaGetLastError(), "book_features kernel launch");
}

}  // namespace ma_kernels
