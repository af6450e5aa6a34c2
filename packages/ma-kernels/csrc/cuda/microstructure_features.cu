// One thread block per tile of kTile output rows. Window sums are differences
// Q(t) - Q(t - W) of a running sum Q that starts at the tile's own origin
// (row start - W), so every sum covers at most W + kTile events and nothing
// accumulates across tiles. The block scans three row ranges with a carry:
//   A:   rows [start - W, start - W + min(W, kTile))  ->  Q(t - W), stored
//   gap: rows up to start, only when W > kTile         ->  carry only
//   B:   rows [start, start + kTile)                   ->  Q(t), stored
// When W < kTile, A ends where B starts and Q(t - W) of a late row lies in B.
#include <cub/block/block_scan.cuh>

#include <algorithm>

#include "cuda/check.cuh"
#include "microstructure_features.h"

namespace ma_kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kTile = 2 * kThreads;

struct AddTerms {
  __device__ RollingTerms operator()(const RollingTerms& a, const RollingTerms& b) const {
    return a + b;
  }
};

// Rows are 32 (float) or 64 (double) bytes and the output is ours, so whole
// 16-byte vectors can be stored.
__device__ __forceinline__ void store_row(float* out, const float* v) {
  reinterpret_cast<float4*>(out)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(out)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__device__ __forceinline__ void store_row(double* out, const double* v) {
  for (int i = 0; i < 4; ++i) {
    reinterpret_cast<double2*>(out)[i] = make_double2(v[2 * i], v[2 * i + 1]);
  }
}

template <typename T>
struct Table {
  const T* data;
  std::int64_t rows, row_stride, col_stride;
};

// An event as one thread sees it: its quote, the quote before it and its trade.
template <typename T>
struct Event {
  L1Quote<T> now, before;
  T trade_price, trade_size;
};

template <typename T>
__device__ L1Quote<T> shuffle_up(const L1Quote<T>& q) {
  constexpr unsigned kAll = 0xffffffffu;
  return {__shfl_up_sync(kAll, q.bid_price, 1), __shfl_up_sync(kAll, q.bid_size, 1),
          __shfl_up_sync(kAll, q.ask_price, 1), __shfl_up_sync(kAll, q.ask_size, 1)};
}

// Row `i` of the calling thread, where consecutive lanes hold consecutive rows:
// each row is read from memory once and the quote before it comes from the
// lane below (lane 0 reads it). Every lane of the warp must call this.
template <typename T>
__device__ Event<T> load_event(const Table<T>& t, std::int64_t i, bool valid) {
  Event<T> e{};
  if (valid) {
    const T* row = t.data + i * t.row_stride;
    e.now = load_quote(t.data, i, t.row_stride, t.col_stride);
    e.trade_price = row[4 * t.col_stride];
    e.trade_size = row[5 * t.col_stride];
  }
  e.before = shuffle_up(e.now);
  if (valid && i > 0 && threadIdx.x % 32 == 0) {
    e.before = load_quote(t.data, i - 1, t.row_stride, t.col_stride);
  }
  return e;
}

template <typename T>
__global__ void __launch_bounds__(kThreads)
    microstructure_features_kernel(Table<T> table, std::int64_t window, T* __restrict__ out) {
  using Scan = cub::BlockScan<RollingTerms, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;
  __shared__ typename Scan::TempStorage scan_storage;
  __shared__ RollingTerms prefix[2 * kTile];

  const std::int64_t start = std::int64_t(blockIdx.x) * kTile;
  const std::int64_t origin = start - window;  // Q(origin) = 0: its row is excluded
  const int head = static_cast<int>(std::min<std::int64_t>(window, kTile));
  RollingTerms carry{};
  // One scan step over rows first + offset + [0, kThreads) of a range of
  // `count` rows: stores Q at prefix[store + local] unless store < 0, advances
  // the carry and returns the thread's event.
  auto scan_step = [&](std::int64_t first, std::int64_t offset, std::int64_t count, int store) {
    const std::int64_t local = offset + threadIdx.x;
    const std::int64_t row = first + local;
    const bool valid = local < count && row >= 0 && row < table.rows;
    const Event<T> e = load_event(table, row, valid);
    RollingTerms x{};
    if (valid && row > origin) {
      x = row == 0 ? rolling_terms<T>(e.now, nullptr, e.trade_price, e.trade_size)
                   : rolling_terms(e.now, &e.before, e.trade_price, e.trade_size);
    }
    RollingTerms total;
    Scan(scan_storage).InclusiveScan(x, x, AddTerms(), total);
    if (store >= 0 && local < count) prefix[store + local] = carry + x;
    carry = carry + total;
    __syncthreads();  // scan_storage is reused by the next step
    return e;
  };
  for (std::int64_t offset = 0; offset < head; offset += kThreads) {
    scan_step(origin, offset, head, 0);
  }
  for (std::int64_t offset = 0; offset < window - head; offset += kThreads) {
    scan_step(origin + head, offset, window - head, -1);
  }
  constexpr int kSteps = kTile / kThreads;
  Event<T> own[kSteps];  // this thread's output rows, start + step * kThreads + threadIdx.x
#pragma unroll
  for (int step = 0; step < kSteps; ++step) {
    own[step] = scan_step(start, step * kThreads, kTile, head);
  }

#pragma unroll
  for (int step = 0; step < kSteps; ++step) {
    const int local = step * kThreads + threadIdx.x;
    const std::int64_t i = start + local;
    if (i < table.rows) {
      T v[kMicrostructureFeatures];
      const Event<T>& e = own[step];
      if (i == 0) {
        l1_features_row<T>(e.now, nullptr, v);
      } else {
        l1_features_row(e.now, &e.before, v);
      }
      rolling_features(prefix[head + local] - prefix[local], v[1], v + kL1Features);
      store_row(out + i * kMicrostructureFeatures, v);
    }
  }
}

}  // namespace

void microstructure_features_cuda(const Matrix& table, std::int64_t window, std::uintptr_t out,
                                  DType dtype, int device, std::uintptr_t stream) {
  if (table.rows == 0) return;
  // A window longer than the series sums the same rows as one of its length;
  // each tile walks its whole window, so W must not exceed the rows.
  window = std::min(window, table.rows);
  cudaStream_t s = use_device(device, stream);
  const std::int64_t tiles = (table.rows + kTile - 1) / kTile;
  dispatch_float(dtype, [&](auto* type_tag) {
    using T = std::remove_pointer_t<decltype(type_tag)>;
    const Table<T> view{reinterpret_cast<const T*>(table.data), table.rows, table.row_stride,
                        table.col_stride};
    microstructure_features_kernel<T><<<static_cast<unsigned>(tiles), kThreads, 0, s>>>(
        view, window, reinterpret_cast<T*>(out));
  });
  cuda_check(cudaGetLastError(), "microstructure_features kernel launch");
}

}  // namespace ma_kernels
