// book_features one event at a time on CUDA (csrc/book_stream.h): a warp per
// instrument, its lanes summing the ring's slots, lane 0 writing the row.
#include <stdexcept>

#include "book_stream.h"
#include "cuda/check.cuh"

namespace ma_kernels {
namespace {

constexpr int kWarps = 4;
constexpr int kSums = 2 * kMaxSpecEntries * book::kTerms;

__global__ void __launch_bounds__(kWarps * 32)
columns_kernel(const __grid_constant__ StreamEvents e, const __grid_constant__ StreamState st,
               const __grid_constant__ BookFeatureSpec spec, StreamOut out) {
  const std::int64_t b = std::int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  const int lane = threadIdx.x % 32;
  if (b >= e.batch) return;
  const int windows = spec.window_count + spec.time_window_count;
  double sums[kSums];
  for (int i = 0; i < windows * book::kTerms; ++i) sums[i] = 0.0;
  if (windows) {
    book::add_ring_sums(e, st, spec, b, lane, 32, sums);
    for (int i = 0; i < windows * book::kTerms; ++i) {
      for (int offset = 16; offset > 0; offset /= 2) {
        sums[i] += __shfl_xor_sync(0xffffffffu, sums[i], offset);
      }
    }
  }
  if (lane) return;
  double* row = out.columns + b * spec.columns();
  double* terms = out.terms + b * book::kTerms;
  book::stream_event(e, st, spec, b, row, terms);
  book::stream_rolling(e, st, spec, b, sums, terms, row, out.overflow);
}

__global__ void reasons_kernel(const __grid_constant__ StreamEvents e,
                               const __grid_constant__ StreamState st, Column event,
                               std::int8_t* reasons) {
  const std::int64_t b = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b < e.batch) reasons[b] = std::int8_t(book::tick_reason(e, st, event, b));
}

__global__ void commit_kernel(const __grid_constant__ StreamEvents e,
                              const __grid_constant__ StreamState st, const double* terms) {
  const std::int64_t b = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x;
  if (b < e.batch) book::stream_commit(e, st, terms + b * book::kTerms, b);
}

// The events' offsets (and those of one more column, the event codes) are
// 32 x 32-bit products (book::scaled).
void check_offsets(const StreamEvents& e, const Column& more = {}) {
  if (!book::fits_32bit_offsets(e.batch, e.levels,
                                {e.bid_price, e.bid_size, e.ask_price, e.ask_size},
                                {e.trade_price, e.trade_size, e.trade_side, e.time, more})) {
    throw std::invalid_argument(
        "the streaming feature kernels on CUDA take fewer than 2^31 instruments, levels and "
        "element strides");
  }
}

}  // namespace

void book_tick_reasons_cuda(const StreamEvents& events, const StreamState& state,
                            const Column& event, std::int8_t* reasons, int device,
                            std::uintptr_t stream) {
  if (events.batch == 0) return;
  check_offsets(events, event);
  const cudaStream_t s = use_device(device, stream);
  reasons_kernel<<<unsigned((events.batch + 127) / 128), 128, 0, s>>>(events, state, event,
                                                                       reasons);
  cuda_check(cudaGetLastError(), "book_tick_reasons kernel launch");
}

void book_stream_columns_cuda(const StreamEvents& events, const StreamState& state,
                              const BookFeatureSpec& spec, const StreamOut& out, int device,
                              std::uintptr_t stream) {
  if (events.batch == 0) return;
  check_offsets(events);
  const cudaStream_t s = use_device(device, stream);
  const unsigned blocks = unsigned((events.batch + kWarps - 1) / kWarps);
  columns_kernel<<<blocks, kWarps * 32, 0, s>>>(events, state, spec, out);
  cuda_check(cudaGetLastError(), "book_features_step kernel launch");
}

void book_stream_commit_cuda(const StreamEvents& events, const StreamState& state,
                             const double* terms, int device, std::uintptr_t stream) {
  if (events.batch == 0) return;
  check_offsets(events);
  const cudaStream_t s = use_device(device, stream);
  commit_kernel<<<unsigned((events.batch + 127) / 128), 128, 0, s>>>(events, state, terms);
  cuda_check(cudaGetLastError(), "book_features_commit kernel launch");
}

}  // namespace ma_kernels
