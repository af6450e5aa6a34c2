// book_features on CUDA, in two kernels over the same rows.
//
// event_columns_kernel: the per-event columns (csrc/book_features.h), one
// thread per row at full occupancy; a block's rows are staged in shared
// memory and written as whole rows (row-major output written thread by
// thread would touch a sector per thread and store).
//
// window_columns_kernel: the rolling columns, one warp per chunk of
// consecutive rows, 32 lanes x 4 consecutive rows per step. A window's sums
// are differences of two prefix sums of the rolling terms over the chunk:
//
//   sum over the window of row t = Lead(t) - Trail(start(t)),
//   Lead(t) = sum of terms of rows [origin, t], Trail(j) = same over [origin, j),
//
// Lead scanned 128 rows at a time (a serial prefix in each lane, a warp scan
// of the lanes' totals) and kept for two steps, so Trail(j) = Lead(j - 1) of
// any window starting up to 127 rows before the step (t - W + 1, or the first
// row of the time window, found by a galloping search) is read, not computed.
// Only a window reaching further back rescans the rows that leave it, from
// its previous start. After each step the origin moves up to the earliest
// window start, so the prefix sums stay at the magnitude of the longest window.
#include <algorithm>
#include <mutex>
#include <type_traits>
#include <vector>

#include "book_features.h"
#include "cuda/check.cuh"

namespace ma_kernels {
namespace {

using book::Quote;
using book::kTerms;

constexpr int kMapThreads = 256;  // rows per block of event_columns_kernel
constexpr int kLaneRows = 4;
constexpr int kStep = 32 * kLaneRows;  // rows per warp step
constexpr int kWarps = 4;              // warps per block
constexpr int kWindows = 2 * kMaxSpecEntries;
constexpr unsigned kAll = 0xffffffffu;
// Staging a block's or a step's output costs rows x columns elements of
// shared memory; past this, rows go straight to global memory.
constexpr std::size_t kMaxStagingBytes = 40 * 1024;

template <typename T, typename U>
__global__ void __launch_bounds__(kMapThreads)
event_columns_kernel(const __grid_constant__ BookSeries s,
                     const __grid_constant__ BookFeatureSpec spec, int staged, U* out) {
  extern __shared__ __align__(16) unsigned char shared[];
  const std::int64_t base = std::int64_t(blockIdx.x) * kMapThreads, t = base + threadIdx.x;
  const int width = int(spec.event_columns()), stride = width + 1;  // +1: rows on distinct banks
  const std::int64_t columns = spec.columns();
  U* tile = reinterpret_cast<U*>(shared);
  if (t < s.rows) {
    const Quote now = book::quote_at<T>(s, t);
    const Quote before = t > 0 ? book::quote_at<T>(s, t - 1) : now;
    U* row = staged ? tile + threadIdx.x * stride : out + t * columns;
    book::store_event_columns<T>(s, spec, t, now, before, t > 0, row);
  }
  if (!staged) return;
  __syncthreads();
  const int count = int(s.rows - base < kMapThreads ? s.rows - base : kMapThreads) * width;
  for (int e = threadIdx.x; e < count; e += kMapThreads) {
    const int r = e / width, c = e - r * width;
    out[(base + r) * columns + c] = tile[r * stride + c];
  }
}

// Per warp, in shared memory. A step's prefix sums are slot-major (see
// slot_of), so the writes of a scan meet no bank conflict.
struct WarpState {
  std::int64_t trail_row[kWindows];    // start of the window of the step's last row
  double trail_sum[kWindows][kTerms];  // Trail(trail_row)
  double lead[2][kTerms][kStep];       // Lead of this step's rows and the step's before
  double trail[kTerms][kStep];         // Trail of the rows of one trail rescan
};

// Where row r (0..127) of a step lives in a slot-major array: consecutive
// lanes in consecutive slots.
__device__ int slot_of(std::int64_t r) { return int(r % kLaneRows) * 32 + int(r / kLaneRows); }

// to[j][slot of row] = carry[j] + the sum of the terms of rows [base, row], for
// the 128 rows of the step at `base` (lane: rows base + 4 * lane + k); rows
// outside [0, limit) add nothing. carry becomes carry + the step's total.
template <typename T>
__device__ void scan_terms(const BookSeries& s, std::int64_t base, std::int64_t limit,
                           double (&carry)[kTerms], double (*to)[kStep]) {
  const int lane = threadIdx.x & 31;
  const std::int64_t first = base + kLaneRows * lane;
  double prefix[kLaneRows][kTerms], running[kTerms] = {};
  Quote before = first > 0 && first < limit ? book::quote_at<T>(s, first - 1) : Quote{};
#pragma unroll
  for (int k = 0; k < kLaneRows; ++k) {
    const std::int64_t row = first + k;
    double x[kTerms] = {};
    if (row >= 0 && row < limit) {
      const Quote now = book::quote_at<T>(s, row);
      book::terms_of<T>(s, row, now, before, row > 0, x);
      before = now;
    }
#pragma unroll
    for (int j = 0; j < kTerms; ++j) prefix[k][j] = running[j] += x[j];
  }
#pragma unroll
  for (int j = 0; j < kTerms; ++j) {
    double inclusive = running[j];
#pragma unroll
    for (int d = 1; d < 32; d *= 2) {
      const double y = __shfl_up_sync(kAll, inclusive, d);
      if (lane >= d) inclusive += y;
    }
    const double exclusive = __shfl_up_sync(kAll, inclusive, 1);
    const double offset = carry[j] + (lane ? exclusive : 0.0);
#pragma unroll
    for (int k = 0; k < kLaneRows; ++k) to[j][k * 32 + lane] = offset + prefix[k][j];
    carry[j] += __shfl_sync(kAll, inclusive, 31);
  }
  __syncwarp();
}

// First j in [lo, t] inside the time window of row t (lo must not be past it):
// gallop from lo, then bisect. Starts move little from row to row.
__device__ std::int64_t time_window_start(const BookSeries& s, std::int64_t t, std::int64_t lo,
                                          std::int64_t tau) {
  if (!book::before_time_window(s, lo, t, tau)) return lo;
  std::int64_t out = lo, in = t;  // out has left the window, in has not (t never has)
  for (std::int64_t step = 1; out + step < t; step *= 2) {
    if (!book::before_time_window(s, out + step, t, tau)) {
      in = out + step;
      break;
    }
    out += step;
  }
  while (in - out > 1) {
    const std::int64_t mid = out + (in - out) / 2;
    if (book::before_time_window(s, mid, t, tau)) out = mid; else in = mid;
  }
  return in;
}

__device__ std::int64_t window_start(const BookSeries& s, const BookFeatureSpec& spec, int w,
                                     std::int64_t t, std::int64_t lo) {
  if (w < spec.window_count) return t - spec.windows[w] + 1 > 0 ? t - spec.windows[w] + 1 : 0;
  return time_window_start(s, t, lo, spec.time_windows[w - spec.window_count]);
}

template <typename U>
__device__ void store_window(const BookFeatureSpec& spec, const double (*lead)[kStep], int slot,
                             const double* trail, double mid, U* out) {
  double sums[kTerms];
#pragma unroll
  for (int j = 0; j < kTerms; ++j) sums[j] = lead[j][slot] - trail[j];
  book::store_rolling(spec, sums, mid, out);
}

// The largest of the warp's values.
__device__ std::int64_t warp_max(std::int64_t x) {
#pragma unroll
  for (int d = 16; d; d /= 2) {
    const std::int64_t y = __shfl_xor_sync(kAll, x, d);
    x = y > x ? y : x;
  }
  return x;
}

// The rolling columns (each row's last `width` columns, from column
// spec.event_columns()) of one chunk per warp.
template <typename T, typename U>
__global__ void __launch_bounds__(kWarps * 32, 1)
window_columns_kernel(const __grid_constant__ BookSeries s,
                      const __grid_constant__ BookFeatureSpec spec, std::int64_t chunk,
                      int staged, U* out) {
  extern __shared__ __align__(16) unsigned char shared[];
  const int warp = threadIdx.x / 32, lane = threadIdx.x & 31;
  const std::int64_t a = (std::int64_t(blockIdx.x) * kWarps + warp) * chunk;
  if (a >= s.rows) return;
  const std::int64_t b = a + chunk < s.rows ? a + chunk : s.rows;
  const int windows = spec.window_count + spec.time_window_count;
  const std::int64_t columns = spec.columns(), width = windows * spec.rolling_count;
  const std::int64_t lane_elements = kLaneRows * width, lane_stride = lane_elements + 1;
  const std::size_t staging_bytes = staged ? 32 * lane_stride * sizeof(U) : 0;
  const std::size_t warp_bytes = (sizeof(WarpState) + staging_bytes + 15) / 16 * 16;
  WarpState& state = *reinterpret_cast<WarpState*>(shared + warp * warp_bytes);
  U* staging = reinterpret_cast<U*>(shared + warp * warp_bytes + sizeof(WarpState));
  U* rolling = out + spec.event_columns();
  auto row_out = [&](int k, std::int64_t t) {  // where row t (the lane's k-th) is written
    return staged ? staging + lane * lane_stride + k * width : rolling + t * columns;
  };

  // Warm-up: Lead over [origin, a) in whole steps, the last one rows
  // [a - kStep, a), and each window's Trail at the start of row a. Rows
  // before the series add nothing (so the first chunk's ring starts at 0).
  std::int64_t origin = a;
  for (int w = 0; w < windows; ++w) {
    const std::int64_t start = window_start(s, spec, w, a, 0);
    if (lane == 0) {
      state.trail_row[w] = start;
      for (int j = 0; j < kTerms; ++j) state.trail_sum[w][j] = 0.0;
    }
    origin = start < origin ? start : origin;
  }
  origin = a - std::max<std::int64_t>(1, (a - origin + kStep - 1) / kStep) * kStep;
  __syncwarp();
  double lead[kTerms] = {};
  int now = 0;  // state.lead[now]: the Lead of the last step scanned
  for (std::int64_t base = origin; base < a; base += kStep) {
    now ^= 1;
    scan_terms<T>(s, base, a, lead, state.lead[now]);
    if (lane == 0) {
      for (int w = 0; w < windows; ++w) {  // Trail(start) = Lead(start - 1)
        const std::int64_t last = state.trail_row[w] - 1;
        if (last < base || last >= base + kStep) continue;
        const int slot = slot_of(last - base);
        for (int j = 0; j < kTerms; ++j) state.trail_sum[w][j] = state.lead[now][j][slot];
      }
    }
    __syncwarp();
  }

  for (std::int64_t base = a; base < b; base += kStep) {
    const std::int64_t first = base + kLaneRows * lane;
    const std::int64_t last_valid = (b < base + kStep ? b : base + kStep) - 1;
    double mids[kLaneRows];  // a window without a trade has the mid as VWAP
#pragma unroll
    for (int k = 0; k < kLaneRows; ++k) {
      mids[k] = first + k < b ? book::quote_at<T>(s, first + k).mid() : 0.0;
    }
    now ^= 1;
    scan_terms<T>(s, base, s.rows, lead, state.lead[now]);
    const double (*current)[kStep] = state.lead[now];
    const double (*previous)[kStep] = state.lead[now ^ 1];
    for (int w = 0; w < windows; ++w) {
      const int column = w * spec.rolling_count;
      std::int64_t starts[kLaneRows];
      const std::int64_t trail_row = state.trail_row[w];
      std::int64_t lo = trail_row;
#pragma unroll
      for (int k = 0; k < kLaneRows; ++k) {
        const std::int64_t t = first + k < last_valid ? first + k : last_valid;
        lo = starts[k] = window_start(s, spec, w, t, lo);
      }
      const std::int64_t last_start = __shfl_sync(kAll, starts[kLaneRows - 1], 31);
      double carry[kTerms];
#pragma unroll
      for (int j = 0; j < kTerms; ++j) carry[j] = state.trail_sum[w][j];
      __syncwarp();
      // Trail of a row's window: known where it starts where the last one
      // did, Lead(start - 1) where that row is in the ring (this step or the
      // one before), else rescanned below. Starts grow with the rows, so the
      // rows to rescan are the first ones, up to the start `rescan_to`.
      std::int64_t rescan_to = trail_row;
#pragma unroll
      for (int k = 0; k < kLaneRows; ++k) {
        const std::int64_t t = first + k, ring_row = starts[k] - 1 - (base - kStep);
        if (t > last_valid) continue;
        if (starts[k] == trail_row) {
          store_window(spec, current, k * 32 + lane, carry, mids[k], row_out(k, t) + column);
        } else if (ring_row >= 0) {
          const double (*ring)[kStep] = ring_row < kStep ? previous : current;
          const int slot = slot_of(ring_row % kStep);
          double trail[kTerms];
#pragma unroll
          for (int j = 0; j < kTerms; ++j) trail[j] = ring[j][slot];
          store_window(spec, current, k * 32 + lane, trail, mids[k], row_out(k, t) + column);
          if (t == last_valid) {
#pragma unroll
            for (int j = 0; j < kTerms; ++j) state.trail_sum[w][j] = trail[j];
          }
        } else {
          rescan_to = starts[k];
        }
      }
      rescan_to = warp_max(rescan_to);
      for (std::int64_t from = trail_row; from < rescan_to; from += kStep) {
        scan_terms<T>(s, from, s.rows, carry, state.trail);
#pragma unroll
        for (int k = 0; k < kLaneRows; ++k) {
          const std::int64_t t = first + k;
          if (t > last_valid || starts[k] <= from || starts[k] > from + kStep ||
              starts[k] - 1 >= base - kStep) {
            continue;
          }
          const int slot = slot_of(starts[k] - 1 - from);
          double trail[kTerms];
#pragma unroll
          for (int j = 0; j < kTerms; ++j) trail[j] = state.trail[j][slot];
          store_window(spec, current, k * 32 + lane, trail, mids[k], row_out(k, t) + column);
          if (t == last_valid) {
#pragma unroll
            for (int j = 0; j < kTerms; ++j) state.trail_sum[w][j] = trail[j];
          }
        }
        __syncwarp();
      }
      if (lane == 0) state.trail_row[w] = last_start;
      __syncwarp();
    }
    // Re-anchor: the origin moves up to the earliest window start, so Lead,
    // the ring and the trails stay at the magnitude of the longest window and
    // their differences keep their precision however long the chunk.
    int earliest = 0;
    for (int w = 1; w < windows; ++w) {
      if (state.trail_row[w] < state.trail_row[earliest]) earliest = w;
    }
    double offset[kTerms];
#pragma unroll
    for (int j = 0; j < kTerms; ++j) offset[j] = state.trail_sum[earliest][j];
    __syncwarp();
#pragma unroll
    for (int j = 0; j < kTerms; ++j) {
      lead[j] -= offset[j];
#pragma unroll
      for (int k = 0; k < kLaneRows; ++k) state.lead[now][j][k * 32 + lane] -= offset[j];
    }
    if (lane == 0) {
      for (int w = 0; w < windows; ++w) {
        for (int j = 0; j < kTerms; ++j) state.trail_sum[w][j] -= offset[j];
      }
    }
    __syncwarp();
    if (staged) {
      __syncwarp();
      // Element e of the step's rolling columns: row r = e / width, column c = e % width.
      const std::int64_t count = (last_valid - base + 1) * width;
      std::int64_t r = lane / width, c = lane % width;
      for (std::int64_t e = lane; e < count; e += 32) {
        rolling[(base + r) * columns + c] = staging[(r / kLaneRows) * lane_stride +
                                                    (r % kLaneRows) * width + c];
        c += 32;
        while (c >= width) {
          c -= width;
          ++r;
        }
      }
      __syncwarp();
    }
  }
}

int multiprocessors(int device) {
  static std::mutex mutex;
  static std::vector<int> known;
  const std::lock_guard<std::mutex> lock(mutex);
  if (device >= int(known.size())) known.resize(device + 1, 0);
  if (!known[device]) {
    cuda_check(cudaDeviceGetAttribute(&known[device], cudaDevAttrMultiProcessorCount, device),
               "cudaDeviceGetAttribute");
  }
  return known[device];
}

}  // namespace

void book_features_cuda(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                        std::uintptr_t out, DType out_dtype, int device, std::uintptr_t stream) {
  if (series.rows == 0 || spec.columns() == 0) return;
  cudaStream_t s = use_device(device, stream);
  const std::size_t out_size = out_dtype == DType::Float64 ? 8 : 4;
  const std::int64_t windows =
      spec.rolling_count ? spec.window_count + spec.time_window_count : 0;
  // Event columns: a block of kMapThreads rows, staged when they fit.
  const std::size_t map_bytes = kMapThreads * (spec.event_columns() + 1) * out_size;
  const bool map_staged = map_bytes <= kMaxStagingBytes;
  const unsigned map_blocks = static_cast<unsigned>((series.rows + kMapThreads - 1) / kMapThreads);
  // Rolling columns: enough chunks to fill every SM several times over,
  // each several times the longest event window so warm-ups stay small.
  std::int64_t longest = 1;
  for (int w = 0; w < spec.window_count; ++w) longest = std::max(longest, spec.windows[w]);
  const std::int64_t warps_wanted = std::int64_t(multiprocessors(device)) * 32;
  std::int64_t chunk = std::max<std::int64_t>({(series.rows + warps_wanted - 1) / warps_wanted,
                                               8 * kStep, 4 * std::min(longest, series.rows)});
  chunk = (chunk + kStep - 1) / kStep * kStep;
  const std::int64_t chunks = (series.rows + chunk - 1) / chunk;
  const unsigned window_blocks = static_cast<unsigned>((chunks + kWarps - 1) / kWarps);
  const std::size_t staging_bytes =
      32 * (kLaneRows * windows * spec.rolling_count + 1) * out_size;
  const bool window_staged = staging_bytes <= kMaxStagingBytes;
  const std::size_t window_bytes =
      kWarps * ((sizeof(WarpState) + (window_staged ? staging_bytes : 0) + 15) / 16 * 16);
  dispatch_float(dtype, [&](auto* in_tag) {
    dispatch_float(out_dtype, [&](auto* out_tag) {
      using T = std::remove_pointer_t<decltype(in_tag)>;
      using U = std::remove_pointer_t<decltype(out_tag)>;
      U* features = reinterpret_cast<U*>(out);
      if (spec.event_columns()) {
        event_columns_kernel<T, U><<<map_blocks, kMapThreads, map_staged ? map_bytes : 0, s>>>(
            series, spec, map_staged, features);
      }
      if (windows) {
        auto kernel = window_columns_kernel<T, U>;
        opt_in_shared_memory(kernel, window_bytes, "book_features shared memory");
        kernel<<<window_blocks, kWarps * 32, window_bytes, s>>>(series, spec, chunk,
                                                                window_staged, features);
      }
    });
  });
  cuda_check(cudaGetLastError(), "book_features kernel launch");
}

}  // namespace ma_kernels
