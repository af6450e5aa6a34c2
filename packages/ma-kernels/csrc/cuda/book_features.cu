// book_features on CUDA: the per-event columns by event_columns_kernel, the
// rolling columns by window_columns_kernel; where a tile's whole rows fit
// shared memory, the rolling kernel writes the event columns too, and where
// besides every window is an event window reaching at most kHaloRows rows
// back, near_window_kernel does both in one pass over each input; where
// windows reach further, ring_window_kernel (below) does, from the last
// tiles each block keeps, and leaves the tiles it cannot serve to
// window_columns_kernel.
//
// event_columns_kernel: the per-event columns (csrc/book_features.h), one
// thread per row at full occupancy; a block's rows are staged in shared
// memory and written as whole rows (row-major output written thread by
// thread would touch a sector per thread and store).
//
// window_columns_kernel: the rolling columns, a block per tile of kTileRows
// consecutive rows [a, b). A window's sums are differences of prefix sums of
// the rolling terms, anchored at a row s0 at or before the window start of
// the tile's first row:
//
//   sum over the window of row t = P(t) - P(start(t) - 1),
//   P(j) = the sum of the terms of rows [s0, j].
//
// One scan serves the tile: every thread computes the terms of its
// consecutive rows of the span [s0, b) (s0 the earliest start of the near
// windows, those starting at most kHaloRows before the tile, else the tile's
// first row), a block scan gives P over it in shared memory, and each row
// whose window starts in the span reads P(t) and P(start - 1) there (a time
// window finds its start among the span's times, also in shared memory). A
// far window's other rows come from its walk over the rows before the span
// in pieces of kTileRows rows: a scan a piece, each row reading P(start - 1)
// from the piece that holds its start, the walk's sum up to the span added
// to the row's P from the span; where a window may span whole tiles, tiles
// holding no start add their totals (tile_totals_kernel) instead. The sums
// never span more than a tile and a window, so their differences keep their
// precision however long the series.
#include <algorithm>
#include <stdexcept>
#include <type_traits>

#include "book_features.h"
#include "cuda/cells.cuh"
#include "cuda/check.cuh"

namespace ma_kernels {
namespace {

using book::Quote;
using book::kTerms;

// Rows (and threads) a block of event_columns_kernel: a row a thread (three
// took twice the registers and ran no faster, notes/microstructure.md v9).
constexpr int kMapThreads = 256;
constexpr int kTileThreads = 256;  // threads of window_columns_kernel
constexpr int kRowsPerThread = 2;  // of a tile, and of a far window's piece
constexpr int kTileRows = kTileThreads * kRowsPerThread;
constexpr int kSpanRowsPerThread = 3;  // of the near windows' span
constexpr int kSpanRows = kTileThreads * kSpanRowsPerThread;
constexpr int kHaloRows = kSpanRows - kTileRows;  // how far before its tile a near window starts
constexpr int kTileWarps = kTileThreads / 32;
constexpr int kMaxWindows = 2 * kMaxSpecEntries;  // event and time windows
constexpr unsigned kAll = 0xffffffffu;
// Staging a block's output costs rows x columns elements of shared memory;
// past this, rows go straight to global memory.
constexpr std::size_t kMaxStagingBytes = 48 * 1024;
// window_columns_kernel stages whole rows (its tile's event columns too) up
// to this: two blocks of it still fit an SM beside their TileState.
constexpr std::size_t kMaxRowStagingBytes = 64 * 1024;

// What window_columns_kernel stages in shared memory before writing its
// rows: nothing (each column straight to global memory), the rolling
// columns, or whole rows, event columns included (event_columns_kernel is
// then not run). Whole rows are written as whole sectors; two kernels each
// writing part of every row made L2 read each sector back from DRAM to
// merge it.
enum class Staging : int { kNone, kRolling, kRows };

// out[r * columns + c] = staging[r * stride + c] for r < rows, c < width,
// with 32-bit offsets (a block's rows are a few tens of KB; 64-bit ones made
// the copy 23 instructions an element). Whole rows (width == columns) are
// one contiguous output range: staged without a pad (odd column counts) they
// are copied 16 bytes at a time both sides; staged with one pad a row (even
// counts) a pair of elements never straddles a row, and element f of row r
// is staged at f + r. Both sides are 16-byte aligned (the op's own output; a
// block's rows start at a multiple of 256). The 16-byte copy that gathered
// its elements across pads took ~60 instructions a vector, a tenth of the
// window kernel's (notes/microstructure.md, v15).
template <typename U>
__device__ void copy_rows(const U* staging, int stride, int rows, int width, U* out,
                          int columns) {
  const int n = rows * columns, tid = int(threadIdx.x), threads = int(blockDim.x);
  if (width == columns && stride == columns) {
    constexpr int kVector = 16 / sizeof(U);
    for (int f = tid * kVector; f + kVector <= n; f += threads * kVector) {
      *reinterpret_cast<float4*>(out + f) = *reinterpret_cast<const float4*>(staging + f);
    }
    for (int i = n / kVector * kVector + tid; i < n; i += threads) out[i] = staging[i];
  } else if (width == columns && stride == columns + 1 && columns % 2 == 0) {
    using Pair = std::conditional_t<sizeof(U) == 4, float2, float4>;
    const int step = 2 * threads, step_rows = step / columns, step_columns = step % columns;
    int f = 2 * tid, r = f / columns, c = f % columns;
    for (; f < n; f += step) {
      const U pair[2] = {staging[f + r], staging[f + r + 1]};
      Pair packed;
      memcpy(&packed, pair, sizeof packed);
      *reinterpret_cast<Pair*>(out + f) = packed;
      r += step_rows;
      c += step_columns;
      if (c >= columns) {
        c -= columns;
        ++r;
      }
    }
  } else {
    for_each_cell(rows, width,
                  [&](int r, int c) { out[r * columns + c] = staging[r * stride + c]; });
  }
}

// Quotes of rows t0 - 1 .. t0 + R - 1 into q[0 .. R] (rows past the series
// read its last row, row -1 reads row 0: the first row is its own
// predecessor): each quote loaded once for the row and its successor.
template <typename T, int R>
__device__ void quotes_from(const BookSeries& s, std::int64_t t0, Quote (&q)[R + 1]) {
#pragma unroll
  for (int k = 0; k <= R; ++k) {
    const std::int64_t row = t0 - 1 + k;
    q[k] = book::quote_at<T>(s, row < 0 ? 0 : row < s.rows ? row : s.rows - 1);
  }
}

// The event columns of the rows t0 .. t0 + R - 1 in [lo, hi), from their
// quotes q (quotes_from), into rows (row t at rows + (t - lo) * stride), a
// column at a time: each column's formula is picked once for R rows, and only
// the spec's formulas run (a row at a time, the compiler computed every
// formula of the dispatch before selecting one).
template <typename T, typename U, int R>
__device__ void store_event_rows(const BookSeries& s, const BookFeatureSpec& spec,
                                 std::int64_t t0, const Quote (&q)[R + 1], std::int64_t lo,
                                 std::int64_t hi, U* rows, int stride) {
  const auto inside = [&](int k) { return t0 + k >= lo && t0 + k < hi; };
  const auto each_row = [&](auto&& value) {
#pragma unroll
    for (int k = 0; k < R; ++k) {
      if (inside(k)) rows[int(t0 + k - lo) * stride] = U(value(k, t0 + k));
    }
  };
  for (int c = 0; c < spec.instant_count; ++c, ++rows) {
    const int code = spec.instant[c];
    if (code == kSignedVolume) {
      each_row([&](int, std::int64_t t) { return book::signed_volume<T>(s, t); });
    } else if (code == kInterArrival) {
      each_row([&](int, std::int64_t t) {
        return t > 0 ? book::inter_arrival<T>(s, t, t - 1) : 0.0;
      });
    } else {
      book::with_constant(code, [&](auto C) {
        each_row([&](int k, std::int64_t t) {
          return book::quote_value<C>(q[k + 1], q[k], t > 0);
        });
      }, book::QuoteCodes{});
    }
  }
  if (!spec.depth_count && !spec.ofi_levels) return;
#pragma unroll
  for (int k = 0; k < R; ++k) {
    if (inside(k)) {
      book::store_depth_columns<T>(s, spec, t0 + k, t0 + k > 0, rows + int(t0 + k - lo) * stride);
    }
  }
}

template <typename T, typename U>
__global__ void __launch_bounds__(kMapThreads)
event_columns_kernel(const __grid_constant__ BookSeries s,
                     const __grid_constant__ BookFeatureSpec spec, int staged, U* out) {
  extern __shared__ __align__(16) unsigned char shared[];
  const std::int64_t base = std::int64_t(blockIdx.x) * kMapThreads, t = base + threadIdx.x;
  const int width = int(spec.event_columns()), stride = width | 1;  // odd: rows on distinct banks
  const int columns = int(spec.columns());
  U* tile = reinterpret_cast<U*>(shared);
  if (t < s.rows) {
    Quote q[2];
    quotes_from<T, 1>(s, t, q);
    store_event_rows<T, U, 1>(s, spec, t, q, t, s.rows,
                              staged ? tile + threadIdx.x * stride : out + t * columns,
                              staged ? stride : columns);
  }
  if (!staged) return;
  __syncthreads();
  const int rows = int(s.rows - base < kMapThreads ? s.rows - base : kMapThreads);
  copy_rows(tile, stride, rows, width, out + base * columns, columns);
}

// Shared memory of window_columns_kernel, before the output staging.
struct TileState {
  double prefix[kTerms][kSpanRows];       // P over the span or the current piece
  std::int64_t times[kSpanRows];          // their times (time windows)
  double warp_totals[kTileWarps][kTerms]; // of the block scan
  // Each window's starts of the tile's first and last rows.
  std::int64_t first_start[kMaxWindows], last_start[kMaxWindows];
  double span_head[kTerms];  // the sums of the span's rows before the tile
};

// The first row of the time window (time_a - tau, time_a] of row a, by one
// warp: 32 rows probed at once, steps growing 32-fold until a probe leaves
// the window, then shrinking 32-fold inside the bracket (a few rounds of
// loads even for windows of millions of rows).
__device__ std::int64_t time_window_start(const BookSeries& s, std::int64_t a,
                                          std::int64_t tau) {
  const int lane = threadIdx.x & 31;
  std::int64_t inside = a, step = 1;  // `inside` is in the window
  bool growing = true;
  for (;;) {
    const std::int64_t j = inside - (lane + 1) * step;
    const bool in = j >= 0 && !book::before_time_window(s, j, a, tau);
    const int count = __popc(__ballot_sync(kAll, in));  // in: a prefix of the lanes
    inside -= count * step;
    if (count == 32 && growing) {
      step *= 32;
      continue;
    }
    growing = false;
    if (step == 1) return inside;
    step /= 32;
  }
}

// The terms of the rows t0 .. t0 + Rows - 1 from their quotes q
// (quotes_from), those in [lo, hi) only (others add nothing), summed into
// running; keep(k, j, sum) sees term j's running sum at row t0 + k.
template <typename T, int Rows, typename Keep>
__device__ void thread_terms(const BookSeries& s, std::int64_t t0, const Quote (&q)[Rows + 1],
                             std::int64_t lo, std::int64_t hi, double (&running)[kTerms],
                             Keep&& keep) {
#pragma unroll
  for (int k = 0; k < Rows; ++k) {
    const std::int64_t row = t0 + k;
    double x[kTerms] = {};
    if (row >= lo && row < hi) book::terms_of<T>(s, row, q[k + 1], q[k], row > 0, x);
#pragma unroll
    for (int j = 0; j < kTerms; ++j) keep(k, j, running[j] += x[j]);
  }
}

// The terms of this thread's slots Rows tid + k (rows t0 + k) as running
// sums into state.prefix, where block_prefix finishes them (kept in shared
// memory, not registers: 36 doubles of registers at Rows 3).
template <typename T, int Rows>
__device__ void slot_terms(const BookSeries& s, std::int64_t t0, const Quote (&q)[Rows + 1],
                           std::int64_t lo, std::int64_t hi, TileState& state,
                           double (&running)[kTerms]) {
  const int slot = Rows * int(threadIdx.x);
  thread_terms<T, Rows>(s, t0, q, lo, hi, running,
                        [&](int k, int j, double sum) { state.prefix[j][slot + k] = sum; });
}

// The sum of x over this lane and the lanes below it in the warp.
__device__ __forceinline__ double warp_inclusive_sum(double x, int lane) {
#pragma unroll
  for (int d = 1; d < 32; d *= 2) {
    const double y = __shfl_up_sync(kAll, x, d);
    if (lane >= d) x += y;
  }
  return x;
}

// At lane j < kTerms: from `start`, term j's warp totals before this warp's
// (`before`) and all of them (`all`), in warp order; `start` elsewhere.
template <int Warps>
__device__ __forceinline__ void add_warp_totals(const double (&totals)[Warps][kTerms], int lane,
                                                int warp, double start, double& before,
                                                double& all) {
  before = all = start;
  if (lane >= kTerms) return;
  for (int v = 0; v < Warps; ++v) {
    const double total = totals[v][lane];
    before += v < warp ? total : 0.0;
    all += total;
  }
}

// P over the block's slots (thread i's Rows consecutive slots from Rows i),
// from each thread's running sums of its slots in state.prefix (slot_terms)
// and their total `running`, anchored at carry = P before slot 0, which
// becomes P at the last slot. Ends with a barrier: the prefix is readable.
template <int Rows>
__device__ void block_prefix(const double (&running)[kTerms], TileState& state,
                             double (&carry)[kTerms]) {
  const int tid = threadIdx.x, lane = tid & 31, warp = tid / 32;
  // Block scan of the threads' totals: within the warp, then the warps'.
  double offset[kTerms];
#pragma unroll
  for (int j = 0; j < kTerms; ++j) {
    const double inclusive = warp_inclusive_sum(running[j], lane);
    offset[j] = inclusive - running[j];
    if (lane == 31) state.warp_totals[warp][j] = inclusive;
  }
  __syncthreads();
  // Lane j < kTerms adds up term j's warp totals; the other lanes take them
  // by shuffles (every thread summing every term was a fifth of the scan's
  // instructions).
  double start = 0.0, lane_before, lane_total;
#pragma unroll
  for (int j = 0; j < kTerms; ++j) start = lane == j ? carry[j] : start;
  add_warp_totals(state.warp_totals, lane, warp, start, lane_before, lane_total);
#pragma unroll
  for (int j = 0; j < kTerms; ++j) {
    const double before = __shfl_sync(kAll, lane_before, j);
#pragma unroll
    for (int k = 0; k < Rows; ++k) state.prefix[j][Rows * tid + k] += before + offset[j];
    carry[j] = __shfl_sync(kAll, lane_total, j);
  }
  __syncthreads();
}

// P over the piece of Rows x kTileThreads rows at p, rows outside [lo, hi)
// adding nothing, into state.prefix (slot i: row p + i), anchored at carry
// = P(p - 1), which becomes P at the piece's end; the rows' times into
// state.times where `timed`. Ends with a barrier: the prefix is readable.
template <typename T, int Rows>
__device__ void scan_piece(const BookSeries& s, std::int64_t p, std::int64_t lo,
                           std::int64_t hi, bool timed, TileState& state,
                           double (&carry)[kTerms]) {
  const int tid = threadIdx.x;
  const std::int64_t t0 = p + Rows * tid;
  Quote q[Rows + 1];
  quotes_from<T, Rows>(s, t0, q);
  double running[kTerms] = {};
  slot_terms<T, Rows>(s, t0, q, lo, hi, state, running);
  if (timed) {
#pragma unroll
    for (int k = 0; k < Rows; ++k) {
      const std::int64_t row = t0 + k;
      state.times[Rows * tid + k] = row >= lo && row < hi ? book::at<std::int64_t>(s.time, row) : 0;
    }
  }
  block_prefix<Rows>(running, state, carry);
}

// The first slot in [lo, hi] of state.times inside the time window of a row
// at `time` (hi, the row's own slot, is inside).
__device__ int first_slot_inside(const TileState& state, int lo, int hi, std::int64_t time,
                                 std::int64_t tau) {
  while (lo < hi) {
    const int mid = (lo + hi) / 2;
    const bool out_of_window = static_cast<std::uint64_t>(time) -
                                   static_cast<std::uint64_t>(state.times[mid]) >=
                               static_cast<std::uint64_t>(tau);
    if (out_of_window) lo = mid + 1; else hi = mid;
  }
  return lo;
}

// totals[g] = the sum of the terms of tile g: window_columns_kernel adds these
// for the tiles a window spans whole, instead of scanning them again.
template <typename T>
__global__ void __launch_bounds__(kTileThreads)
tile_totals_kernel(const __grid_constant__ BookSeries s, double* totals) {
  __shared__ double warp_totals[kTileWarps][kTerms];
  const int lane = threadIdx.x & 31, warp = threadIdx.x / 32;
  double sum[kTerms] = {};
  const std::int64_t p = std::int64_t(blockIdx.x) * kTileRows;
  const std::int64_t t0 = p + kRowsPerThread * threadIdx.x;
  Quote q[kRowsPerThread + 1];
  quotes_from<T, kRowsPerThread>(s, t0, q);
  thread_terms<T, kRowsPerThread>(s, t0, q, p, s.rows, sum, [](int, int, double) {});
#pragma unroll
  for (int j = 0; j < kTerms; ++j) {
#pragma unroll
    for (int d = 16; d; d /= 2) sum[j] += __shfl_xor_sync(kAll, sum[j], d);
    if (lane == 0) warp_totals[warp][j] = sum[j];
  }
  __syncthreads();
  if (threadIdx.x < kTerms) {
    double total = 0.0;
    for (int v = 0; v < kTileWarps; ++v) total += warp_totals[v][threadIdx.x];
    totals[blockIdx.x * kTerms + threadIdx.x] = total;
  }
}

// The rolling columns (each row's last windows x rolling_count columns, from
// column spec.event_columns()) of the tile of blockIdx.x, and with
// Staging::kRows its event columns too. With `totals` (tile_totals_kernel or
// the ring kernel), a far window adds whole the tiles that hold no window
// start of this tile's rows, instead of scanning them. With `only`, the
// tiles it flags alone (the ring kernel's overflowing ones).
template <typename T, typename U>
__global__ void __launch_bounds__(kTileThreads, 2)
window_columns_kernel(const __grid_constant__ BookSeries s,
                      const __grid_constant__ BookFeatureSpec spec, const double* totals,
                      Staging staged, const unsigned char* only, U* out) {
  if (only && !only[blockIdx.x]) return;
  extern __shared__ __align__(16) unsigned char shared[];
  TileState& state = *reinterpret_cast<TileState*>(shared);
  U* staging = reinterpret_cast<U*>(shared + (sizeof(TileState) + 15) / 16 * 16);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid / 32;
  const std::int64_t own = blockIdx.x, a = own * kTileRows;
  const std::int64_t b = a + kTileRows < s.rows ? a + kTileRows : s.rows;
  const int windows = spec.window_count + spec.time_window_count;
  const std::int64_t columns = spec.columns(), width = windows * spec.rolling_count;
  const std::int64_t row_stride = columns | 1;  // staged rows: odd, fewer bank conflicts
  // This thread's rows of the tile, and what their windows need of them.
  std::int64_t rows[kRowsPerThread], times[kRowsPerThread];
  double mids[kRowsPerThread];  // a window without a trade has the mid as VWAP
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
    rows[k] = a + kRowsPerThread * tid + k;
    const bool valid = rows[k] < b;
    times[k] = valid ? book::at<std::int64_t>(s.time, rows[k]) : 0;
    mids[k] = valid ? book::quote_at<T>(s, rows[k]).mid() : 0.0;
  }
  // Row k's rolling columns of window w from its sums.
  const auto store = [&](int w, int k, const double (&sums)[kTerms]) {
    const std::int64_t r = rows[k] - a;
    U* to = staged == Staging::kRolling ? staging + r * width
            : staged == Staging::kRows  ? staging + r * row_stride + spec.event_columns()
                                        : out + rows[k] * columns + spec.event_columns();
    book::store_rolling(spec, sums, mids[k], to + w * spec.rolling_count);
  };
  const auto timed = [&](int w) { return w >= spec.window_count; };
  const auto tau = [&](int w) { return spec.time_windows[w - spec.window_count]; };
  // The first row of event window w of row t.
  const auto event_start = [&](int w, std::int64_t t) {
    return t - spec.windows[w] + 1 > 0 ? t - spec.windows[w] + 1 : std::int64_t(0);
  };

  // Each window's starts of the tile's first and last rows (every row's lie
  // between), a warp a window.
  for (int w = warp; w < windows; w += kTileWarps) {
    const std::int64_t first = timed(w) ? time_window_start(s, a, tau(w)) : event_start(w, a);
    const std::int64_t last = !timed(w) ? event_start(w, b - 1)
                              : totals  ? time_window_start(s, b - 1, tau(w))
                                        : b - 1;
    if (lane == 0) {
      state.first_start[w] = first;
      state.last_start[w] = last;
    }
  }
  __syncthreads();
  const auto near = [&](int w) { return state.first_start[w] >= a - kHaloRows; };

  // One scan of the span [s0, b): the tile and the near windows' starts
  // before it (s0 = a where no window is near). Every near window's sums
  // come from it, and so does every row of a far window whose start lies in
  // it; other far rows keep P over their tile rows for after the walk.
  std::int64_t s0 = a;
  bool timed_span = false, any_far = false;
  for (int w = 0; w < windows; ++w) {
    if (near(w)) s0 = state.first_start[w] < s0 ? state.first_start[w] : s0;
    any_far |= !near(w);
    timed_span |= timed(w);
  }
  {
    double carry[kTerms] = {};
    if (s0 < a) {
      scan_piece<T, kSpanRowsPerThread>(s, s0, s0, b, timed_span, state, carry);
    } else {
      scan_piece<T, kRowsPerThread>(s, s0, s0, b, timed_span, state, carry);
    }
  }
  const auto span_prefix = [&](int j, int slot) {
    return slot >= 0 ? state.prefix[j][slot] : 0.0;
  };
  unsigned done = 0;  // bit w * kRowsPerThread + k: row k of window w is stored
  for (int w = 0; w < windows; ++w) {
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      if (rows[k] >= b) continue;
      const int at = int(rows[k] - s0);
      // A far time window starts in the span where row s0 has left it.
      const bool in_span =
          near(w) || (timed(w) ? static_cast<std::uint64_t>(times[k]) -
                                         static_cast<std::uint64_t>(state.times[0]) >=
                                     static_cast<std::uint64_t>(tau(w))
                               : event_start(w, rows[k]) >= s0);
      if (!in_span) continue;
      const int from =
          timed(w) ? first_slot_inside(state, near(w) ? int(state.first_start[w] - s0) : 0, at,
                                       times[k], tau(w))
                   : int(event_start(w, rows[k]) - s0);
      double sums[kTerms];
#pragma unroll
      for (int j = 0; j < kTerms; ++j) sums[j] = span_prefix(j, at) - span_prefix(j, from - 1);
      store(w, k, sums);
      done |= 1u << (w * kRowsPerThread + k);
    }
  }
  double tile_sums[kRowsPerThread][kTerms];  // P over [s0, row]
#pragma unroll
  for (int k = 0; k < kRowsPerThread; ++k) {
#pragma unroll
    for (int j = 0; j < kTerms; ++j) {
      tile_sums[k][j] = any_far && rows[k] < b ? state.prefix[j][rows[k] - s0] : 0.0;
    }
  }
  if (tid < kTerms) state.span_head[tid] = span_prefix(tid, int(a - 1 - s0));
  __syncthreads();  // the far windows' pieces overwrite the shared state

  // Each far window's other rows, by its walk over the pieces before the
  // span: a scan a piece (rows from s0 on add nothing), each row reading
  // P(start - 1) from the piece that holds its start, whole tiles without a
  // start added from their totals.
  for (int w = 0; w < windows; ++w) {
    if (near(w)) continue;
    const std::int64_t first = state.first_start[w], last_start = state.last_start[w];
    std::int64_t starts[kRowsPerThread];  // -1 until found (time windows)
    double trail[kRowsPerThread][kTerms] = {}, carry[kTerms] = {};
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      starts[k] = timed(w) ? -1 : event_start(w, rows[k]);
    }
    for (std::int64_t g = first / kTileRows; g * kTileRows < s0; ++g) {
      const std::int64_t p = g * kTileRows;
      // No start in tile g: its total, less its rows in the span (where g is
      // the tile before this one).
      if (totals && g > last_start / kTileRows) {
#pragma unroll
        for (int j = 0; j < kTerms; ++j) {
          carry[j] += totals[g * kTerms + j] - (p + kTileRows > s0 ? state.span_head[j] : 0.0);
        }
        continue;
      }
      const std::int64_t last = (p + kTileRows < s0 ? p + kTileRows : s0) - 1;
      double before[kTerms];  // P(p - 1), for a window starting at p
#pragma unroll
      for (int j = 0; j < kTerms; ++j) before[j] = carry[j];
      scan_piece<T, kRowsPerThread>(s, p, first, s0, timed(w), state, carry);
#pragma unroll
      for (int k = 0; k < kRowsPerThread; ++k) {
        if (rows[k] >= b || (done >> (w * kRowsPerThread + k) & 1u)) continue;
        if (timed(w) && starts[k] < 0 &&
            static_cast<std::uint64_t>(times[k]) -
                    static_cast<std::uint64_t>(state.times[last - p]) <
                static_cast<std::uint64_t>(tau(w))) {
          starts[k] = p + first_slot_inside(state, int((first > p ? first : p) - p), int(last - p),
                                            times[k], tau(w));
        }
        if (starts[k] < p || starts[k] > last) continue;
#pragma unroll
        for (int j = 0; j < kTerms; ++j) {
          trail[k][j] = starts[k] == p ? before[j] : state.prefix[j][starts[k] - 1 - p];
        }
      }
      __syncthreads();  // the next piece overwrites the shared state
    }
    // carry - trail: the rows from the start to s0 - 1 (none where a time
    // window's start, found in no piece, is s0 itself); tile_sums the rest.
#pragma unroll
    for (int k = 0; k < kRowsPerThread; ++k) {
      if (rows[k] >= b || (done >> (w * kRowsPerThread + k) & 1u)) continue;
      if (starts[k] < 0) {
#pragma unroll
        for (int j = 0; j < kTerms; ++j) trail[k][j] = carry[j];
      }
      double sums[kTerms];
#pragma unroll
      for (int j = 0; j < kTerms; ++j) sums[j] = carry[j] - trail[k][j] + tile_sums[k][j];
      store(w, k, sums);
    }
  }
  if (staged == Staging::kRolling) {
    __syncthreads();  // every row's rolling columns are staged
    copy_rows(staging, int(width), int(b - a), int(width), out + a * columns + spec.event_columns(),
              int(columns));
  }
  if (staged != Staging::kRows) return;
  Quote q[kRowsPerThread + 1];
  quotes_from<T, kRowsPerThread>(s, rows[0], q);
  store_event_rows<T, U, kRowsPerThread>(s, spec, rows[0], q, a, b, staging, int(row_stride));
  __syncthreads();
  copy_rows(staging, int(row_stride), int(b - a), int(columns), out + a * columns, int(columns));
}

// How far the longest of a spec's event windows reaches before its row.
inline std::int64_t window_reach(const BookFeatureSpec& spec) {
  std::int64_t reach = 0;
  for (int w = 0; w < spec.window_count; ++w) reach = std::max(reach, spec.windows[w] - 1);
  return reach;
}

// near_window_kernel's tile for windows reaching `reach` rows back, its
// rows staged at row_bytes each: what the span's kSpanRows leave after the
// reach (a 100-event window: 664 rows, where at kTileRows a fifth of the
// threads' span rows fell past the tile), within kMaxRowStagingBytes and
// never below kTileRows; a multiple of 8 rows, so that every tile's output
// starts 16-byte aligned.
inline int near_tile_rows(std::int64_t reach, std::size_t row_bytes) {
  const auto fit = static_cast<std::int64_t>(kMaxRowStagingBytes / row_bytes);
  return int(std::max<std::int64_t>(kTileRows, std::min(kSpanRows - reach, fit))) / 8 * 8;
}

// The whole rows of a spec whose windows are all event windows reaching at
// most kHaloRows rows before their row (no time window, nothing far), a
// block per tile of tile_rows (near_tile_rows): each thread takes
// kSpanRowsPerThread consecutive rows of the span [s0, b) (the tile and the
// rows its windows reach before it), and their quotes serve both the tile's
// event columns and the terms of every window, so each input is loaded
// once. (window_columns_kernel loads a tile's quotes again for its event
// columns, on another row map, and keeps the bookkeeping of far and time
// windows.)
template <typename T, typename U>
__global__ void __launch_bounds__(kTileThreads, 2)
near_window_kernel(const __grid_constant__ BookSeries s,
                   const __grid_constant__ BookFeatureSpec spec, int reach, int tile_rows,
                   U* out) {
  constexpr int R = kSpanRowsPerThread;
  extern __shared__ __align__(16) unsigned char shared[];
  TileState& state = *reinterpret_cast<TileState*>(shared);
  U* staging = reinterpret_cast<U*>(shared + (sizeof(TileState) + 15) / 16 * 16);
  const std::int64_t a = std::int64_t(blockIdx.x) * tile_rows;
  const std::int64_t b = a + tile_rows < s.rows ? a + tile_rows : s.rows;
  const std::int64_t s0 = a > reach ? a - reach : 0, t0 = s0 + R * threadIdx.x;
  const int columns = int(spec.columns()), row_stride = columns | 1;  // odd: fewer bank conflicts
  Quote q[R + 1];
  quotes_from<T, R>(s, t0, q);
  store_event_rows<T, U, R>(s, spec, t0, q, a, b, staging, row_stride);
  double mids[R];  // a window without a trade has the mid as VWAP
#pragma unroll
  for (int k = 0; k < R; ++k) mids[k] = q[k + 1].mid();
  {
    double running[kTerms] = {}, carry[kTerms] = {};
    slot_terms<T, R>(s, t0, q, s0, b, state, running);
    block_prefix<R>(running, state, carry);
  }
  U* rolling = staging + spec.event_columns();
#pragma unroll
  for (int k = 0; k < R; ++k) {
    const std::int64_t t = t0 + k;
    if (t < a || t >= b) continue;
    const int at = R * int(threadIdx.x) + k;  // t's slot
    for (int w = 0; w < spec.window_count; ++w) {
      const std::int64_t start = t - spec.windows[w] + 1;
      const int from = int((start > 0 ? start : 0) - s0);  // >= 0: s0 is the earliest start
      double sums[kTerms];
#pragma unroll
      for (int j = 0; j < kTerms; ++j) {
        sums[j] = state.prefix[j][at] - (from > 0 ? state.prefix[j][from - 1] : 0.0);
      }
      book::store_rolling(spec, sums, mids[k],
                          rolling + int(t - a) * row_stride + w * spec.rolling_count);
    }
  }
  __syncthreads();
  copy_rows(staging, row_stride, int(b - a), columns, out + a * columns, columns);
}

// The ring kernel (ring_window_kernel): each block walks consecutive tiles
// of kTileRows rows, a row a thread, and keeps its last kRingTiles tiles in
// shared memory: their local prefix sums (L_g(t), the terms of rows
// [g kTileRows, t]), times, and bases in double-double (B_g, the totals of
// the block's tiles before g). The sum over the window [s, t] of row t in
// tile g, s in tile h, is then
//
//   L_g(t) - L_h(s - 1) + (B_g - B_h)          (L_h before its tile: 0),
//
// the base difference taken in double-double and rounded once, so a window
// reaching tiles back reads its start instead of scanning its tile again and
// is as precise as the window and two tiles (tools/emulate_window_ring.py).
// A block starts kRingTiles - 1 tiles before its own to fill the ring. A
// tile with a start before the ring is flagged and left to
// window_columns_kernel, which recomputes its whole rows, with the tiles'
// totals this kernel writes as it walks.
constexpr int kRingThreads = kTileRows;  // a row a thread
constexpr int kRingWarps = kRingThreads / 32;
constexpr int kRingTiles = 6;  // 2,560 rows of history: a 100 ms window of ~2,000 events

// A tile's slot in the ring (32-bit: the constant modulo is a multiply).
__device__ __forceinline__ int ring_slot(std::int64_t tile) { return int(tile) % kRingTiles; }

struct RingState {
  double prefix[kRingTiles][kTerms][kTileRows];  // L of the ring's tiles
  std::int64_t times[kRingTiles][kTileRows];
  double base_hi[kRingTiles][kTerms], base_lo[kRingTiles][kTerms];
  double base_difference[kRingTiles][kTerms];  // B_g - B_h, h by its slot, for the current g
  double warp_totals[kRingWarps][kTerms];
};

// Double-double sums (Knuth's two-sum): hi + lo holds a running total with
// no rounding lost.
__device__ __forceinline__ void two_sum(double a, double b, double& s, double& e) {
  s = a + b;
  const double v = s - a;
  e = (a - (s - v)) + (b - v);
}

// (hi, lo) += x.
__device__ __forceinline__ void dd_add(double& hi, double& lo, double x) {
  double s, e;
  two_sum(hi, x, s, e);
  two_sum(s, e + lo, hi, lo);
}

// (hi, lo) - (hi2, lo2), rounded once.
__device__ __forceinline__ double dd_difference(double hi, double lo, double hi2, double lo2) {
  double s, e;
  two_sum(hi, -hi2, s, e);
  return s + (e + (lo - lo2));
}

// What a row of the ring kernel reads: its quote and its predecessor's, its
// trade, its time (zeros past the series).
struct RingRow {
  Quote q[2];
  double price, size, side;
  std::int64_t time;
};

template <typename T>
__device__ RingRow ring_row(const BookSeries& s, std::int64_t t) {
  RingRow row{};
  quotes_from<T, 1>(s, t, row.q);
  if (t < s.rows) {
    row.price = book::at<T>(s.trade_price, t);
    row.size = book::at<T>(s.trade_size, t);
    row.side = double(book::at<std::int8_t>(s.trade_side, t));
    row.time = book::at<std::int64_t>(s.time, t);
  }
  return row;
}

template <typename T, typename U>
__global__ void __launch_bounds__(kRingThreads, 1)
ring_window_kernel(const __grid_constant__ BookSeries s,
                   const __grid_constant__ BookFeatureSpec spec, double* totals,
                   unsigned char* overflowed, U* out) {
  extern __shared__ __align__(16) unsigned char shared[];
  RingState& ring = *reinterpret_cast<RingState*>(shared);
  U* staging = reinterpret_cast<U*>(shared + (sizeof(RingState) + 15) / 16 * 16);
  const int tid = threadIdx.x, lane = tid & 31, warp = tid / 32;
  const std::int64_t tiles = (s.rows + kTileRows - 1) / kTileRows;
  const std::int64_t per_block = (tiles + gridDim.x - 1) / gridDim.x;
  const std::int64_t first = blockIdx.x * per_block;
  const std::int64_t last = first + per_block < tiles ? first + per_block : tiles;
  if (first >= tiles) return;
  const std::int64_t warm = first > kRingTiles - 1 ? first - (kRingTiles - 1) : 0;
  const int windows = spec.window_count + spec.time_window_count;
  const int columns = int(spec.columns()), row_stride = columns | 1;
  double base_hi = 0.0, base_lo = 0.0;  // B of the tile, for term `tid` (tid < kTerms)
  // The next tile's row, loaded while this tile's windows are summed: a
  // block walks its tiles one after another, and would otherwise wait a
  // memory round trip at the start of each.
  RingRow next = ring_row<T>(s, warm * kTileRows + tid);
  for (std::int64_t g = warm; g < last; ++g) {
    const int slot = ring_slot(g);
    const std::int64_t a = g * kTileRows, b = a + kTileRows < s.rows ? a + kTileRows : s.rows;
    const std::int64_t t = a + tid;
    const bool own = g >= first, valid = t < b;
    const RingRow row = next;
    const Quote(&q)[2] = row.q;
    if (own) store_event_rows<T, U, 1>(s, spec, t, q, a, b, staging, row_stride);
    // L over the tile: each warp's inclusive scan, then the warps before.
    double x[kTerms] = {};
    if (valid) book::terms_of(q[1], q[0], t > 0, row.price, row.size, row.side, x);
#pragma unroll
    for (int j = 0; j < kTerms; ++j) {
      x[j] = warp_inclusive_sum(x[j], lane);
      if (lane == 31) ring.warp_totals[warp][j] = x[j];
    }
    ring.times[slot][tid] = row.time;
    __syncthreads();
    if (g + 1 < last) next = ring_row<T>(s, t + kTileRows);
    double lane_before, lane_total;  // lane j < kTerms: term j's (the tile's total)
    add_warp_totals(ring.warp_totals, lane, warp, 0.0, lane_before, lane_total);
#pragma unroll
    for (int j = 0; j < kTerms; ++j) {
      ring.prefix[slot][j][tid] = x[j] + __shfl_sync(kAll, lane_before, j);
    }
    if (tid < kTerms) {  // warp 0: lane_total is term tid's tile total
      ring.base_hi[slot][tid] = base_hi;
      ring.base_lo[slot][tid] = base_lo;
      for (int k = 0; k < kRingTiles; ++k) {  // once a tile, not once a row and window
        const bool held = g - (slot - k + kRingTiles) % kRingTiles >= warm;
        ring.base_difference[k][tid] =
            k == slot ? 0.0
            : held    ? dd_difference(base_hi, base_lo, ring.base_hi[k][tid], ring.base_lo[k][tid])
                      : 0.0;
      }
      dd_add(base_hi, base_lo, lane_total);
      if (own) totals[g * kTerms + tid] = lane_total;
    }
    __syncthreads();  // the tile's prefixes, times and base are readable
    if (!own) continue;
    // The oldest row whose prefix the ring holds for this block.
    const std::int64_t oldest_tile = g - (kRingTiles - 1) > warm ? g - (kRingTiles - 1) : warm;
    const std::int64_t oldest = oldest_tile * kTileRows;
    const auto time_at = [&](std::int64_t r) {
      return ring.times[ring_slot(r / kTileRows)][int(r % kTileRows)];
    };
    bool overflow = false;
    for (int w = 0; valid && w < windows; ++w) {
      std::int64_t start;
      if (w < spec.window_count) {
        start = t - spec.windows[w] + 1 > 0 ? t - spec.windows[w] + 1 : 0;
      } else {  // the first row inside (time_t - tau, time_t], by bisection over the ring
        const auto tau = static_cast<std::uint64_t>(spec.time_windows[w - spec.window_count]);
        const auto now = static_cast<std::uint64_t>(time_at(t));
        std::int64_t lo = oldest, hi = t;
        if (oldest > 0 && now - static_cast<std::uint64_t>(time_at(oldest)) < tau) lo = -1;
        while (lo >= 0 && lo < hi) {
          const std::int64_t mid = (lo + hi) / 2;
          if (now - static_cast<std::uint64_t>(time_at(mid)) >= tau) lo = mid + 1; else hi = mid;
        }
        start = lo;
      }
      if (start < oldest) {  // before the ring: the tile falls back
        overflow = true;
        break;
      }
      const std::int64_t h = start / kTileRows;
      const int from = ring_slot(h), at = int(start - h * kTileRows);
      double sums[kTerms];
#pragma unroll
      for (int j = 0; j < kTerms; ++j) {
        sums[j] = ring.prefix[slot][j][tid] - (at > 0 ? ring.prefix[from][j][at - 1] : 0.0) +
                  ring.base_difference[from][j];
      }
      U* row = staging + tid * row_stride + spec.event_columns();
      book::store_rolling(spec, sums, q[1].mid(), row + w * spec.rolling_count);
    }
    overflow = __syncthreads_or(overflow);  // also: every row is staged
    if (tid == 0) overflowed[g] = overflow;
    if (!overflow) copy_rows(staging, row_stride, int(b - a), columns, out + a * columns, columns);
    __syncthreads();  // the staging and the ring's next slot are free
  }
}

}  // namespace

// The tiles' totals (kTerms doubles a tile), then the ring kernel's
// overflow flags (a byte a tile).
std::int64_t book_features_cuda_scratch(std::int64_t rows) {
  const std::int64_t tiles = (rows + kTileRows - 1) / kTileRows;
  return tiles * kTerms + (tiles + 7) / 8;
}

void book_features_cuda(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                        std::uintptr_t out, DType out_dtype, std::uintptr_t scratch, int device,
                        std::uintptr_t stream) {
  if (series.rows == 0 || spec.columns() == 0) return;
  if (!book::fits_32bit_offsets(
          series.rows, series.levels,
          {series.bid_price, series.bid_size, series.ask_price, series.ask_size},
          {series.trade_price, series.trade_size, series.trade_side, series.time})) {
    throw std::invalid_argument(
        "book_features on CUDA takes fewer than 2^31 rows, levels and element strides: split "
        "the series (each part with its windows' history) or use the CPU");
  }
  cudaStream_t s = use_device(device, stream);
  const std::size_t out_size = out_dtype == DType::Float64 ? 8 : 4;
  const std::int64_t windows =
      spec.rolling_count ? spec.window_count + spec.time_window_count : 0;
  // Event columns: a block of kMapThreads rows, staged when they fit.
  const std::size_t map_bytes = kMapThreads * (spec.event_columns() | 1) * out_size;
  const bool map_staged = map_bytes <= kMaxStagingBytes;
  const unsigned map_blocks = static_cast<unsigned>((series.rows + kMapThreads - 1) / kMapThreads);
  // Rolling columns: a block per tile, staging whole rows where they fit
  // (then the event columns too), else the rolling columns where they fit;
  // the tiles' totals first where a window may span whole tiles (any time
  // window).
  const std::size_t row_stride_bytes = (spec.columns() | 1) * out_size;
  const std::size_t row_bytes = kTileRows * row_stride_bytes;
  const std::size_t rolling_bytes = kTileRows * windows * spec.rolling_count * out_size;
  const Staging window_staged = row_bytes <= kMaxRowStagingBytes ? Staging::kRows
                                : rolling_bytes <= kMaxStagingBytes ? Staging::kRolling
                                                                    : Staging::kNone;
  const std::size_t staged_bytes = window_staged == Staging::kRows      ? row_bytes
                                  : window_staged == Staging::kRolling ? rolling_bytes
                                                                       : 0;
  const std::size_t window_bytes = (sizeof(TileState) + 15) / 16 * 16 + staged_bytes;
  const unsigned tiles = static_cast<unsigned>((series.rows + kTileRows - 1) / kTileRows);
  const std::int64_t reach = window_reach(spec);
  const bool all_near = windows && spec.time_window_count == 0 && reach <= kHaloRows &&
                        window_staged == Staging::kRows;
  // Windows reaching further: the ring kernel where its ring and a tile's
  // whole rows fit shared memory, its overflowing tiles (flagged) then
  // recomputed by window_columns_kernel.
  const std::size_t ring_bytes = (sizeof(RingState) + 15) / 16 * 16 + row_bytes;
  const bool ring = windows && !all_near && window_staged == Staging::kRows &&
                    ring_bytes <= std::size_t(device_attribute(
                                      cudaDevAttrMaxSharedMemoryPerBlockOptin, device));
  // The tiles' totals where a window may span whole tiles (any time window),
  // and on the ring's path, which writes them as it walks.
  const bool spans_tiles = spec.time_window_count > 0 || reach >= 2 * kTileRows;
  double* totals = windows && (spans_tiles || ring) ? reinterpret_cast<double*>(scratch) : nullptr;
  auto* overflowed = reinterpret_cast<unsigned char*>(scratch) + std::size_t(tiles) * kTerms * 8;
  dispatch_float(dtype, [&](auto* in_tag) {
    dispatch_float(out_dtype, [&](auto* out_tag) {
      using T = std::remove_pointer_t<decltype(in_tag)>;
      using U = std::remove_pointer_t<decltype(out_tag)>;
      U* features = reinterpret_cast<U*>(out);
      if (spec.event_columns() && !(windows && window_staged == Staging::kRows)) {
        event_columns_kernel<T, U><<<map_blocks, kMapThreads, map_staged ? map_bytes : 0, s>>>(
            series, spec, map_staged, features);
      }
      if (totals && !ring) tile_totals_kernel<T><<<tiles, kTileThreads, 0, s>>>(series, totals);
      if (all_near) {
        auto kernel = near_window_kernel<T, U>;
        const int tile_rows = near_tile_rows(reach, row_stride_bytes);
        const std::size_t bytes = window_bytes + std::size_t(tile_rows - kTileRows) * row_stride_bytes;
        opt_in_shared_memory(kernel, bytes, "book_features shared memory");
        kernel<<<unsigned((series.rows + tile_rows - 1) / tile_rows), kTileThreads, bytes, s>>>(
            series, spec, int(reach), tile_rows, features);
      } else if (ring) {
        auto kernel = ring_window_kernel<T, U>;
        opt_in_shared_memory(kernel, ring_bytes, "book_features shared memory");
        const unsigned sms = device_attribute(cudaDevAttrMultiProcessorCount, device);
        kernel<<<sms, kRingThreads, ring_bytes, s>>>(series, spec, totals, overflowed, features);
      }
      if (windows && !all_near) {  // every tile, or the ring's overflowing ones
        auto kernel = window_columns_kernel<T, U>;
        opt_in_shared_memory(kernel, window_bytes, "book_features shared memory");
        kernel<<<tiles, kTileThreads, window_bytes, s>>>(series, spec, totals, window_staged,
                                                         ring ? overflowed : nullptr, features);
      }
    });
  });
  cuda_check(cudaGetLastError(), "book_features kernel launch");
}

}  // namespace ma_kernels
