// Band geometry and cp.async shared by the tiled attention kernels
// (tensor-core 16-bit in sliding_window_attention_mma.cu, whose shared tiles
// are in warpgroup_mma.cuh; CUDA-core fp32 in sliding_window_attention.cu,
// whose padded tiles are load_tile's).
//
// Dilation: query i and key j interact only when i = j (mod dilation), so a
// dilated problem is `dilation` independent dense-band problems, one per
// residue class r, on the rows r, r + dil, r + 2 dil, ... Each block works in
// the "virtual" rows of one class (row stride multiplied by dilation), where
// query i' sees keys i' - (left - 1) .. i' + right.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>

#include "cuda/check.cuh"
#include "sliding_window_attention.h"

namespace ma_kernels::tiles {

constexpr int kThreads = 128;  // every tiled attention block
constexpr float kLog2e = 1.4426950408889634f, kLn2 = 0.6931471805599453f;

// Rows of an fp32 shared tile are padded by 16 bytes, so the rows that one
// 16-byte access of a quarter warp touches fall in different banks.
template <int D, typename T>
constexpr int kLd = D + 16 / static_cast<int>(sizeof(T));

__device__ __forceinline__ std::uint32_t smem_addr(const void* p) {
  return static_cast<std::uint32_t>(__cvta_generic_to_shared(p));
}

// 16 (4) bytes global -> shared; zero-filled when !valid (rows past the end).
__device__ __forceinline__ void cp_async_16(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.cg.shared.global [%0], [%1], 16, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 16 : 0));
}
__device__ __forceinline__ void cp_async_4(void* dst, const void* src, bool valid) {
  asm volatile("cp.async.ca.shared.global [%0], [%1], 4, %2;\n" ::"r"(smem_addr(dst)), "l"(src),
               "r"(valid ? 4 : 0));
}
__device__ __forceinline__ void cp_async_commit() { asm volatile("cp.async.commit_group;\n"); }
template <int N>
__device__ __forceinline__ void cp_async_wait() {
  asm volatile("cp.async.wait_group %0;\n" ::"n"(N));
}

// n / d and n % d for a divisor d fixed at launch, by a multiply-high, an add
// and a shift (Granlund & Montgomery, "Division by invariant integers using
// multiplication", 1994; CUTLASS's FastDivmod): a 32-bit division is ~20
// instructions, and at small shapes a block lives ~2000 instructions.
// Exact for n < 2^31 (then the add cannot carry out) and 1 <= d < 2^31.
struct FastDivmod {
  unsigned divisor = 1, multiplier = 0, shift = 0;

  FastDivmod() = default;
  explicit FastDivmod(std::int64_t d) : divisor(static_cast<unsigned>(d)) {
    while ((std::uint64_t{1} << shift) < divisor) ++shift;  // ceil(log2 d)
    multiplier = static_cast<unsigned>(
        (std::uint64_t{1} << 32) * ((std::uint64_t{1} << shift) - divisor) / divisor + 1);
  }
  __device__ __forceinline__ unsigned div(unsigned n) const {
    return (__umulhi(n, multiplier) + n) >> shift;
  }
  __device__ __forceinline__ unsigned mod(unsigned n) const { return n - div(n) * divisor; }
};

// How a block id splits into (tile, residue class, head, batch): block id =
// ((b * heads + head) * classes + r) * tiles + tile, one block per tile of
// `tile_rows` virtual rows in the longest class.
struct BlockGrid {
  FastDivmod tiles, classes, heads;
  FastDivmod group;  // query heads per key/value head
  unsigned blocks;
};

inline BlockGrid block_grid(const AttentionProblem& p, std::int64_t heads, int tile_rows) {
  // Beyond L, a larger dilation changes nothing: every class has one row.
  const std::int64_t classes = AttentionProblem::min(p.dilation, p.length);
  const std::int64_t longest = (p.length + p.dilation - 1) / p.dilation;
  const std::int64_t tiles = (longest + tile_rows - 1) / tile_rows;
  return {FastDivmod(tiles), FastDivmod(classes), FastDivmod(heads), FastDivmod(p.group()),
          static_cast<unsigned>(tiles * classes * p.batch * heads)};
}

// One block's place: a tile of virtual rows in residue class r of (b, head).
struct Place {
  std::int64_t tile, r, b, head, rows;  // rows: length of the residue class
  bool valid;
};

__device__ __forceinline__ Place place(const AttentionProblem& p, const BlockGrid& grid,
                                       int tile_rows) {
  const unsigned id = blockIdx.x, tile = grid.tiles.mod(id), id_class = grid.tiles.div(id);
  const unsigned r = grid.classes.mod(id_class), id_head = grid.classes.div(id_class);
  const unsigned rows = grid.classes.div(static_cast<unsigned>(p.length) - 1 - r) + 1;
  return {tile, r, grid.heads.div(id_head), grid.heads.mod(id_head), rows,
          tile * tile_rows < rows};
}

// The band seen from one tile pair, in 32-bit offsets from its corner (q0,
// k0): query q0 + qo sees key k0 + ko when -right <= gap + qo - ko <= left - 1
// (one unsigned compare; the same test in 64 bits cost ~12 instructions and
// was a third of the D = 32 forward's) and both are inside the class.
//
// Past the class's end the tiles hold zero rows, so only the forward tests
// `ko < keys` (a zero key row would still take softmax weight); there rows
// past the end are never stored, and in the backward zero rows of K, Q and dO
// add nothing to dq, dk or dv. Offsets fit: left and right are clamped to the
// class's rows, and the op refuses L >= 2^30 on CUDA (attention.py).
struct TileBand {
  int gap, right, keys;  // keys: rows left in the class past k0
  unsigned width;        // left - 1 + right
  __device__ __forceinline__ bool in_band(int qo, int ko) const {
    return static_cast<unsigned>(gap + qo - ko + right) <= width;
  }
};

// The band of a residue class of `rows` virtual rows.
struct Band {
  std::int64_t left, right, rows;
  // Every (i, j) of the tile [i0, i0 + m) x [j0, j0 + n) is visible.
  __device__ __forceinline__ bool full(std::int64_t i0, int m, std::int64_t j0, int n) const {
    return i0 + m - 1 - j0 <= left - 1 && j0 + n - 1 - i0 <= right && i0 + m <= rows &&
           j0 + n <= rows;
  }
  // The band from the tile pair at (q0, k0).
  __device__ __forceinline__ TileBand at(std::int64_t q0, std::int64_t k0) const {
    // Beyond rows, left and right see nothing more: clamped, they fit 32 bits.
    const std::int64_t l = AttentionProblem::min(left, rows), r = AttentionProblem::min(right, rows);
    return {static_cast<int>(q0 - k0), static_cast<int>(r), static_cast<int>(rows - k0),
            static_cast<unsigned>(l - 1 + r)};
  }
  // First and last virtual key seen by queries [i0, i0 + m).
  __device__ __forceinline__ std::int64_t first_key(std::int64_t i0) const {
    return i0 - (left - 1) > 0 ? i0 - (left - 1) : 0;
  }
  __device__ __forceinline__ std::int64_t last_key(std::int64_t i0, int m) const {
    return AttentionProblem::min(rows - 1, i0 + m - 1 + right);
  }
};

// Stages `n` virtual rows from row0 of a [rows, D] view (first row `base`,
// row stride `stride`) into a padded shared tile; rows past the end read 0.
template <int D, typename T>
__device__ __forceinline__ void load_tile(T* dst, const T* base, std::int64_t stride,
                                          std::int64_t row0, int n, std::int64_t rows) {
  constexpr int kPer = 16 / sizeof(T), kChunks = D / kPer;  // 16-byte pieces per row
  for (int c = threadIdx.x; c < n * kChunks; c += kThreads) {
    const int r = c / kChunks, col = c % kChunks * kPer;
    const bool ok = row0 + r < rows;
    cp_async_16(dst + r * kLd<D, T> + col, ok ? base + (row0 + r) * stride + col : base, ok);
  }
}

// Row r (the first of residue class r) of head h in batch b.
template <typename T>
__device__ __forceinline__ const T* class_row0(const Bhld& t, std::int64_t b, std::int64_t h,
                                               std::int64_t r) {
  return t.row<const T>(b, h, r);
}

template <typename Args>
void launch(void (*kernel)(AttentionProblem, Args, BlockGrid), const BlockGrid& grid,
            std::size_t smem, cudaStream_t s, const AttentionProblem& p, const Args& args) {
  opt_in_shared_memory(kernel, smem, "attention shared memory");
  kernel<<<grid.blocks, kThreads, smem, s>>>(p, args, grid);
}

}  // namespace ma_kernels::tiles
