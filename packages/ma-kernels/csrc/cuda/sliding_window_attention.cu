// CUDA sliding-window attention for float32 and float64 on CUDA cores: one
// warp per query row (forward, dq) or key row (dk, dv), lanes split the head
// dim, scores reduced with warp shuffles, online softmax one key at a time.
// Each row has one writer, so no atomics. float16 and bfloat16 go to the
// tensor-core kernels of sliding_window_attention_mma.cu.
#include <type_traits>

#include "cuda/check.cuh"
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

// T: float or double, also the accumulation type.
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

void sliding_window_attention_forward_cuda(const AttentionProblem& p, const AttentionForward& a,
                                           DType dtype, int device, std::uintptr_t stream) {
  const std::int64_t rows = p.batch * p.heads * p.length;
  if (rows == 0) return;
  cudaStream_t s = use_device(device, stream);
  if (is_16bit(dtype)) return sliding_window_attention_forward_mma(p, a, dtype, s);
  dispatch_float(dtype, [&](auto* tag) {
    using T = std::remove_pointer_t<decltype(tag)>;
    dispatch_head_dim(p.head_dim, [&](auto d) {
      forward_kernel<decltype(d)::value, T><<<blocks_for(rows), kWarp * kWarpsPerBlock, 0, s>>>(p, a);
    });
  });
  cuda_check(cudaGetLastError(), "sliding_window_attention forward launch");
}

void sliding_window_attention_backward_cuda(const AttentionProblem& p,
                                            const AttentionBackward& a, DType dtype, int device,
                                            std::uintptr_t stream) {
  const std::int64_t rows = p.batch * p.heads * p.length;
  if (rows == 0) return;
  cudaStream_t s = use_device(device, stream);
  if (is_16bit(dtype)) return sliding_window_attention_backward_mma(p, a, dtype, s);
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
}

}  // namespace ma_kernels
