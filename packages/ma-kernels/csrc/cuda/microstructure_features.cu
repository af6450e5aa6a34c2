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
__device__ void store_row(float* out, const float* v) {
  reinterpret_cast<float4*>(out)[0] = make_float4(v[0], v[1], v[2], v[3]);
  reinterpret_cast<float4*>(out)[1] = make_float4(v[4], v[5], v[6], v[7]);
}

__device__ void store_row(double* out, const double* v) {
  for (int i = 0; i < 4; ++i) {
    reinterpret_cast<double2*>(out)[i] = make_double2(v[2 * i], v[2 * i + 1]);
  }
}

template <typename T>
struct Table {
  const T* data;
  std::int64_t rows, row_stride, col_stride;

  __device__ L1Quote<T> quote(std::int64_t i) const {
    return load_quote(data, i, row_stride, col_stride);
  }

  __device__ RollingTerms terms(std::int64_t i) const {
    const T* row = data + i * row_stride;
    const L1Quote<T> now = quote(i);
    const T price = row[4 * col_stride], size = row[5 * col_stride];
    if (i == 0) return rolling_terms<T>(now, nullptr, price, size);
    const L1Quote<T> before = quote(i - 1);
    return rolling_terms(now, &before, price, size);
  }
};

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

  // Scans rows [first, first + count) in steps of kThreads, storing Q at
  // prefix[store + offset] unless store < 0.
  auto scan_rows = [&](std::int64_t first, std::int64_t count, int store) {
    for (std::int64_t step = 0; step < count; step += kThreads) {
      const std::int64_t local = step + threadIdx.x;
      const std::int64_t row = first + local;
      RollingTerms x{};
      if (local < count && row > origin && row >= 0 && row < table.rows) x = table.terms(row);
      RollingTerms total;
      Scan(scan_storage).InclusiveScan(x, x, AddTerms(), total);
      if (store >= 0 && local < count) prefix[store + local] = carry + x;
      carry = carry + total;
      __syncthreads();  // scan_storage is reused by the next step
    }
  };
  scan_rows(origin, head, 0);
  scan_rows(origin + head, window - head, -1);
  scan_rows(start, kTile, head);

  for (int local = threadIdx.x; local < kTile; local += kThreads) {
    const std::int64_t i = start + local;
    if (i >= table.rows) break;
    T v[kMicrostructureFeatures];
    const L1Quote<T> now = table.quote(i);
    if (i == 0) {
      l1_features_row<T>(now, nullptr, v);
    } else {
      const L1Quote<T> before = table.quote(i - 1);
      l1_features_row(now, &before, v);
    }
    rolling_features(prefix[head + local] - prefix[local], v[1], v + kL1Features);
    store_row(out + i * kMicrostructureFeatures, v);
  }
}

}  // namespace

void microstructure_features_cuda(const Matrix& table, std::int64_t window, std::uintptr_t out,
                                  DType dtype, int device, std::uintptr_t stream) {
  if (table.rows == 0) return;
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
