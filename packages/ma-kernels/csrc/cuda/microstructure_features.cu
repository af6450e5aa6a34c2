// One thread block per tile of `outputs` rows. Window sums are differences
// Q(t) - Q(t - W) of a running sum Q that starts at the tile's own origin
// (row start - W, whose own terms are excluded), so every sum covers at most
// W + outputs events and nothing accumulates across tiles.
//
// The block walks rows (origin, start + outputs] in chunks of kChunk rows,
// each staged in shared memory column by column with coalesced loads, then
// scanned with kItems consecutive rows per thread (a serial prefix per thread,
// one block scan of the threads' totals), carrying Q from chunk to chunk. Q is
// kept for the rows a window subtracts, r = row - origin in [0, outputs), and
// for the rows it ends at, r in [W, W + outputs):
//   W <= kChunk / 2: outputs = kChunk - W, one chunk, Q at slot r kept as the
//                    thread's running sum and its base (the exclusive scan);
//   W >  kChunk / 2: outputs = kChunk / 2, the rows between the two ranges
//                    only advance the carry (a long window costs W / kChunk
//                    chunks per tile), and Q is rewritten after each scan.
// The last chunk ends at the tile's last row, so the output pass reads the
// tile's quotes from the staged chunk and stores whole rows, consecutive
// threads on consecutive rows.
#include <cuda_pipeline.h>

#include <cub/block/block_scan.cuh>

#include <algorithm>

#include "cuda/check.cuh"
#include "microstructure_features.h"

namespace ma_kernels {
namespace {

constexpr int kThreads = 256;
constexpr int kItems = 4;
constexpr int kChunk = kThreads * kItems;
// A staged column holds the row before the chunk at kFirst - 1 and row j at
// kFirst + j: kFirst = 4 aligns each thread's 4 rows to 16 bytes, and a pitch
// of 8 mod 32 words spreads the 6 columns of a row over distinct banks.
constexpr int kFirst = 4;
constexpr int kPitch = kChunk + 8;

using Scan = cub::BlockScan<RollingTerms, kThreads, cub::BLOCK_SCAN_WARP_SCANS>;

struct AddTerms {
  __device__ RollingTerms operator()(const RollingTerms& a, const RollingTerms& b) const {
    return a + b;
  }
};

template <typename T>
struct Table {
  const T* data;
  std::int64_t rows, row_stride, col_stride;
};

// Sums of the terms by slot, a column per term, with the trade count as an
// integer: exact, and a difference mod 2^32 read as signed is a window's count
// (below 2^31) or, between two threads' running sums, a small signed one. One pad after
// every 16 slots: a thread's 4 consecutive slots, stored one at a time across
// a warp (16 doubles per wavefront), then fall on 16 distinct banks, and 32
// consecutive slots still read in two wavefronts. (One pad per 8 slots left
// 2-way conflicts in every store: 40% of the shared wavefronts, by ncu.)
template <int kSize>
struct SumColumns {
  double ofi[kSize], notional[kSize], volume[kSize], squared_return[kSize];
  std::uint32_t trades[kSize];

  __device__ void store(int slot, const RollingTerms& x) {
    ofi[slot] = x.ofi;
    notional[slot] = x.notional;
    volume[slot] = x.volume;
    squared_return[slot] = x.squared_return;
    trades[slot] = static_cast<std::uint32_t>(static_cast<std::uint64_t>(x.trades));
  }

  __device__ RollingTerms load(int slot) const {
    return {ofi[slot], notional[slot], volume[slot], double(trades[slot]), squared_return[slot]};
  }

  // The sums of slot `end` less those of slot `begin`.
  __device__ RollingTerms difference(int end, int begin) const {
    return {ofi[end] - ofi[begin], notional[end] - notional[begin], volume[end] - volume[begin],
            double(static_cast<std::int32_t>(trades[end] - trades[begin])),
            squared_return[end] - squared_return[begin]};
  }
};

constexpr int kSlots = kChunk + kChunk / 16;
__device__ __forceinline__ int padded(int slot) { return slot + slot / 16; }

// Shared memory of one block: the staged chunk, Q by slot, the scan's scratch
// and, when one chunk holds the tile, each thread's exclusive scan (its base).
template <typename T>
struct Shared {
  T stage[kMicrostructureInputs][kPitch];
  SumColumns<kSlots> q;
  SumColumns<kThreads> base;
  typename Scan::TempStorage scan;
};

// Four consecutive staged values from a 16-byte aligned index.
__device__ __forceinline__ void load4(const float* p, float (&v)[4]) {
  const float4 x = *reinterpret_cast<const float4*>(p);
  v[0] = x.x, v[1] = x.y, v[2] = x.z, v[3] = x.w;
}

__device__ __forceinline__ void load4(const double* p, double (&v)[4]) {
  const double2 x = reinterpret_cast<const double2*>(p)[0];
  const double2 y = reinterpret_cast<const double2*>(p)[1];
  v[0] = x.x, v[1] = x.y, v[2] = y.x, v[3] = y.y;
}

// The 32-bit words of a row of features, by bit casts: a memcpy of the row
// put it in local memory (a 32-byte stack frame, by ptxas).
__device__ __forceinline__ void row_words(const float (&v)[kMicrostructureFeatures],
                                          std::uint32_t (&words)[kMicrostructureFeatures]) {
#pragma unroll
  for (int i = 0; i < kMicrostructureFeatures; ++i) words[i] = __float_as_uint(v[i]);
}

__device__ __forceinline__ void row_words(const double (&v)[kMicrostructureFeatures],
                                          std::uint32_t (&words)[2 * kMicrostructureFeatures]) {
#pragma unroll
  for (int i = 0; i < kMicrostructureFeatures; ++i) {
    words[2 * i] = __double2loint(v[i]);
    words[2 * i + 1] = __double2hiint(v[i]);
  }
}

// Stores the output rows of a warp's 32 lanes, lane l holding row first + l
// (rows at or past `rows` are not stored). A row is kVectors 16-byte vectors;
// lanes trade them by shuffles so that each store instruction writes whole
// 32-byte sectors, 512 consecutive bytes, rather than 16 bytes of 32 sectors.
template <typename T>
__device__ __forceinline__ void store_rows(T* out, std::int64_t first, std::int64_t rows,
                                           const T (&v)[kMicrostructureFeatures]) {
  constexpr int kWords = kMicrostructureFeatures * sizeof(T) / 4;
  constexpr int kVectors = kWords / 4;
  constexpr int kRowsPerStore = 32 / kVectors;
  std::uint32_t words[kWords];
  row_words(v, words);
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int s = 0; s < kVectors; ++s) {
    const int source = s * kRowsPerStore + lane / kVectors;
    const int vector = lane % kVectors;
    uint4 mine{};
#pragma unroll
    for (int w = 0; w < kWords; ++w) {
      const std::uint32_t x = __shfl_sync(0xffffffffu, words[w], source);
      if (w / 4 == vector) reinterpret_cast<std::uint32_t*>(&mine)[w % 4] = x;
    }
    const std::int64_t row = first + source;
    if (row < rows) {
      reinterpret_cast<uint4*>(out + row * kMicrostructureFeatures)[vector] = mine;
    }
  }
}

// Rows [first - 1, first + kChunk) into shared memory by asynchronous
// copies: every load is in flight at once and none holds a register. Rows
// outside the table are left as they are (the kernel masks them).
// Consecutive threads read consecutive addresses whichever way the table is
// laid out; a contiguous [rows, 6] table, the usual one, is copied as one flat
// range: element e = threadIdx.x + k * kThreads lands in column e % 6, row
// e / 6, a pattern that repeats every kPeriod steps kPeriodRows rows on, so
// three offsets per thread place all the copies (the divisions and carries of
// a per-element walk cost 17 instructions per copy, by ncu).
template <typename T>
__device__ void stage_chunk(const Table<T>& t, std::int64_t first, T (*stage)[kPitch]) {
  constexpr int kRows = kChunk + 1;
  constexpr int kValues = kRows * kMicrostructureInputs;
  const std::int64_t lo = std::max<std::int64_t>(0, 1 - first);             // rows from
  const std::int64_t hi = std::min<std::int64_t>(kRows, t.rows - first + 1);  // rows to
  if (t.col_stride == 1 && t.row_stride == kMicrostructureInputs) {
    constexpr int kPeriod = 3;
    constexpr int kPeriodRows = kPeriod * kThreads / kMicrostructureInputs;
    static_assert(kPeriod * kThreads % kMicrostructureInputs == 0, "the pattern repeats");
    const T* flat = t.data + (first - 1) * kMicrostructureInputs;
    const int begin = static_cast<int>(lo) * kMicrostructureInputs;
    const int stop = static_cast<int>(std::max(hi, lo)) * kMicrostructureInputs;
    int offset[kPeriod];
#pragma unroll
    for (int p = 0; p < kPeriod; ++p) {
      const int e = threadIdx.x + p * kThreads;
      offset[p] = e % kMicrostructureInputs * kPitch + kFirst - 1 + e / kMicrostructureInputs;
    }
#pragma unroll
    for (int k = 0; k < (kValues + kThreads - 1) / kThreads; ++k) {
      const int e = threadIdx.x + k * kThreads;
      if (e >= begin && e < stop) {  // stop <= kValues
        __pipeline_memcpy_async(&stage[0][0] + offset[k % kPeriod] + k / kPeriod * kPeriodRows,
                                flat + e, sizeof(T));
      }
    }
  } else {
    for (int e = threadIdx.x; e < kValues; e += kThreads) {
      const int j = e % kRows, c = e / kRows;
      if (j >= lo && j < hi) {
        __pipeline_memcpy_async(&stage[c][kFirst - 1 + j],
                                t.data + (first - 1 + j) * t.row_stride + c * t.col_stride,
                                sizeof(T));
      }
    }
  }
  __pipeline_commit();
}

template <typename T>
__device__ __forceinline__ L1Quote<T> staged_quote(const T (*stage)[kPitch], int index) {
  return {stage[0][index], stage[1][index], stage[2][index], stage[3][index]};
}

// kOneChunk: one chunk holds the tile (W <= kChunk / 2), so slot r is chunk
// row r, written by thread r / kItems, and Q is that thread's running sum plus
// its base: the output pass adds the two, no pass rewrites Q after the scan.
template <typename T, bool kOneChunk>
__global__ void __launch_bounds__(kThreads, 3)
    microstructure_features_kernel(Table<T> table, std::int64_t window, std::int64_t outputs,
                                   T* __restrict__ out) {
  extern __shared__ __align__(16) unsigned char shared_bytes[];
  Shared<T>& sh = *reinterpret_cast<Shared<T>*>(shared_bytes);

  const std::int64_t start = std::int64_t(blockIdx.x) * outputs;
  const std::int64_t origin = start - window;
  // Q of r = row - origin: the subtracted rows at slot r, the window ends at
  // plus + r - W (the same slot r when one chunk holds the tile).
  const std::int64_t plus = kOneChunk ? window : outputs;
  const std::int64_t end = start + outputs;
  const int chunks = kOneChunk ? 1 : static_cast<int>((window + outputs + kChunk - 1) / kChunk);

  RollingTerms carry{};
  std::int64_t first = end - std::int64_t(chunks) * kChunk;
  for (int chunk = 0; chunk < chunks; ++chunk, first += kChunk) {
    stage_chunk(table, first, sh.stage);
    __pipeline_wait_prior(0);
    __syncthreads();

    // This thread's kItems consecutive rows. Their running sums go to their
    // slots at once, before the scan: kept in registers across it, they spilled.
    static_assert(kItems == 4, "rows are read as 4-vectors");
    const int j0 = threadIdx.x * kItems;
    T x[kMicrostructureInputs][kItems];
#pragma unroll
    for (int c = 0; c < kMicrostructureInputs; ++c) load4(&sh.stage[c][kFirst + j0], x[c]);
    // The row before this thread's first is the last of the lane below's.
    L1Quote<T> before{__shfl_up_sync(0xffffffffu, x[0][kItems - 1], 1),
                      __shfl_up_sync(0xffffffffu, x[1][kItems - 1], 1),
                      __shfl_up_sync(0xffffffffu, x[2][kItems - 1], 1),
                      __shfl_up_sync(0xffffffffu, x[3][kItems - 1], 1)};
    if (threadIdx.x % 32 == 0) before = staged_quote<T>(sh.stage, kFirst - 1 + j0);
    // Rows [first + from, first + to) are the tile's, the table's, and not before row 0.
    const std::int64_t series_start = -first;  // the chunk index of row 0
    const int from = static_cast<int>(
        std::max<std::int64_t>(std::max(origin + 1 - first, series_start), 0));
    const int to = static_cast<int>(std::min<std::int64_t>(table.rows - first, kChunk));
    const std::int64_t r0 = first + j0 - origin;
    int slot[kItems];
    RollingTerms running{};
#pragma unroll
    for (int m = 0; m < kItems; ++m) {
      const L1Quote<T> now{x[0][m], x[1][m], x[2][m], x[3][m]};
      // Each call gets a constant pointer: a pointer chosen at run time put
      // `before` in local memory (a stack frame, by ptxas).
      if (j0 + m >= from && j0 + m < to) {
        running = running + (j0 + m == series_start
                                 ? rolling_terms<T>(now, nullptr, x[4][m], x[5][m])
                                 : rolling_terms(now, &before, x[4][m], x[5][m]));
      }
      before = now;
      const std::int64_t r = r0 + m;
      slot[m] = static_cast<int>(r < outputs ? r : r >= window ? plus + r - window : -1);
      if (slot[m] >= 0) sh.q.store(padded(slot[m]), running);
    }
    RollingTerms below, total;
    Scan(sh.scan).ExclusiveScan(running, below, RollingTerms{}, AddTerms(), total);
    if constexpr (kOneChunk) {
      sh.base.store(threadIdx.x, below);
    } else {
      const RollingTerms base = carry + below;
#pragma unroll
      for (int m = 0; m < kItems; ++m) {
        if (slot[m] >= 0) sh.q.store(padded(slot[m]), base + sh.q.load(padded(slot[m])));
      }
      carry = carry + total;
    }
    __syncthreads();  // Q and the bases are complete; the stage and scratch are reused
  }

  // The last chunk staged rows [end - kChunk, end): the tile's output rows,
  // kThreads at a time (whole warps, for the shuffles of store_rows).
  first -= kChunk;
  for (std::int64_t k0 = 0; k0 < outputs; k0 += kThreads) {
    const int k = static_cast<int>(std::min<std::int64_t>(k0 + threadIdx.x, outputs - 1));
    const std::int64_t i = start + k;
    const int index = static_cast<int>(kFirst + i - first);
    const L1Quote<T> now = staged_quote<T>(sh.stage, index);
    const L1Quote<T> before = staged_quote<T>(sh.stage, index - 1);
    T v[kMicrostructureFeatures];
    if (i == 0) {
      l1_features_row<T>(now, nullptr, v);
    } else {
      l1_features_row(now, &before, v);
    }
    const int ends = static_cast<int>(plus + k);
    RollingTerms sums = sh.q.difference(padded(ends), padded(k));
    if constexpr (kOneChunk) sums = sums + sh.base.difference(ends / kItems, k / kItems);
    rolling_features(sums, v[1], v + kL1Features);
    store_rows(out, start + k0 + threadIdx.x / 32 * 32,
               std::min(table.rows, start + outputs), v);
  }
}

}  // namespace

void microstructure_features_cuda(const Matrix& table, std::int64_t window, std::uintptr_t out,
                                  DType dtype, int device, std::uintptr_t stream) {
  if (table.rows == 0) return;
  // A window longer than the series sums the same rows as one of its length.
  window = std::min(window, table.rows);
  const std::int64_t outputs = window <= kChunk / 2 ? kChunk - window : kChunk / 2;
  const std::int64_t tiles = (table.rows + outputs - 1) / outputs;
  cudaStream_t s = use_device(device, stream);
  dispatch_float(dtype, [&](auto* type_tag) {
    using T = std::remove_pointer_t<decltype(type_tag)>;
    const auto kernel = window <= kChunk / 2 ? microstructure_features_kernel<T, true>
                                             : microstructure_features_kernel<T, false>;
    constexpr int bytes = sizeof(Shared<T>);
    // Three blocks per SM (of 228 KiB, 1 KiB reserved per block) for float32.
    static_assert(sizeof(T) > 4 || 3 * (bytes + 1024) <= 228 * 1024, "shared memory");
    opt_in_shared_memory(kernel, bytes, "microstructure_features shared memory");
    const Table<T> view{reinterpret_cast<const T*>(table.data), table.rows, table.row_stride,
                        table.col_stride};
    kernel<<<static_cast<unsigned>(tiles), kThreads, bytes, s>>>(view, window, outputs,
                                                                 reinterpret_cast<T*>(out));
  });
  cuda_check(cudaGetLastError(), "microstructure_features kernel launch");
}

}  // namespace ma_kernels
