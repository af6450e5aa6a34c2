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
constexpr float kLog2e = 1.4426950408889634f;

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

// One block's place: a tile of virtual rows in residue class r of (b, head).
struct Place {
  std::int64_t tile, r, b, head, rows;  // rows: length of the residue class
  bool valid;
};

__device__ __forceinline__ Place place(const AttentionProblem& p, std::int64_t heads,
                                       std::int64_t tiles, int tile_rows) {
  const std::int64_t classes = AttentionProblem::min(p.dilation, p.length);
  std::int64_t id = blockIdx.x;
  Place pl;
  pl.tile = id % tiles;
  id /= tiles;
  pl.r = id % classes;
  id /= classes;
  pl.head = id % heads;
  pl.b = id / heads;
  pl.rows = (p.length - 1 - pl.r) / p.dilation + 1;
  pl.valid = pl.tile * tile_rows < pl.rows;
  return pl;
}

// The band seen from one tile pair, in 32-bit offsets from its corner (q0,
// k0): query q0 + qo sees key k0 + ko when -right <= gap + qo - ko <= left - 1
// (one unsigned compare) and both are inside the class. Per element this is
// an add and a compare whose lane-dependent part the compiler hoists; the
// 64-bit Band::visible cost ~12 instructions and was a third of the D = 32
// forward's (ncu). Offsets fit: left and right are clamped to the class's
// rows, and the op refuses L >= 2^30 on CUDA (attention.py).
struct TileBand {
  int gap, right, queries, keys;  // queries, keys: rows left in the class past q0, k0
  unsigned width;                 // left - 1 + right
  __device__ __forceinline__ bool visible(int qo, int ko) const {
    return static_cast<unsigned>(gap + qo - ko + right) <= width && qo < queries && ko < keys;
  }
};

// Virtual query i sees virtual key j (both inside the class).
struct Band {
  std::int64_t left, right, rows;
  __device__ __forceinline__ bool visible(std::int64_t i, std::int64_t j) const {
    return i - j <= left - 1 && j - i <= right && i < rows && j < rows;
  }
  // Every (i, j) of the tile [i0, i0 + m) x [j0, j0 + n) is visible.
  __device__ __forceinline__ bool full(std::int64_t i0, int m, std::int64_t j0, int n) const {
    return i0 + m - 1 - j0 <= left - 1 && j0 + n - 1 - i0 <= right && i0 + m <= rows &&
           j0 + n <= rows;
  }
  // The band from the tile pair at (q0, k0).
  __device__ __forceinline__ TileBand at(std::int64_t q0, std::int64_t k0) const {
    // Beyond rows, left and right see nothing more: clamped, they fit 32 bits.
    const std::int64_t l = AttentionProblem::min(left, rows), r = AttentionProblem::min(right, rows);
    return {static_cast<int>(q0 - k0), static_cast<int>(r), static_cast<int>(rows - q0),
            static_cast<int>(rows - k0), static_cast<unsigned>(l - 1 + r)};
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

// Tiles of `tile_rows` virtual rows in the longest residue class.
inline std::int64_t tiles_per_class(const AttentionProblem& p, int tile_rows) {
  const std::int64_t longest = (p.length + p.dilation - 1) / p.dilation;
  return (longest + tile_rows - 1) / tile_rows;
}

// One block per tile, residue class and head.
inline unsigned grid(const AttentionProblem& p, std::int64_t heads, std::int64_t tiles) {
  return static_cast<unsigned>(tiles * AttentionProblem::min(p.dilation, p.length) * p.batch *
                               heads);
}

template <typename Args>
void launch(void (*kernel)(AttentionProblem, Args, std::int64_t), unsigned blocks,
            std::size_t smem, cudaStream_t s, const AttentionProblem& p, const Args& args,
            std::int64_t tiles) {
  opt_in_shared_memory(kernel, smem, "attention shared memory");
  kernel<<<blocks, kThreads, smem, s>>>(p, args, tiles);
}

}  // namespace ma_kernels::tiles
