// CUDA sliding-window attention for bf16 and fp16 on tensor cores
// (mma.sync m16n8k16, fp32 accumulation), FlashAttention-2 style, on the
// residue-class tiles of attention_tiles.cuh (dilation).
//
// Forward: a block of 4 warps owns 64 queries (16 per warp) and visits only the
// 64-key tiles that intersect its band; K and V tiles are staged in shared
// memory by cp.async in two stages (tile t + 1 loads while tile t computes),
// online softmax in registers, the band mask only on tiles that cross its edge.
// Backward: dq_kernel (per query tile: delta = rowsum(dO * O), then dq over the
// key tiles) and dkdv_kernel (per key tile: dk, dv over the query tiles of
// every query head of its group), each with its inner tiles in two cp.async
// stages; each output has one writer, so no atomics.
#include <cuda_bf16.h>
#include <cuda_fp16.h>

#include <cstdint>
#include <type_traits>

#include "cuda/attention_tiles.cuh"
#include "cuda/sliding_window_attention_mma.cuh"

namespace ma_kernels {
namespace {

using namespace tiles;

constexpr int kTile = 64;  // queries per forward/dq block, keys per dkdv block

// ---- PTX wrappers -------------------------------------------------------

__device__ __forceinline__ void ldmatrix_x4(std::uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
__device__ __forceinline__ void ldmatrix_x4_trans(std::uint32_t (&r)[4], const void* p) {
  asm volatile("ldmatrix.sync.aligned.m8n8.x4.trans.shared.b16 {%0,%1,%2,%3}, [%4];\n"
               : "=r"(r[0]), "=r"(r[1]), "=r"(r[2]), "=r"(r[3])
               : "r"(smem_addr(p)));
}
// c[16x8] += a[16x16] b[16x8], 16-bit operands, fp32 accumulators.
template <typename T>
__device__ __forceinline__ void mma(float (&c)[4], const std::uint32_t (&a)[4], std::uint32_t b0,
                                    std::uint32_t b1) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.bf16.bf16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  } else {
    asm volatile(
        "mma.sync.aligned.m16n8k16.row.col.f32.f16.f16.f32 {%0,%1,%2,%3}, {%4,%5,%6,%7}, "
        "{%8,%9}, {%0,%1,%2,%3};\n"
        : "+f"(c[0]), "+f"(c[1]), "+f"(c[2]), "+f"(c[3])
        : "r"(a[0]), "r"(a[1]), "r"(a[2]), "r"(a[3]), "r"(b0), "r"(b1));
  }
}

template <typename T>
__device__ __forceinline__ std::uint32_t pack(float lo, float hi) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    __nv_bfloat162 v = __floats2bfloat162_rn(lo, hi);
    return *reinterpret_cast<std::uint32_t*>(&v);
  } else {
    __half2 v = __floats2half2_rn(lo, hi);
    return *reinterpret_cast<std::uint32_t*>(&v);
  }
}

// ---- warp-level tile products --------------------------------------------
// An accumulator acc[N/8][4] holds a 16 x N fp32 tile: element e of n-block nb
// is row lane/4 + 8*(e/2), column 8*nb + 2*(lane%4) + e%2.

__device__ __forceinline__ int acc_row(int e) { return threadIdx.x % 32 / 4 + 8 * (e / 2); }
__device__ __forceinline__ int acc_col(int nb, int e) { return 8 * nb + 2 * (threadIdx.x % 4) + e % 2; }

// acc[16 x N] += A B^T: A is 16 rows of K at sA, B is N rows of K at sB (shared).
template <int N, int K, typename T>
__device__ __forceinline__ void mma_abt(float (&acc)[N / 8][4], const T* sA, int lda, const T* sB,
                                        int ldb) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int kc = 0; kc < K / 16; kc += 2) {
    std::uint32_t a0[4], a1[4];
    ldmatrix_x4(a0, sA + (lane % 16) * lda + kc * 16 + (lane / 16) * 8);
    ldmatrix_x4(a1, sA + (lane % 16) * lda + kc * 16 + 16 + (lane / 16) * 8);
#pragma unroll
    for (int nb = 0; nb < N / 8; ++nb) {
      std::uint32_t b[4];
      ldmatrix_x4(b, sB + (nb * 8 + lane % 8) * ldb + kc * 16 + (lane / 8) * 8);
      mma<T>(acc[nb], a0, b[0], b[1]);
      mma<T>(acc[nb], a1, b[2], b[3]);
    }
  }
}

// acc[16 x N] += A B: A as register fragments a[K/16][4], B is K rows of N at sB.
template <int N, int K, typename T>
__device__ __forceinline__ void mma_ab(float (&acc)[N / 8][4], const std::uint32_t (&a)[K / 16][4],
                                       const T* sB, int ldb) {
  const int lane = threadIdx.x % 32;
#pragma unroll
  for (int kc = 0; kc < K / 16; ++kc) {
#pragma unroll
    for (int np = 0; np < N / 16; ++np) {
      std::uint32_t b[4];
      ldmatrix_x4_trans(b, sB + (kc * 16 + lane % 16) * ldb + np * 16 + (lane / 16) * 8);
      mma<T>(acc[2 * np], a[kc], b[0], b[1]);
      mma<T>(acc[2 * np + 1], a[kc], b[2], b[3]);
    }
  }
}

// A 16 x K accumulator tile as 16-bit A fragments (P or dS fed back into mma).
template <int K, typename T>
__device__ __forceinline__ void to_fragments(std::uint32_t (&a)[K / 16][4],
                                             const float (&acc)[K / 8][4]) {
#pragma unroll
  for (int kc = 0; kc < K / 16; ++kc) {
    a[kc][0] = pack<T>(acc[2 * kc][0], acc[2 * kc][1]);
    a[kc][1] = pack<T>(acc[2 * kc][2], acc[2 * kc][3]);
    a[kc][2] = pack<T>(acc[2 * kc + 1][0], acc[2 * kc + 1][1]);
    a[kc][3] = pack<T>(acc[2 * kc + 1][2], acc[2 * kc + 1][3]);
  }
}

template <typename T>
__device__ __forceinline__ float to_float(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(x);
  } else {
    return __half2float(x);
  }
}

// ---- forward ---------------------------------------------------------------

template <int D, typename T>
__global__ void __launch_bounds__(kThreads) forward_kernel(AttentionProblem p, AttentionForward a,
                                                           std::int64_t tiles) {
  constexpr int LD = kLd<D, T>;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem);
  T* sK = sQ + kTile * LD;      // two stages of K tiles
  T* sV = sK + 2 * kTile * LD;  // and of V tiles

  const Place pl = place(p, p.heads, tiles, kTile);
  if (!pl.valid) return;
  const std::int64_t g = pl.head / p.group(), dil = p.dilation;
  const Band band{p.left, p.right, pl.rows};
  const std::int64_t i0 = pl.tile * kTile;
  const T* q = class_row0<T>(a.q, pl.b, pl.head, pl.r);
  const T* k = class_row0<T>(a.k, pl.b, g, pl.r);
  const T* v = class_row0<T>(a.v, pl.b, g, pl.r);
  const std::int64_t qs = a.q.stride_l * dil, ks = a.k.stride_l * dil, vs = a.v.stride_l * dil;

  const std::int64_t first = band.first_key(i0) / kTile, last = band.last_key(i0, kTile) / kTile;

  load_tile<D>(sQ, q, qs, i0, kTile, pl.rows);
  load_tile<D>(sK, k, ks, first * kTile, kTile, pl.rows);
  load_tile<D>(sV, v, vs, first * kTile, kTile, pl.rows);
  cp_async_commit();

  const int warp = threadIdx.x / 32;
  const T* sQw = sQ + warp * 16 * LD;
  const float c = static_cast<float>(p.scale) * kLog2e;  // scores in log2 units
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float o[D / 8][4] = {};

  for (std::int64_t t = first; t <= last; ++t) {
    const std::int64_t j0 = t * kTile;
    const int stage = static_cast<int>((t - first) % 2);
    const T* sKt = sK + stage * kTile * LD;
    const T* sVt = sV + stage * kTile * LD;
    if (t < last) {  // the next K, V tiles load into the other stage during this one
      load_tile<D>(sK + (1 - stage) * kTile * LD, k, ks, j0 + kTile, kTile, pl.rows);
      load_tile<D>(sV + (1 - stage) * kTile * LD, v, vs, j0 + kTile, kTile, pl.rows);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    // Raw scores: the scale c goes into the exponent's FFMA below (c > 0, so
    // the row maximum of raw scores times c is that of scaled ones).
    float s[kTile / 8][4] = {};
    mma_abt<kTile, D>(s, sQw, LD, sKt, LD);
    if (!band.full(i0, kTile, j0, kTile)) {
      const TileBand tb = band.at(i0 + warp * 16, j0);
#pragma unroll
      for (int nb = 0; nb < kTile / 8; ++nb) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (!tb.visible(acc_row(e), acc_col(nb, e))) s[nb][e] = -INFINITY;
        }
      }
    }
    // Online softmax; row halves rr = 0, 1 are rows lane/4 and lane/4 + 8.
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float mx = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < kTile / 8; ++nb) mx = fmaxf(mx, fmaxf(s[nb][2 * rr], s[nb][2 * rr + 1]));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      mx = fmaxf(m[rr], mx * c);
      // A row with no visible key yet keeps max -inf: subtract 0 instead (no NaN).
      const float base = mx == -INFINITY ? 0.f : mx;
      const float alpha = exp2f(m[rr] - base);
      m[rr] = mx;
      l[rr] *= alpha;
#pragma unroll
      for (int nb = 0; nb < D / 8; ++nb) {
        o[nb][2 * rr] *= alpha;
        o[nb][2 * rr + 1] *= alpha;
      }
#pragma unroll
      for (int nb = 0; nb < kTile / 8; ++nb) {
        s[nb][2 * rr] = exp2f(fmaf(s[nb][2 * rr], c, -base));
        s[nb][2 * rr + 1] = exp2f(fmaf(s[nb][2 * rr + 1], c, -base));
        l[rr] += s[nb][2 * rr] + s[nb][2 * rr + 1];
      }
    }
    std::uint32_t pf[kTile / 16][4];
    to_fragments<kTile, T>(pf, s);
    mma_ab<D, kTile, T>(o, pf, sVt, LD);
    __syncthreads();  // every warp is done with this stage before it refills
  }

  // Normalise, stage the warp's 16 rows in its own part of sQ, store 16 bytes a thread.
  T* stage = sQ + warp * 16 * LD;
  const std::int64_t row0 = i0 + warp * 16;
  float* lse = reinterpret_cast<float*>(a.lse) + (pl.b * p.heads + pl.head) * p.length + pl.r;
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    float sum = l[rr];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const float inv = 1.f / sum;
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb) {
      *reinterpret_cast<std::uint32_t*>(stage + acc_row(2 * rr) * LD + acc_col(nb, 0)) =
          pack<T>(o[nb][2 * rr] * inv, o[nb][2 * rr + 1] * inv);
    }
    const std::int64_t i = row0 + acc_row(2 * rr);
    if (threadIdx.x % 4 == 0 && i < pl.rows) lse[i * dil] = (m[rr] + log2f(sum)) / kLog2e;
  }
  __syncwarp();
  T* out = a.out.row<T>(pl.b, pl.head, pl.r);
  const std::int64_t os = a.out.stride_l * dil;
  constexpr int kChunks = D / 8;
  for (int cidx = threadIdx.x % 32; cidx < 16 * kChunks; cidx += 32) {
    const int r = cidx / kChunks, col = cidx % kChunks * 8;
    if (row0 + r < pl.rows) {
      *reinterpret_cast<uint4*>(out + (row0 + r) * os + col) =
          *reinterpret_cast<const uint4*>(stage + r * LD + col);
    }
  }
}

// ---- backward ------------------------------------------------------------

// Tile of the inner loop of the backward kernels: 32 for D = 128 keeps the
// two D-wide accumulators of dkdv_kernel in registers.
template <int D>
constexpr int kInner = D == 128 ? 32 : 64;

// Per query tile: delta_i = dO_i . O_i, then dq_i = scale sum_j dS_ij k_j with
// dS_ij = P_ij (dO_i . v_j - delta_i).
template <int D, typename T>
__global__ void __launch_bounds__(kThreads) dq_kernel(AttentionProblem p, AttentionBackward a,
                                                      std::int64_t tiles) {
  constexpr int LD = kLd<D, T>, BK = kInner<D>;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sQ = reinterpret_cast<T*>(smem);
  T* sdO = sQ + kTile * LD;
  // Two stages of [K tile; V tile] (2 BK >= kTile rows: stage 1 holds O while
  // delta is made and the first K, V tiles load into stage 0).
  T* sKV = sdO + kTile * LD;
  float* sDelta = reinterpret_cast<float*>(sKV + 4 * BK * LD);

  const Place pl = place(p, p.heads, tiles, kTile);
  if (!pl.valid) return;
  const std::int64_t g = pl.head / p.group(), dil = p.dilation;
  const Band band{p.left, p.right, pl.rows};
  const std::int64_t i0 = pl.tile * kTile;
  const T* k = class_row0<T>(a.k, pl.b, g, pl.r);
  const T* v = class_row0<T>(a.v, pl.b, g, pl.r);
  const std::int64_t ks = a.k.stride_l * dil, vs = a.v.stride_l * dil;
  const std::int64_t row_base = (pl.b * p.heads + pl.head) * p.length + pl.r;
  const std::int64_t first = band.first_key(i0) / BK, last = band.last_key(i0, kTile) / BK;
  auto load_kv = [&](std::int64_t t, int stage) {
    T* dst = sKV + 2 * stage * BK * LD;
    load_tile<D>(dst, k, ks, t * BK, BK, pl.rows);
    load_tile<D>(dst + BK * LD, v, vs, t * BK, BK, pl.rows);
  };

  T* sO = sKV + 2 * BK * LD;
  load_tile<D>(sQ, class_row0<T>(a.q, pl.b, pl.head, pl.r), a.q.stride_l * dil, i0, kTile,
               pl.rows);
  load_tile<D>(sdO, class_row0<T>(a.dout, pl.b, pl.head, pl.r), a.dout.stride_l * dil, i0,
               kTile, pl.rows);
  load_tile<D>(sO, class_row0<T>(a.out, pl.b, pl.head, pl.r), a.out.stride_l * dil, i0, kTile,
               pl.rows);
  load_kv(first, 0);
  cp_async_commit();
  cp_async_wait<0>();
  __syncthreads();
  {  // two threads per row, D/2 columns each
    const int r = threadIdx.x / 2, half = threadIdx.x % 2;
    float d = 0.f;
    for (int col = half * (D / 2); col < (half + 1) * (D / 2); ++col) {
      d += to_float(sdO[r * LD + col]) * to_float(sO[r * LD + col]);
    }
    d += __shfl_xor_sync(0xffffffffu, d, 1);
    if (half == 0) {
      sDelta[r] = d;
      if (i0 + r < pl.rows) reinterpret_cast<float*>(a.delta)[row_base + (i0 + r) * dil] = d;
    }
  }
  __syncthreads();  // stage 1 (holding O) is free again

  const int warp = threadIdx.x / 32;
  const T* sQw = sQ + warp * 16 * LD;
  const T* sdOw = sdO + warp * 16 * LD;
  const float c = static_cast<float>(p.scale) * kLog2e;
  float lse2[2], delta[2];
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const std::int64_t i = i0 + warp * 16 + acc_row(2 * rr);
    lse2[rr] = i < pl.rows ? reinterpret_cast<const float*>(a.lse)[row_base + i * dil] * kLog2e
                           : 0.f;
    delta[rr] = sDelta[warp * 16 + acc_row(2 * rr)];
  }

  float dq[D / 8][4] = {};
  for (std::int64_t t = first; t <= last; ++t) {
    const std::int64_t j0 = t * BK;
    const int stage = static_cast<int>((t - first) % 2);
    if (t < last) {  // the next K, V tiles load into the other stage during this one
      load_kv(t + 1, 1 - stage);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const T* sK = sKV + 2 * stage * BK * LD;
    const T* sV = sK + BK * LD;

    float s[BK / 8][4] = {}, dp[BK / 8][4] = {};
    mma_abt<BK, D>(s, sQw, LD, sK, LD);
    mma_abt<BK, D>(dp, sdOw, LD, sV, LD);
#pragma unroll
    for (int nb = 0; nb < BK / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] = exp2f(s[nb][e] * c - lse2[e / 2]);
    }
    if (!band.full(i0, kTile, j0, BK)) {  // probabilities outside the band are 0
      const TileBand tb = band.at(i0 + warp * 16, j0);
#pragma unroll
      for (int nb = 0; nb < BK / 8; ++nb) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (!tb.visible(acc_row(e), acc_col(nb, e))) s[nb][e] = 0.f;
        }
      }
    }
#pragma unroll
    for (int nb = 0; nb < BK / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] *= dp[nb][e] - delta[e / 2];
    }
    std::uint32_t dsf[BK / 16][4];
    to_fragments<BK, T>(dsf, s);
    mma_ab<D, BK>(dq, dsf, sK, LD);
    __syncthreads();  // every warp is done with this stage before it refills
  }

  const float scale = static_cast<float>(p.scale);
  T* out = a.dq.row<T>(pl.b, pl.head, pl.r);
  const std::int64_t os = a.dq.stride_l * dil;
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const std::int64_t i = i0 + warp * 16 + acc_row(2 * rr);
    if (i >= pl.rows) continue;
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb) {
      *reinterpret_cast<std::uint32_t*>(out + i * os + acc_col(nb, 0)) =
          pack<T>(dq[nb][2 * rr] * scale, dq[nb][2 * rr + 1] * scale);
    }
  }
}

// Per key tile, over every query head of its group: dv_j = sum_i P_ij dO_i,
// dk_j = scale sum_i dS_ij q_i. Works on transposed tiles (rows are keys).
template <int D, typename T>
__global__ void __launch_bounds__(kThreads) dkdv_kernel(AttentionProblem p, AttentionBackward a,
                                                        std::int64_t tiles) {
  constexpr int LD = kLd<D, T>, BQ = kInner<D>;
  extern __shared__ __align__(16) unsigned char smem[];
  T* sK = reinterpret_cast<T*>(smem);
  T* sV = sK + kTile * LD;
  T* sQdO = sV + kTile * LD;  // two stages of [Q tile; dO tile]
  float* sLse = reinterpret_cast<float*>(sQdO + 4 * BQ * LD);  // two stages of BQ
  float* sDelta = sLse + 2 * BQ;

  const Place pl = place(p, p.kv_heads, tiles, kTile);
  if (!pl.valid) return;
  const std::int64_t dil = p.dilation;
  const Band band{p.left, p.right, pl.rows};
  const std::int64_t j0 = pl.tile * kTile;
  load_tile<D>(sK, class_row0<T>(a.k, pl.b, pl.head, pl.r), a.k.stride_l * dil, j0, kTile,
               pl.rows);
  load_tile<D>(sV, class_row0<T>(a.v, pl.b, pl.head, pl.r), a.v.stride_l * dil, j0, kTile,
               pl.rows);

  // Steps run over (query head of the group, query tile of the band).
  const std::int64_t lo = j0 - p.right > 0 ? j0 - p.right : 0;
  const std::int64_t hi = AttentionProblem::min(pl.rows - 1, j0 + kTile - 1 + p.left - 1);
  const std::int64_t first = lo / BQ, per_head = hi / BQ - first + 1;
  const std::int64_t steps = p.group() * per_head;
  auto load_queries = [&](std::int64_t step, int stage) {
    const std::int64_t h = pl.head * p.group() + step / per_head;
    const std::int64_t i0 = (first + step % per_head) * BQ;
    T* dst = sQdO + 2 * stage * BQ * LD;
    load_tile<D>(dst, class_row0<T>(a.q, pl.b, h, pl.r), a.q.stride_l * dil, i0, BQ, pl.rows);
    load_tile<D>(dst + BQ * LD, class_row0<T>(a.dout, pl.b, h, pl.r), a.dout.stride_l * dil, i0,
                 BQ, pl.rows);
    if (threadIdx.x < BQ) {  // rows past the end read 0: finite, masked below
      const std::int64_t i = i0 + threadIdx.x;
      const std::int64_t row = (pl.b * p.heads + h) * p.length + pl.r + i * dil;
      const bool ok = i < pl.rows;
      const float* lse = reinterpret_cast<const float*>(a.lse);
      const float* delta = reinterpret_cast<const float*>(a.delta);
      cp_async_4(sLse + stage * BQ + threadIdx.x, ok ? lse + row : lse, ok);
      cp_async_4(sDelta + stage * BQ + threadIdx.x, ok ? delta + row : delta, ok);
    }
  };
  load_queries(0, 0);
  cp_async_commit();

  const int warp = threadIdx.x / 32;
  const T* sKw = sK + warp * 16 * LD;
  const T* sVw = sV + warp * 16 * LD;
  const float c = static_cast<float>(p.scale) * kLog2e;
  float dk[D / 8][4] = {}, dv[D / 8][4] = {};

  for (std::int64_t step = 0; step < steps; ++step) {
    const int stage = static_cast<int>(step % 2);
    if (step + 1 < steps) {  // the next Q, dO tiles load into the other stage during this one
      load_queries(step + 1, 1 - stage);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();
    const std::int64_t i0 = (first + step % per_head) * BQ;
    const T* sQ = sQdO + 2 * stage * BQ * LD;
    const T* sdO = sQ + BQ * LD;
    const float* lse = sLse + stage * BQ;
    const float* delta = sDelta + stage * BQ;

    float s[BQ / 8][4] = {};
    mma_abt<BQ, D>(s, sKw, LD, sQ, LD);
#pragma unroll
    for (int nb = 0; nb < BQ / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] = exp2f(s[nb][e] * c - lse[acc_col(nb, e)] * kLog2e);
    }
    if (!band.full(i0, BQ, j0, kTile)) {  // probabilities outside the band are 0
      const TileBand tb = band.at(i0, j0 + warp * 16);
#pragma unroll
      for (int nb = 0; nb < BQ / 8; ++nb) {
#pragma unroll
        for (int e = 0; e < 4; ++e) {
          if (!tb.visible(acc_col(nb, e), acc_row(e))) s[nb][e] = 0.f;
        }
      }
    }
    std::uint32_t frag[BQ / 16][4];
    to_fragments<BQ, T>(frag, s);
    mma_ab<D, BQ>(dv, frag, sdO, LD);

    float dp[BQ / 8][4] = {};
    mma_abt<BQ, D>(dp, sVw, LD, sdO, LD);
#pragma unroll
    for (int nb = 0; nb < BQ / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] *= dp[nb][e] - delta[acc_col(nb, e)];
    }
    to_fragments<BQ, T>(frag, s);
    mma_ab<D, BQ>(dk, frag, sQ, LD);
    __syncthreads();  // every warp is done with this stage before it refills
  }

  const float scale = static_cast<float>(p.scale);
  T* dk_out = a.dk.row<T>(pl.b, pl.head, pl.r);
  T* dv_out = a.dv.row<T>(pl.b, pl.head, pl.r);
  const std::int64_t dks = a.dk.stride_l * dil, dvs = a.dv.stride_l * dil;
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    const std::int64_t j = j0 + warp * 16 + acc_row(2 * rr);
    if (j >= pl.rows) continue;
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb) {
      *reinterpret_cast<std::uint32_t*>(dk_out + j * dks + acc_col(nb, 0)) =
          pack<T>(dk[nb][2 * rr] * scale, dk[nb][2 * rr + 1] * scale);
      *reinterpret_cast<std::uint32_t*>(dv_out + j * dvs + acc_col(nb, 0)) =
          pack<T>(dv[nb][2 * rr], dv[nb][2 * rr + 1]);
    }
  }
}

// ---- launch ----------------------------------------------------------------

template <typename Fn>
void dispatch_16bit(DType dtype, std::int64_t head_dim, Fn&& fn) {
  auto with_dim = [&](auto* tag) {
    switch (head_dim) {
      case 32: fn(tag, std::integral_constant<int, 32>{}); return;
      case 64: fn(tag, std::integral_constant<int, 64>{}); return;
      case 128: fn(tag, std::integral_constant<int, 128>{}); return;
    }
    throw std::invalid_argument("ma_kernels: CUDA attention supports head dims 32, 64, 128, not " +
                                std::to_string(head_dim));
  };
  if (dtype == DType::BFloat16) return with_dim(static_cast<__nv_bfloat16*>(nullptr));
  if (dtype == DType::Float16) return with_dim(static_cast<__half*>(nullptr));
  throw std::invalid_argument("ma_kernels: tensor-core attention takes float16 or bfloat16");
}

}  // namespace

void sliding_window_attention_forward_mma(const AttentionProblem& p, const AttentionForward& a,
                                          DType dtype, cudaStream_t s) {
  const std::int64_t tiles = tiles_per_class(p, kTile);
  dispatch_16bit(dtype, p.head_dim, [&](auto* tag, auto d) {
    using T = std::remove_pointer_t<decltype(tag)>;
    constexpr int D = decltype(d)::value;
    launch(forward_kernel<D, T>, grid(p, p.heads, tiles), 5 * kTile * kLd<D, T> * sizeof(T), s, p,
           a, tiles);
  });
  cuda_check(cudaGetLastError(), "sliding_window_attention forward launch");
}

void sliding_window_attention_backward_mma(const AttentionProblem& p, const AttentionBackward& a,
                                           DType dtype, cudaStream_t s) {
  const std::int64_t tiles = tiles_per_class(p, kTile);
  dispatch_16bit(dtype, p.head_dim, [&](auto* tag, auto d) {
    using T = std::remove_pointer_t<decltype(tag)>;
    constexpr int D = decltype(d)::value;
    const std::size_t tiles_bytes = (2 * kTile + 4 * kInner<D>)*kLd<D, T> * sizeof(T);
    // dq_kernel writes delta, which dkdv_kernel reads: same stream, in order.
    launch(dq_kernel<D, T>, grid(p, p.heads, tiles), tiles_bytes + kTile * sizeof(float), s, p, a,
           tiles);
    launch(dkdv_kernel<D, T>, grid(p, p.kv_heads, tiles),
           tiles_bytes + 4 * kInner<D> * sizeof(float), s, p, a, tiles);
  });
  cuda_check(cudaGetLastError(), "sliding_window_attention backward launch");
}

}  // namespace ma_kernels
