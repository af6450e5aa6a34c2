// CUDA sliding-window attention for bf16 and fp16 on tensor cores (wgmma on
// sm_90a, mma.sync elsewhere; fp32 accumulation), FlashAttention-2 style, on
// the residue-class tiles of attention_tiles.cuh (dilation) and the swizzled
// shared tiles of warpgroup_mma.cuh.
//
// Forward: a block (one warpgroup) owns 64 queries, 16 rows per warp, and
// visits only the 64-key tiles that intersect its band, software-pipelined:
// step t computes S_t = Q K_t^T beside O += P_{t-1} V_{t-1} while K_{t+1} and
// V_t load by cp.async; online softmax in registers, the band mask only on
// tiles that cross its edge.
// Backward: dq_kernel (per query tile: delta = rowsum(dO * O), then dq over the
// key tiles) and dkdv_kernel (per key tile: dk, dv over the query tiles of
// every query head of its group), each with its inner tiles in two cp.async
// stages and its two score products (S, dP) issued together; each output has
// one writer, so no atomics.
#include <cstdint>
#include <type_traits>

#include "cuda/attention_tiles.cuh"
#include "cuda/sliding_window_attention_mma.cuh"
#include "cuda/warpgroup_mma.cuh"

namespace ma_kernels {
namespace {

using namespace tiles;

constexpr int kTile = 64;  // queries per forward/dq block, keys per dkdv block

// Blocks per SM the register allocation must allow (the compiler otherwise
// keeps every hoisted tile address live and takes a block's worth more).
template <int D>
constexpr int kForwardBlocks = D == 128 ? 2 : D == 64 ? 4 : 5;
template <int D>
constexpr int kDqBlocks = D == 128 ? 2 : 4;
template <int D>
constexpr int kDkdvBlocks = D == 128 ? 1 : 3;
// Key tiles the forward loads ahead of the one it multiplies: a step at D = 32
// is too short to hide one tile's load latency.
template <int D>
constexpr int kForwardAhead = D == 32 ? 3 : 1;

// 2^x by the special function unit alone (flushing subnormal results to 0,
// far below bf16's resolution of probabilities): exp2f adds a range test and
// two multiplies, a third of the softmax's instructions.
__device__ __forceinline__ float fast_exp2(float x) {
  float y;
  asm("ex2.approx.ftz.f32 %0, %1;" : "=f"(y) : "f"(x));
  return y;
}

template <typename T>
__device__ __forceinline__ float to_float(T x) {
  if constexpr (std::is_same_v<T, __nv_bfloat16>) {
    return __bfloat162float(x);
  } else {
    return __half2float(x);
  }
}

// Sets the entries of a warp's 16 x N accumulator fragment at (row, column)
// offsets where !keep(row, column) to `fill`.
template <int N, typename Keep>
__device__ __forceinline__ void mask(float (&s)[N / 8][4], float fill, Keep keep) {
#pragma unroll
  for (int nb = 0; nb < N / 8; ++nb) {
#pragma unroll
    for (int e = 0; e < 4; ++e) {
      if (!keep(acc_row(e), acc_col(nb, e))) s[nb][e] = fill;
    }
  }
}

// ---- forward ---------------------------------------------------------------

template <int D, typename T>
__global__ void __launch_bounds__(kThreads, kForwardBlocks<D>)
    forward_kernel(AttentionProblem p, AttentionForward a, BlockGrid grid) {
  using QTile = Tile<kTile, D, T>;
  using KTile = Tile<kTile, D, T>;
  constexpr int kAhead = kForwardAhead<D>, kRing = kAhead + 1;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = swizzle_aligned(smem_raw);
  // Q, a ring of K tiles, one of V tiles (slots picked by arithmetic: an
  // array indexed by the slot would live in local memory).
  const QTile tq{smem};
  auto tk = [&](int n) { return KTile{smem + QTile::kBytes + n % kRing * KTile::kBytes}; };
  auto tv = [&](int n) { return KTile{tk(n).base + kRing * KTile::kBytes}; };

  const Place pl = place(p, grid, kTile);
  if (!pl.valid) return;
  const std::int64_t g = grid.group.div(static_cast<unsigned>(pl.head)), dil = p.dilation;
  const Band band{p.left, p.right, pl.rows};
  const std::int64_t i0 = pl.tile * kTile;
  const T* k = class_row0<T>(a.k, pl.b, g, pl.r);
  const T* v = class_row0<T>(a.v, pl.b, g, pl.r);
  const std::int64_t ks = a.k.stride_l * dil, vs = a.v.stride_l * dil;

  // Key tiles first + n, n = 0 .. steps - 1, intersect the band.
  const std::int64_t first = band.first_key(i0) / kTile;
  const int steps = static_cast<int>(band.last_key(i0, kTile) / kTile - first + 1);

  const TileCopy<kTile, D, T> copy_q(a.q.stride_l * dil), copy_k(ks), copy_v(vs);
  // Group n of cp.async copies brings K_n and V_{n-1} (what step n needs);
  // every step commits one, empty past the band, so "group n is done" is a
  // constant count of younger groups.
  auto load_group = [&](int n) {
    if (n < steps) copy_k(tk(n), k, (first + n) * kTile, pl.rows);
    if (n >= 1 && n <= steps) copy_v(tv(n - 1), v, (first + n - 1) * kTile, pl.rows);
    cp_async_commit();
  };
  copy_q(tq, class_row0<T>(a.q, pl.b, pl.head, pl.r), i0, pl.rows);
  for (int n = 0; n < kAhead; ++n) load_group(n);

  const int warp = threadIdx.x / 32;
  const float c = static_cast<float>(p.scale) * kLog2e;  // scores in log2 units
  float m[2] = {-INFINITY, -INFINITY}, l[2] = {0.f, 0.f};
  float o[D / 8][4] = {};

  // Step n computes S_n = Q K_n^T beside O += P_{n-1} V_{n-1}. Its start
  // waits for group n, then loads group n + kAhead into the slots that K_{n-1}
  // and V_{n-2} leave (the barrier: every warp is done with them).
  auto next_tiles = [&](int n) {
    cp_async_wait<kAhead - 1>();
    fence_for_tensor_cores();
    __syncthreads();
    load_group(n + kAhead);
  };
  // Raw scores s of key tile t in, probabilities (relative to the new row
  // maxima) out; alpha: the factor by which O and l shrink to the new maxima.
  // The scale c goes into the exponent's FFMA (c > 0, so the row maximum of
  // raw scores times c is that of scaled ones).
  auto softmax = [&](float (&s)[kTile / 8][4], std::int64_t t, float (&alpha)[2]) {
    const std::int64_t j0 = t * kTile;
    if (!band.full(i0, kTile, j0, kTile)) {
      const TileBand tb = band.at(i0 + warp * 16, j0);
      if (tb.keys >= kTile) {
        mask<kTile>(s, -INFINITY, [&](int qo, int ko) { return tb.in_band(qo, ko); });
      } else {  // the class ends inside this tile
        mask<kTile>(s, -INFINITY,
                    [&](int qo, int ko) { return tb.in_band(qo, ko) && ko < tb.keys; });
      }
    }
    // Row halves rr = 0, 1 are rows lane/4 and lane/4 + 8.
#pragma unroll
    for (int rr = 0; rr < 2; ++rr) {
      float mx = -INFINITY;
#pragma unroll
      for (int nb = 0; nb < kTile / 8; ++nb) {
        mx = fmaxf(mx, fmaxf(s[nb][2 * rr], s[nb][2 * rr + 1]));
      }
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 1));
      mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, 2));
      mx = fmaxf(m[rr], mx * c);
      // A row with no visible key yet keeps max -inf: subtract 0 instead (no NaN).
      const float base = mx == -INFINITY ? 0.f : mx;
      alpha[rr] = fast_exp2(m[rr] - base);
      m[rr] = mx;
      l[rr] *= alpha[rr];
#pragma unroll
      for (int nb = 0; nb < kTile / 8; ++nb) {
        s[nb][2 * rr] = fast_exp2(fmaf(s[nb][2 * rr], c, -base));
        s[nb][2 * rr + 1] = fast_exp2(fmaf(s[nb][2 * rr + 1], c, -base));
        l[rr] += s[nb][2 * rr] + s[nb][2 * rr + 1];
      }
    }
  };

  // Software pipeline: the softmax of S_n overlaps O += P_{n-1} V_{n-1}.
  std::uint32_t pf[kTile / 16][4];  // P of the previous tile, as A fragments
  {
    next_tiles(0);
    float s[kTile / 8][4], alpha[2];
    issue_abt<kTile, D>(s, tq, tk(0));
    wait_products<0>(s);
    softmax(s, first, alpha);  // O is still 0
    to_fragments<kTile, T>(pf, s);
  }
  for (int n = 1; n < steps; ++n) {
    next_tiles(n);
    float s[kTile / 8][4], alpha[2];
    issue_abt<kTile, D>(s, tq, tk(n));
    issue_ab<D, kTile>(o, pf, tv(n - 1));
    wait_products<1>(s);
    softmax(s, first + n, alpha);
    wait_products<0>(o, pf);
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb) {
      o[nb][0] *= alpha[0];
      o[nb][1] *= alpha[0];
      o[nb][2] *= alpha[1];
      o[nb][3] *= alpha[1];
    }
    to_fragments<kTile, T>(pf, s);
  }
  cp_async_wait<0>();  // group `steps`: the last V
  fence_for_tensor_cores();
  __syncthreads();
  issue_ab<D, kTile>(o, pf, tv(steps - 1));
  wait_products<0>(o, pf);

  // Normalise and store each thread's two rows, 4 bytes at a time (staging
  // them in shared memory for 16-byte stores cost more in instructions).
  T* out = a.out.row<T>(pl.b, pl.head, pl.r);
  float* lse = reinterpret_cast<float*>(a.lse) + (pl.b * p.heads + pl.head) * p.length + pl.r;
  const std::int64_t os = a.out.stride_l * dil;
#pragma unroll
  for (int rr = 0; rr < 2; ++rr) {
    float sum = l[rr];
    sum += __shfl_xor_sync(0xffffffffu, sum, 1);
    sum += __shfl_xor_sync(0xffffffffu, sum, 2);
    const std::int64_t i = i0 + warp * 16 + acc_row(2 * rr);
    if (i >= pl.rows) continue;
    const float inv = __fdividef(1.f, sum);  // sum >= 1: its row maximum's term
#pragma unroll
    for (int nb = 0; nb < D / 8; ++nb) {
      *reinterpret_cast<std::uint32_t*>(out + i * os + acc_col(nb, 0)) =
          pack<T>(o[nb][2 * rr] * inv, o[nb][2 * rr + 1] * inv);
    }
    if (threadIdx.x % 4 == 0) lse[i * dil] = (m[rr] + __log2f(sum)) * kLn2;
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
__global__ void __launch_bounds__(kThreads, kDqBlocks<D>)
    dq_kernel(AttentionProblem p, AttentionBackward a, BlockGrid grid) {
  constexpr int BK = kInner<D>;
  using RowTile = Tile<kTile, D, T>;
  using KeyTile = Tile<BK, D, T>;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = swizzle_aligned(smem_raw);
  // Q, dO, then two stages of [K tile; V tile] (2 BK >= kTile rows: stage 1
  // holds O while delta is made and the first K, V tiles load into stage 0).
  const RowTile tq{smem}, tdo{smem + RowTile::kBytes};
  unsigned char* kv = smem + 2 * RowTile::kBytes;
  auto tk = [&](int stage) { return KeyTile{kv + 2 * stage * KeyTile::kBytes}; };
  auto tv = [&](int stage) { return KeyTile{tk(stage).base + KeyTile::kBytes}; };
  const RowTile to{kv + 2 * KeyTile::kBytes};
  float* sDelta = reinterpret_cast<float*>(kv + 4 * KeyTile::kBytes);

  const Place pl = place(p, grid, kTile);
  if (!pl.valid) return;
  const std::int64_t g = grid.group.div(static_cast<unsigned>(pl.head)), dil = p.dilation;
  const Band band{p.left, p.right, pl.rows};
  const std::int64_t i0 = pl.tile * kTile;
  const T* k = class_row0<T>(a.k, pl.b, g, pl.r);
  const T* v = class_row0<T>(a.v, pl.b, g, pl.r);
  const std::int64_t ks = a.k.stride_l * dil, vs = a.v.stride_l * dil;
  const std::int64_t row_base = (pl.b * p.heads + pl.head) * p.length + pl.r;
  const std::int64_t first = band.first_key(i0) / BK, last = band.last_key(i0, kTile) / BK;
  const TileCopy<BK, D, T> copy_k(ks), copy_v(vs);
  auto load_kv = [&](std::int64_t t, int stage) {
    copy_k(tk(stage), k, t * BK, pl.rows);
    copy_v(tv(stage), v, t * BK, pl.rows);
  };

  using RowCopy = TileCopy<kTile, D, T>;
  RowCopy(a.q.stride_l * dil)(tq, class_row0<T>(a.q, pl.b, pl.head, pl.r), i0, pl.rows);
  RowCopy(a.dout.stride_l * dil)(tdo, class_row0<T>(a.dout, pl.b, pl.head, pl.r), i0, pl.rows);
  RowCopy(a.out.stride_l * dil)(to, class_row0<T>(a.out, pl.b, pl.head, pl.r), i0, pl.rows);
  load_kv(first, 0);
  cp_async_commit();
  cp_async_wait<0>();
  fence_for_tensor_cores();
  __syncthreads();
  {  // two threads per row, D/2 columns each, 8 at a time
    const int r = threadIdx.x / 2, half = threadIdx.x % 2;
    float d = 0.f;
#pragma unroll
    for (int chunk = half * (D / 16); chunk < (half + 1) * (D / 16); ++chunk) {
      const T* dov = reinterpret_cast<const T*>(tdo.base + RowTile::offset(r, chunk));
      const T* ov = reinterpret_cast<const T*>(to.base + RowTile::offset(r, chunk));
#pragma unroll
      for (int e = 0; e < 8; ++e) d += to_float(dov[e]) * to_float(ov[e]);
    }
    d += __shfl_xor_sync(0xffffffffu, d, 1);
    if (half == 0) {
      sDelta[r] = d;
      if (i0 + r < pl.rows) reinterpret_cast<float*>(a.delta)[row_base + (i0 + r) * dil] = d;
    }
  }
  __syncthreads();  // stage 1 (holding O) is free again

  const int warp = threadIdx.x / 32;
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
    fence_for_tensor_cores();
    __syncthreads();

    // S and dP run together on the tensor cores; P is made while dP finishes.
    float s[BK / 8][4], dp[BK / 8][4];
    issue_abt<BK, D>(s, tq, tk(stage));
    issue_abt<BK, D>(dp, tdo, tv(stage));
    wait_products<1>(s);
#pragma unroll
    for (int nb = 0; nb < BK / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] = fast_exp2(s[nb][e] * c - lse2[e / 2]);
    }
    if (!band.full(i0, kTile, j0, BK)) {  // probabilities outside the band are 0
      const TileBand tb = band.at(i0 + warp * 16, j0);
      mask<BK>(s, 0.f, [&](int qo, int ko) { return tb.in_band(qo, ko); });
    }
    wait_products<0>(dp);
#pragma unroll
    for (int nb = 0; nb < BK / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] *= dp[nb][e] - delta[e / 2];
    }
    std::uint32_t dsf[BK / 16][4];
    to_fragments<BK, T>(dsf, s);
    issue_ab<D, BK>(dq, dsf, tk(stage));
    wait_products<0>(dq, dsf);
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
__global__ void __launch_bounds__(kThreads, kDkdvBlocks<D>)
    dkdv_kernel(AttentionProblem p, AttentionBackward a, BlockGrid grid) {
  constexpr int BQ = kInner<D>;
  using KeyTile = Tile<kTile, D, T>;
  using QueryTile = Tile<BQ, D, T>;
  extern __shared__ unsigned char smem_raw[];
  unsigned char* smem = swizzle_aligned(smem_raw);
  // K, V, then two stages of [Q tile; dO tile], then two stages of lse and delta.
  const KeyTile tk{smem}, tv{smem + KeyTile::kBytes};
  unsigned char* qdo = smem + 2 * KeyTile::kBytes;
  auto tq = [&](int stage) { return QueryTile{qdo + 2 * stage * QueryTile::kBytes}; };
  auto tdo = [&](int stage) { return QueryTile{tq(stage).base + QueryTile::kBytes}; };
  float* sLse = reinterpret_cast<float*>(qdo + 4 * QueryTile::kBytes);
  float* sDelta = sLse + 2 * BQ;

  const Place pl = place(p, grid, kTile);
  if (!pl.valid) return;
  const std::int64_t dil = p.dilation;
  const Band band{p.left, p.right, pl.rows};
  const std::int64_t j0 = pl.tile * kTile;
  using KeyCopy = TileCopy<kTile, D, T>;
  KeyCopy(a.k.stride_l * dil)(tk, class_row0<T>(a.k, pl.b, pl.head, pl.r), j0, pl.rows);
  KeyCopy(a.v.stride_l * dil)(tv, class_row0<T>(a.v, pl.b, pl.head, pl.r), j0, pl.rows);

  // Steps run over (query head of the group, query tile of the band).
  const std::int64_t lo = j0 - p.right > 0 ? j0 - p.right : 0;
  const std::int64_t hi = AttentionProblem::min(pl.rows - 1, j0 + kTile - 1 + p.left - 1);
  const std::int64_t first = lo / BQ;
  const int per_head = static_cast<int>(hi / BQ - first + 1), steps = static_cast<int>(grid.group.divisor) * per_head;
  const TileCopy<BQ, D, T> copy_q(a.q.stride_l * dil), copy_do(a.dout.stride_l * dil);
  auto load_queries = [&](int step, int stage) {
    const std::int64_t h = pl.head * grid.group.divisor + step / per_head;
    const std::int64_t i0 = (first + step % per_head) * BQ;
    copy_q(tq(stage), class_row0<T>(a.q, pl.b, h, pl.r), i0, pl.rows);
    copy_do(tdo(stage), class_row0<T>(a.dout, pl.b, h, pl.r), i0, pl.rows);
    if (threadIdx.x < BQ) {  // rows past the end read 0: they add nothing (TileBand)
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
  const float c = static_cast<float>(p.scale) * kLog2e;
  float dk[D / 8][4] = {}, dv[D / 8][4] = {};

  for (int step = 0; step < steps; ++step) {
    const int stage = step % 2;
    if (step + 1 < steps) {  // the next Q, dO tiles load into the other stage during this one
      load_queries(step + 1, 1 - stage);
      cp_async_commit();
      cp_async_wait<1>();
    } else {
      cp_async_wait<0>();
    }
    fence_for_tensor_cores();
    __syncthreads();
    const std::int64_t i0 = (first + step % per_head) * BQ;
    const float* lse = sLse + stage * BQ;
    const float* delta = sDelta + stage * BQ;

    // S^T and dP^T run together; P is made while dP^T finishes, dS while
    // dV += P^T dO runs.
    float s[BQ / 8][4], dp[BQ / 8][4];
    issue_abt<BQ, D>(s, tk, tq(stage));
    issue_abt<BQ, D>(dp, tv, tdo(stage));
    wait_products<1>(s);
#pragma unroll
    for (int nb = 0; nb < BQ / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] = fast_exp2(s[nb][e] * c - lse[acc_col(nb, e)] * kLog2e);
    }
    if (!band.full(i0, BQ, j0, kTile)) {  // probabilities outside the band are 0
      const TileBand tb = band.at(i0, j0 + warp * 16);  // transposed: rows are keys
      mask<BQ>(s, 0.f, [&](int ko, int qo) { return tb.in_band(qo, ko); });
    }
    std::uint32_t pf[BQ / 16][4], dsf[BQ / 16][4];
    to_fragments<BQ, T>(pf, s);
    issue_ab<D, BQ>(dv, pf, tdo(stage));
    wait_products<1>(dp);
#pragma unroll
    for (int nb = 0; nb < BQ / 8; ++nb) {
#pragma unroll
      for (int e = 0; e < 4; ++e) s[nb][e] *= dp[nb][e] - delta[acc_col(nb, e)];
    }
    to_fragments<BQ, T>(dsf, s);
    issue_ab<D, BQ>(dk, dsf, tq(stage));
    wait_products<0>(dv, pf, dk, dsf);
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
  dispatch_16bit(dtype, p.head_dim, [&](auto* tag, auto d) {
    using T = std::remove_pointer_t<decltype(tag)>;
    constexpr int D = decltype(d)::value;
    launch(forward_kernel<D, T>, block_grid(p, p.heads, kTile),
           (1 + 2 * (kForwardAhead<D> + 1)) * Tile<kTile, D, T>::kBytes + kSmemSlack, s, p, a);
  });
  cuda_check(cudaGetLastError(), "sliding_window_attention forward launch");
}

void sliding_window_attention_backward_mma(const AttentionProblem& p, const AttentionBackward& a,
                                           DType dtype, cudaStream_t s) {
  dispatch_16bit(dtype, p.head_dim, [&](auto* tag, auto d) {
    using T = std::remove_pointer_t<decltype(tag)>;
    constexpr int D = decltype(d)::value;
    const std::size_t tiles_bytes =
        2 * Tile<kTile, D, T>::kBytes + 4 * Tile<kInner<D>, D, T>::kBytes + kSmemSlack;
    // dq_kernel writes delta, which dkdv_kernel reads: same stream, in order.
    launch(dq_kernel<D, T>, block_grid(p, p.heads, kTile), tiles_bytes + kTile * sizeof(float), s,
           p, a);
    launch(dkdv_kernel<D, T>, block_grid(p, p.kv_heads, kTile),
           tiles_bytes + 4 * kInner<D> * sizeof(float), s, p, a);
  });
  cuda_check(cudaGetLastError(), "sliding_window_attention backward launch");
}

}  // namespace ma_kernels
