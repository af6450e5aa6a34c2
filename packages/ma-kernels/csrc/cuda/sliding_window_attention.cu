// CUDA sliding-window attention for float32 and float64 on CUDA cores.
// float32 forward: tiled_forward_kernel, exact fp32 FMA on shared-memory tiles
// (the 1e-5 tolerance rules out tf32). The float32 backward and everything
// float64: one warp per query row (forward, dq) or key row (dk, dv), lanes
// split the head dim, scores reduced with warp shuffles, online softmax one
// key at a time. Each row has one writer, so no atomics. float16 and bfloat16
// go to the tensor-core kernels of sliding_window_attention_mma.cu.
#include <initializer_list>
#include <type_traits>

#include "cuda/attention_tiles.cuh"
#include "cuda/sliding_window_attention_mma.cuh"
#include "sliding_window_attention.h"

namespace ma_kernels {
namespace {

constexpr int kWarp = 32;
constexpr int kWarpsPerBlock = 4;

template <typename T>
__device__ __forceinline__ T warp_sum(T x) {
  for (int offset = kWarp / 2; offset > 0; offset /= 2) {
    x += __shfl_xor_sync(0xffffffffu, x, offset);
  }
  return x;
}

// Each lane holds head-dim elements lane, lane + 32, ... of a row.
template <int D, typename T>
__device__ __forceinline__ void load_row(const T* row, T (&x)[D / kWarp]) {
#pragma unroll
  for (int e = 0; e < D / kWarp; ++e) x[e] = row[threadIdx.x % kWarp + e * kWarp];
}

template <int D, typename T>
__device__ __forceinline__ T warp_dot(const T (&x)[D / kWarp], const T* row) {
  T s = 0;
#pragma unroll
  for (int e = 0; e < D / kWarp; ++e) s += x[e] * row[threadIdx.x % kWarp + e * kWarp];
  return warp_sum(s);
}

// The row a warp owns among `rows`, or -1 past the end.
__device__ __forceinline__ std::int64_t warp_row(std::int64_t rows) {
  const std::int64_t r = std::int64_t(blockIdx.x) * kWarpsPerBlock + threadIdx.x / kWarp;
  return r < rows ? r : -1;
}

// float64 (T is also the accumulation type).
template <int D, typename T>
__global__ void __launch_bounds__(kWarp* kWarpsPerBlock)
    forward_kernel(AttentionProblem p, AttentionForward a) {
  const std::int64_t L = p.length, H = p.heads;
  const std::int64_t r = warp_row(p.batch * H * L);
  if (r < 0) return;
  const std::int64_t b = r / (H * L), h = (r / L) % H, i = r % L, g = h / p.group();
  const T scale = static_cast<T>(p.scale);
  T qi[D / kWarp], acc[D / kWarp] = {};
  load_row<D>(a.q.row<const T>(b, h, i), qi);
  T running_max = -INFINITY, sum = 0;
  for (std::int64_t j = p.first_key(i); j <= p.last_key(i); j += p.dilation) {
    const T s = scale * warp_dot<D>(qi, a.k.row<const T>(b, g, j));
    const T new_max = s > running_max ? s : running_max;
    const T rescale = exp(running_max - new_max), w = exp(s - new_max);
    const T* vj = a.v.row<const T>(b, g, j);
    sum = sum * rescale + w;
#pragma unroll
    for (int e = 0; e < D / kWarp; ++e) {
      acc[e] = acc[e] * rescale + w * vj[threadIdx.x % kWarp + e * kWarp];
    }
    running_max = new_max;
  }
  T* oi = a.out.row<T>(b, h, i);
#pragma unroll
  for (int e = 0; e < D / kWarp; ++e) {
    oi[threadIdx.x % kWarp + e * kWarp] = acc[e] / sum;
  }
  if (threadIdx.x % kWarp == 0) reinterpret_cast<T*>(a.lse)[r] = running_max + log(sum);
}

// delta_i = dout_i . out_i, then dq_i = scale * sum_j P_ij (dout_i . v_j - delta_i) k_j.
template <int D, typename T>
__global__ void __launch_bounds__(kWarp* kWarpsPerBlock)
    backward_dq_kernel(AttentionProblem p, AttentionBackward a) {
  const std::int64_t L = p.length, H = p.heads;
  const std::int64_t r = warp_row(p.batch * H * L);
  if (r < 0) return;
  const std::int64_t b = r / (H * L), h = (r / L) % H, i = r % L, g = h / p.group();
  const T scale = static_cast<T>(p.scale);
  const T lse = reinterpret_cast<const T*>(a.lse)[r];
  T qi[D / kWarp], doi[D / kWarp], dq[D / kWarp] = {};
  load_row<D>(a.q.row<const T>(b, h, i), qi);
  load_row<D>(a.dout.row<const T>(b, h, i), doi);
  const T delta = warp_dot<D>(doi, a.out.row<const T>(b, h, i));
  if (threadIdx.x % kWarp == 0) reinterpret_cast<T*>(a.delta)[r] = delta;
  for (std::int64_t j = p.first_key(i); j <= p.last_key(i); j += p.dilation) {
    const T* kj = a.k.row<const T>(b, g, j);
    const T prob = exp(scale * warp_dot<D>(qi, kj) - lse);
    const T ds = scale * prob * (warp_dot<D>(doi, a.v.row<const T>(b, g, j)) - delta);
#pragma unroll
    for (int e = 0; e < D / kWarp; ++e) dq[e] += ds * kj[threadIdx.x % kWarp + e * kWarp];
  }
  T* dqi = a.dq.row<T>(b, h, i);
#pragma unroll
  for (int e = 0; e < D / kWarp; ++e) dqi[threadIdx.x % kWarp + e * kWarp] = dq[e];
}

// dv_j = sum_i P_ij dout_i, dk_j = scale * sum_i dS_ij q_i over every query
// head of j's group; runs after backward_dq_kernel has written delta.
template <int D, typename T>
__global__ void __launch_bounds__(kWarp* kWarpsPerBlock)
    backward_dkdv_kernel(AttentionProblem p, AttentionBackward a) {
  const std::int64_t L = p.length, H = p.heads;
  const std::int64_t r = warp_row(p.batch * p.kv_heads * L);
  if (r < 0) return;
  const std::int64_t b = r / (p.kv_heads * L), g = (r / L) % p.kv_heads, j = r % L;
  const T scale = static_cast<T>(p.scale);
  const T* lse = reinterpret_cast<const T*>(a.lse);
  const T* delta = reinterpret_cast<const T*>(a.delta);
  T kj[D / kWarp], vj[D / kWarp], dk[D / kWarp] = {}, dv[D / kWarp] = {};
  load_row<D>(a.k.row<const T>(b, g, j), kj);
  load_row<D>(a.v.row<const T>(b, g, j), vj);
  for (std::int64_t h = g * p.group(); h < (g + 1) * p.group(); ++h) {
    const std::int64_t row0 = (b * H + h) * L;
    for (std::int64_t i = p.first_query(j); i <= p.last_query(j); i += p.dilation) {
      const T* qi = a.q.row<const T>(b, h, i);
      const T* doi = a.dout.row<const T>(b, h, i);
      const T prob = exp(scale * warp_dot<D>(kj, qi) - lse[row0 + i]);
      const T ds = scale * prob * (warp_dot<D>(vj, doi) - delta[row0 + i]);
#pragma unroll
      for (int e = 0; e < D / kWarp; ++e) {
        dv[e] += prob * doi[threadIdx.x % kWarp + e * kWarp];
        dk[e] += ds * qi[threadIdx.x % kWarp + e * kWarp];
      }
    }
  }
  T* dkj = a.dk.row<T>(b, g, j);
  T* dvj = a.dv.row<T>(b, g, j);
#pragma unroll
  for (int e = 0; e < D / kWarp; ++e) {
    dkj[threadIdx.x % kWarp + e * kWarp] = dk[e];
    dvj[threadIdx.x % kWarp + e * kWarp] = dv[e];
  }
}

// ---- float32 forward on tiles ----------------------------------------------
//
// A block of 128 threads owns 64 queries of one residue class (attention_tiles.cuh)
// and visits the 64-key tiles of its band, staged by cp.async: V in two
// stages, K in one (refilled during P V, once S is taken), which keeps a
// D = 32 block at 53 KB of shared memory: 4 blocks per SM, not 3.
// Thread (rg, cg) = (tid / 16, tid % 16) computes scores of rows 8 rg .. 8 rg + 7
// against keys cg + 16 c (c < 4) and accumulates output columns
// cg * D/16 .. (cg + 1) * D/16 - 1 of the same rows; P goes through shared
// memory between the two products. Every shared load is 16 bytes: 12 loads
// per 128 FMA, so the kernel is FMA-bound.
namespace tiled {

constexpr int kRows = 64, kKeys = 64, kRowsPerThread = 8, kKeysPerThread = 4;
constexpr int kLdP = kKeys + 4;

__device__ __forceinline__ float4 lds4(const float* p) {
  return *reinterpret_cast<const float4*>(p);
}

template <int D>
__global__ void __launch_bounds__(tiles::kThreads)
    forward_kernel(AttentionProblem p, AttentionForward a, tiles::BlockGrid grid) {
  using namespace tiles;
  constexpr int LD = kLd<D, float>, kCols = D / 16;  // output columns per thread
  extern __shared__ __align__(16) unsigned char smem[];
  float* sQ = reinterpret_cast<float*>(smem);
  float* sK = sQ + kRows * LD;  // one K tile
  float* sV = sK + kKeys * LD;  // two stages of V tiles
  float* sP = sV + 2 * kKeys * LD;

  const Place pl = place(p, grid, kRows);
  if (!pl.valid) return;
  const std::int64_t g = grid.group.div(static_cast<unsigned>(pl.head)), dil = p.dilation;
  const Band band{p.left, p.right, pl.rows};
  const std::int64_t i0 = pl.tile * kRows;
  const float* k = class_row0<float>(a.k, pl.b, g, pl.r);
  const float* v = class_row0<float>(a.v, pl.b, g, pl.r);
  const std::int64_t ks = a.k.stride_l * dil, vs = a.v.stride_l * dil;
  const std::int64_t first = band.first_key(i0) / kKeys, last = band.last_key(i0, kRows) / kKeys;

  load_tile<D>(sQ, class_row0<float>(a.q, pl.b, pl.head, pl.r), a.q.stride_l * dil, i0, kRows,
               pl.rows);
  load_tile<D>(sK, k, ks, first * kKeys, kKeys, pl.rows);
  load_tile<D>(sV, v, vs, first * kKeys, kKeys, pl.rows);
  cp_async_commit();

  const int rg = threadIdx.x / 16, cg = threadIdx.x % 16;
  const std::int64_t row0 = i0 + rg * kRowsPerThread;
  const float c = static_cast<float>(p.scale) * kLog2e;  // scores in log2 units
  float m[kRowsPerThread], l[kRowsPerThread] = {}, o[kRowsPerThread][kCols] = {};
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) m[r] = -INFINITY;

  for (std::int64_t t = first; t <= last; ++t) {
    const std::int64_t j0 = t * kKeys;
    const int stage = static_cast<int>((t - first) % 2);
    const float* sVt = sV + stage * kKeys * LD;
    if (t < last) {  // the next V tile loads into the other stage during this one
      load_tile<D>(sV + (1 - stage) * kKeys * LD, v, vs, j0 + kKeys, kKeys, pl.rows);
      cp_async_commit();
      cp_async_wait<1>();  // all but that one: this K (loaded during the last P V) and V
    } else {
      cp_async_wait<0>();
    }
    __syncthreads();

    // S = Q K^T over 4 columns of D at a time.
    float s[kRowsPerThread][kKeysPerThread] = {};
#pragma unroll 1
    for (int d = 0; d < D; d += 4) {
      float4 kv[kKeysPerThread];
#pragma unroll
      for (int j = 0; j < kKeysPerThread; ++j) kv[j] = lds4(sK + (cg + 16 * j) * LD + d);
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) {
        const float4 qv = lds4(sQ + (rg * kRowsPerThread + r) * LD + d);
#pragma unroll
        for (int j = 0; j < kKeysPerThread; ++j) {
          s[r][j] = fmaf(qv.x, kv[j].x, s[r][j]);
          s[r][j] = fmaf(qv.y, kv[j].y, s[r][j]);
          s[r][j] = fmaf(qv.z, kv[j].z, s[r][j]);
          s[r][j] = fmaf(qv.w, kv[j].w, s[r][j]);
        }
      }
    }
    // Online softmax; a row's 64 scores sit in the 16 lanes of its half warp.
    const bool full = band.full(i0, kRows, j0, kKeys);
    const TileBand tb = band.at(row0, j0);
#pragma unroll
    for (int r = 0; r < kRowsPerThread; ++r) {
      float mx = m[r];
#pragma unroll
      for (int j = 0; j < kKeysPerThread; ++j) {
        s[r][j] *= c;
        const int ko = cg + 16 * j;
        if (!full && !(tb.in_band(r, ko) && ko < tb.keys)) s[r][j] = -INFINITY;
        mx = fmaxf(mx, s[r][j]);
      }
#pragma unroll
      for (int offset = 1; offset < 16; offset *= 2) {
        mx = fmaxf(mx, __shfl_xor_sync(0xffffffffu, mx, offset));
      }
      // A row with no visible key yet keeps max -inf: subtract 0 instead (no NaN).
      const float base = mx == -INFINITY ? 0.f : mx;
      const float alpha = exp2f(m[r] - base);
      m[r] = mx;
      l[r] *= alpha;
#pragma unroll
      for (int col = 0; col < kCols; ++col) o[r][col] *= alpha;
#pragma unroll
      for (int j = 0; j < kKeysPerThread; ++j) {
        const float prob = exp2f(s[r][j] - base);
        l[r] += prob;
        sP[(rg * kRowsPerThread + r) * kLdP + cg + 16 * j] = prob;
      }
    }
    __syncthreads();  // P is written and every thread is done with this K
    if (t < last) {
      load_tile<D>(sK, k, ks, j0 + kKeys, kKeys, pl.rows);
      cp_async_commit();
    }

    // O += P V over 4 keys at a time.
#pragma unroll 1
    for (int j = 0; j < kKeys; j += 4) {
      float vv[4][kCols];
#pragma unroll
      for (int jj = 0; jj < 4; ++jj) {
#pragma unroll
        for (int col = 0; col < kCols; col += 2) {
          const float2 x = *reinterpret_cast<const float2*>(sVt + (j + jj) * LD + cg * kCols + col);
          vv[jj][col] = x.x;
          vv[jj][col + 1] = x.y;
        }
      }
#pragma unroll
      for (int r = 0; r < kRowsPerThread; ++r) {
        const float4 pv = lds4(sP + (rg * kRowsPerThread + r) * kLdP + j);
#pragma unroll
        for (int col = 0; col < kCols; ++col) {
          o[r][col] = fmaf(pv.x, vv[0][col], o[r][col]);
          o[r][col] = fmaf(pv.y, vv[1][col], o[r][col]);
          o[r][col] = fmaf(pv.z, vv[2][col], o[r][col]);
          o[r][col] = fmaf(pv.w, vv[3][col], o[r][col]);
        }
      }
    }
    __syncthreads();  // every thread is done with this stage and sP before they refill
  }

  float* out = a.out.row<float>(pl.b, pl.head, pl.r);
  float* lse = reinterpret_cast<float*>(a.lse) + (pl.b * p.heads + pl.head) * p.length + pl.r;
  const std::int64_t os = a.out.stride_l * dil;
#pragma unroll
  for (int r = 0; r < kRowsPerThread; ++r) {
    float sum = l[r];
#pragma unroll
    for (int offset = 1; offset < 16; offset *= 2) sum += __shfl_xor_sync(0xffffffffu, sum, offset);
    const std::int64_t i = row0 + r;
    if (i >= pl.rows) continue;
    const float inv = 1.f / sum;
#pragma unroll
    for (int col = 0; col < kCols; col += 2) {
      *reinterpret_cast<float2*>(out + i * os + cg * kCols + col) =
          make_float2(o[r][col] * inv, o[r][col + 1] * inv);
    }
    if (cg == 0) lse[i * dil] = (m[r] + log2f(sum)) / kLog2e;
  }
}

template <int D>
void forward(const AttentionProblem& p, const AttentionForward& a, cudaStream_t s) {
  const std::size_t smem =
      ((kRows + 3 * kKeys) * tiles::kLd<D, float> + kRows * kLdP) * sizeof(float);
  tiles::launch(forward_kernel<D>, tiles::block_grid(p, p.heads, kRows), smem, s, p, a);
}

}  // namespace tiled

bool is_16bit(DType dtype) { return dtype == DType::Float16 || dtype == DType::BFloat16; }

// Calls fn with std::integral_constant<int, D> for the head dims built here.
template <typename Fn>
void dispatch_head_dim(std::int64_t head_dim, Fn&& fn) {
  switch (head_dim) {
    case 32: fn(std::integral_constant<int, 32>{}); return;
    case 64: fn(std::integral_constant<int, 64>{}); return;
    case 128: fn(std::integral_constant<int, 128>{}); return;
  }
  throw std::invalid_argument("ma_kernels: CUDA attention supports head dims 32, 64, 128, not " +
                              std::to_string(head_dim));
}

unsigned blocks_for(std::int64_t rows) {
  return static_cast<unsigned>((rows + kWarpsPerBlock - 1) / kWarpsPerBlock);
}

}  // namespace

bool sliding_window_attention_forward_cuda(const AttentionProblem& p, const AttentionForward& a,
                                           DType dtype, int device, std::uintptr_t stream) {
  const std::int64_t rows = p.batch * p.heads * p.length;
  if (rows == 0) return true;
  if (dtype != DType::Float64) {  // the 16-bit and float32 forwards are tiled
    const std::int64_t bytes = is_16bit(dtype) ? 2 : 4;
    for (const Bhld& t : {a.q, a.k, a.v, a.out}) {
      if (!rows_aligned(t, bytes)) return false;
    }
  }
  cudaStream_t s = use_device(device, stream);
  if (is_16bit(dtype)) {
    sliding_window_attention_forward_mma(p, a, dtype, s);
    return true;
  }
  if (dtype == DType::Float32) {
    dispatch_head_dim(p.head_dim, [&](auto d) { tiled::forward<decltype(d)::value>(p, a, s); });
  } else {  // float64
    dispatch_head_dim(p.head_dim, [&](auto d) {
      forward_kernel<decltype(d)::value, double>
          <<<blocks_for(rows), kWarp * kWarpsPerBlock, 0, s>>>(p, a);
    });
  }
  cuda_check(cudaGetLastError(), "sliding_window_attention forward launch");
  return true;
}

bool sliding_window_attention_backward_cuda(const AttentionProblem& p,
                                            const AttentionBackward& a, DType dtype, int device,
                                            std::uintptr_t stream) {
  const std::int64_t rows = p.batch * p.heads * p.length;
  if (rows == 0) return true;
  if (is_16bit(dtype)) {  // tiled; the float32 and float64 backwards are not
    for (const Bhld& t : {a.q, a.k, a.v, a.out, a.dout, a.dq, a.dk, a.dv}) {
      if (!rows_aligned(t, 2)) return false;
    }
  }
  cudaStream_t s = use_device(device, stream);
  if (is_16bit(dtype)) {
    sliding_window_attention_backward_mma(p, a, dtype, s);
    return true;
  }
  dispatch_float(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_head_dim(p.head_dim, [&](auto d) {
      constexpr int D = decltype(d)::value;
      backward_dq_kernel<D, T><<<blocks_for(rows), kWarp * kWarpsPerBlock, 0, s>>>(p, a);
      backward_dkdv_kernel<D, T>
          <<<blocks_for(p.batch * p.kv_heads * p.length), kWarp * kWarpsPerBlock, 0, s>>>(p, a);
    });
  });
  cuda_check(cudaGetLastError(), "sliding_window_attention backward launch");
  return true;
}

}  // namespace ma_kernels
