// CPU sliding-window attention: one query row (forward, dq) or one key row
// (dk, dv) per work item, so no two threads write the same row and the
// backward is deterministic without atomics.
#include "sliding_window_attention.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <type_traits>
#include <vector>

#include "cpu/parallel.h"

namespace ma_kernels {
namespace {

// Keys whose scores are computed before one softmax rescale: amortizes the
// rescale of the output accumulator over a block, as the GPU tiles do.
constexpr std::int64_t kKeyBlock = 64;
// Multiply-adds per thread chunk: a small problem stays on one thread, where
// a second would cost more to start, and to share a core with torch's
// spinning OpenMP threads, than it saves (measured: (32, 2, 64, 16), W = 16,
// fwd+bwd 5.2 ms on two threads, 2.0 ms on one).
constexpr std::int64_t kChunkWork = 1 << 22;

// Rows per chunk for rows that each see `keys` keys of `p.head_dim`.
std::int64_t row_grain(const AttentionProblem& p, std::int64_t keys) {
  const std::int64_t row_work = std::max<std::int64_t>(1, std::min(keys, p.length) * p.head_dim);
  return std::max<std::int64_t>(16, kChunkWork / row_work);
}

// Four partial sums: one running sum is a chain of dependent adds that the
// compiler may not reorder (nor vectorize); four lanes are one SIMD register.
template <typename T>
T dot(const T* a, const T* b, std::int64_t n) {
  T s[4] = {0, 0, 0, 0};
  std::int64_t d = 0;
  for (; d + 4 <= n; d += 4) {
    for (int u = 0; u < 4; ++u) s[u] += a[d + u] * b[d + u];
  }
  for (; d < n; ++d) s[0] += a[d] * b[d];
  return (s[0] + s[1]) + (s[2] + s[3]);
}

template <typename T>
void forward(const AttentionProblem& p, const AttentionForward& a) {
  const std::int64_t D = p.head_dim, L = p.length, H = p.heads;
  const T scale = static_cast<T>(p.scale);
  T* lse = reinterpret_cast<T*>(a.lse);
  const std::int64_t grain = row_grain(p, p.left + p.right);
  parallel_for(p.batch * H * L, grain, [&](std::int64_t begin, std::int64_t end) {
    std::vector<T> acc(D), score(kKeyBlock);
    for (std::int64_t r = begin; r < end; ++r) {
      const std::int64_t b = r / (H * L), h = (r / L) % H, i = r % L, g = h / p.group();
      const T* qi = a.q.row<T>(b, h, i);
      T running_max = -std::numeric_limits<T>::infinity(), sum = 0;
      std::fill(acc.begin(), acc.end(), T(0));
      const std::int64_t last = p.last_key(i);
      for (std::int64_t j0 = p.first_key(i); j0 <= last; j0 += kKeyBlock * p.dilation) {
        const std::int64_t n = std::min(kKeyBlock, (last - j0) / p.dilation + 1);
        T block_max = running_max;
        for (std::int64_t t = 0; t < n; ++t) {
          score[t] = scale * dot(qi, a.k.row<T>(b, g, j0 + t * p.dilation), D);
          block_max = std::max(block_max, score[t]);
        }
        const T rescale = std::exp(running_max - block_max);  // 0 on the first block
        sum *= rescale;
        for (std::int64_t d = 0; d < D; ++d) acc[d] *= rescale;
        for (std::int64_t t = 0; t < n; ++t) {
          const T w = std::exp(score[t] - block_max);
          const T* vj = a.v.row<T>(b, g, j0 + t * p.dilation);
          sum += w;
          for (std::int64_t d = 0; d < D; ++d) acc[d] += w * vj[d];
        }
        running_max = block_max;
      }
      T* oi = a.out.row<T>(b, h, i);
      for (std::int64_t d = 0; d < D; ++d) oi[d] = acc[d] / sum;
      lse[r] = running_max + std::log(sum);
    }
  });
}

template <typename T>
void backward(const AttentionProblem& p, const AttentionBackward& a) {
  const std::int64_t D = p.head_dim, L = p.length, H = p.heads, G = p.group();
  const T scale = static_cast<T>(p.scale);
  const T* lse = reinterpret_cast<const T*>(a.lse);
  T* delta = reinterpret_cast<T*>(a.delta);

  // dq_i = scale * sum_j P_ij (dout_i . v_j - delta_i) k_j, one query row each.
  const std::int64_t grain = row_grain(p, p.left + p.right);
  parallel_for(p.batch * H * L, grain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const std::int64_t b = r / (H * L), h = (r / L) % H, i = r % L, g = h / G;
      const T* qi = a.q.row<T>(b, h, i);
      const T* doi = a.dout.row<T>(b, h, i);
      const T di = dot(doi, a.out.row<T>(b, h, i), D);
      delta[r] = di;
      T* dqi = a.dq.row<T>(b, h, i);
      std::fill(dqi, dqi + D, T(0));
      for (std::int64_t j = p.first_key(i); j <= p.last_key(i); j += p.dilation) {
        const T* kj = a.k.row<T>(b, g, j);
        const T prob = std::exp(scale * dot(qi, kj, D) - lse[r]);
        const T ds = scale * prob * (dot(doi, a.v.row<T>(b, g, j), D) - di);
        for (std::int64_t d = 0; d < D; ++d) dqi[d] += ds * kj[d];
      }
    }
  });

  // dv_j = sum_i P_ij dout_i and dk_j = scale * sum_i dS_ij q_i over the
  // queries of every head in j's group, one key row each (needs all of delta).
  parallel_for(p.batch * p.kv_heads * L, row_grain(p, G * (p.left + p.right)),
               [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t r = begin; r < end; ++r) {
      const std::int64_t b = r / (p.kv_heads * L), g = (r / L) % p.kv_heads, j = r % L;
      const T* kj = a.k.row<T>(b, g, j);
      const T* vj = a.v.row<T>(b, g, j);
      T* dkj = a.dk.row<T>(b, g, j);
      T* dvj = a.dv.row<T>(b, g, j);
      std::fill(dkj, dkj + D, T(0));
      std::fill(dvj, dvj + D, T(0));
      for (std::int64_t h = g * G; h < (g + 1) * G; ++h) {
        const std::int64_t row0 = (b * H + h) * L;
        for (std::int64_t i = p.first_query(j); i <= p.last_query(j); i += p.dilation) {
          const T* qi = a.q.row<T>(b, h, i);
          const T* doi = a.dout.row<T>(b, h, i);
          const T prob = std::exp(scale * dot(qi, kj, D) - lse[row0 + i]);
          const T ds = scale * prob * (dot(doi, vj, D) - delta[row0 + i]);
          for (std::int64_t d = 0; d < D; ++d) {
            dvj[d] += prob * doi[d];
            dkj[d] += ds * qi[d];
          }
        }
      }
    }
  });
}

}  // namespace

void sliding_window_attention_forward_cpu(const AttentionProblem& p, const AttentionForward& a,
                                          DType dtype) {
  dispatch_float(dtype, [&](auto* type_tag) {
    forward<std::remove_pointer_t<decltype(type_tag)>>(p, a);
  });
}

void sliding_window_attention_backward_cpu(const AttentionProblem& p, const AttentionBackward& a,
                                           DType dtype) {
  dispatch_float(dtype, [&](auto* type_tag) {
    backward<std::remove_pointer_t<decltype(type_tag)>>(p, a);
  });
}

}  // namespace ma_kernels
