// Types shared by the bindings and every kernel: the extension never sees a
// torch::Tensor, only data pointers, shapes and element strides.
#pragma once

#include <cstdint>
#include <stdexcept>
#include <string>

#if defined(__CUDACC__)
#define MA_HOST_DEVICE __host__ __device__ __forceinline__
#else
#define MA_HOST_DEVICE inline
#endif

namespace ma_kernels {

// Element type codes; ops.py holds the matching torch.dtype table. The 16-bit
// codes reach only kernels that dispatch on them (attention on CUDA).
enum class DType : int { Float32 = 0, Float64 = 1, Float16 = 2, BFloat16 = 3 };

// A strided 2-D view: element (r, c) lives at data[r * row_stride + c * col_stride].
struct Matrix {
  std::uintptr_t data;
  std::int64_t rows;
  std::int64_t cols;
  std::int64_t row_stride;
  std::int64_t col_stride;
};

// Calls fn with a null pointer of the C++ type that `dtype` names.
template <typename Fn>
void dispatch_float(DType dtype, Fn&& fn) {
  switch (dtype) {
    case DType::Float32: fn(static_cast<float*>(nullptr)); return;
    case DType::Float64: fn(static_cast<double*>(nullptr)); return;
    default: break;
  }
  throw std::invalid_argument("ma_kernels: unsupported dtype code " +
                              std::to_string(static_cast<int>(dtype)));
}

}  // namespace ma_kernels
