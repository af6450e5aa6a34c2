// Sliding-window / dilated attention on [B, H, L, D] tensors: the band
// geometry shared by the CPU and CUDA kernels, so both visit the same keys.
//
// Key j is visible to query i when (i - j) % dilation == 0 and
// -right * dilation <= i - j < left * dilation; the causal window W is
// (left, right) = (W, 0). left >= 1, so every query sees itself and no softmax
// row is empty.
#pragma once

#include "common.h"

namespace ma_kernels {

// A [B, H, L, D] tensor whose D axis is contiguous (ops check that).
struct Bhld {
  std::uintptr_t data;
  std::int64_t stride_b, stride_h, stride_l;

  template <typename T>
  MA_HOST_DEVICE T* row(std::int64_t b, std::int64_t h, std::int64_t i) const {
    return reinterpret_cast<T*>(data) + b * stride_b + h * stride_h + i * stride_l;
  }
};

// The tiled kernels copy rows 16 bytes at a time: every row must start on a
// 16-byte boundary.
inline bool rows_aligned(const Bhld& t, std::int64_t element_bytes) {
  const auto strides = static_cast<std::uintptr_t>((t.stride_b | t.stride_h | t.stride_l) *
                                                   element_bytes);
  return (t.data | strides) % 16 == 0;
}

struct AttentionProblem {
  std::int64_t batch, heads, kv_heads, length, head_dim;
  std::int64_t left, right, dilation;
  double scale;

  MA_HOST_DEVICE static std::int64_t min(std::int64_t a, std::int64_t b) { return a < b ? a : b; }

  // Query i sees keys first_key(i), first_key(i) + dilation, ..., last_key(i).
  MA_HOST_DEVICE std::int64_t first_key(std::int64_t i) const {
    return i - min(left - 1, i / dilation) * dilation;
  }
  MA_HOST_DEVICE std::int64_t last_key(std::int64_t i) const {
    return i + min(right, (length - 1 - i) / dilation) * dilation;
  }
  // Key j is seen by queries first_query(j), ..., last_query(j), step dilation.
  MA_HOST_DEVICE std::int64_t first_query(std::int64_t j) const {
    return j - min(right, j / dilation) * dilation;
  }
  MA_HOST_DEVICE std::int64_t last_query(std::int64_t j) const {
    return j + min(left - 1, (length - 1 - j) / dilation) * dilation;
  }
  // Query heads per key/value head (grouped-query attention).
  MA_HOST_DEVICE std::int64_t group() const { return heads / kv_heads; }
};

// lse and delta are contiguous [B, H, L] in the accumulation type (float64 for
// float64 inputs, float32 otherwise): lse = log sum_j exp(scale * q_i . k_j),
// delta = dout_i . out_i (the backward's softmax correction).
struct AttentionForward {
  Bhld q, k, v, out;
  std::uintptr_t lse;
};

struct AttentionBackward {
  Bhld q, k, v, out, dout, dq, dk, dv;
  std::uintptr_t lse, delta;
};

void sliding_window_attention_forward_cpu(const AttentionProblem& p, const AttentionForward& a,
                                          DType dtype);
void sliding_window_attention_backward_cpu(const AttentionProblem& p, const AttentionBackward& a,
                                           DType dtype);
#ifdef MA_KERNELS_WITH_CUDA
// Both return false, launching nothing, when a tiled kernel would get rows off
// 16-byte boundaries (rows_aligned): the caller runs them on copies.
bool sliding_window_attention_forward_cuda(const AttentionProblem& p, const AttentionForward& a,
                                           DType dtype, int device, std::uintptr_t stream);
bool sliding_window_attention_backward_cuda(const AttentionProblem& p,
                                            const AttentionBackward& a, DType dtype, int device,
                                            std::uintptr_t stream);
#endif

}  // namespace ma_kernels
