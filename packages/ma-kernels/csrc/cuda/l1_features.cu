#include <algorithm>

#include "cuda/check.cuh"
#include "l1_features.h"

namespace ma_kernels {
namespace {

template <typename T>
__global__ void l1_features_kernel(const T* __restrict__ book, std::int64_t rows,
                                   std::int64_t row_stride, std::int64_t col_stride,
                                   T* __restrict__ out) {
  const std::int64_t stride = std::int64_t(gridDim.x) * blockDim.x;
  for (std::int64_t i = std::int64_t(blockIdx.x) * blockDim.x + threadIdx.x; i < rows;
       i += stride) {
    const L1Quote<T> now = load_quote(book, i, row_stride, col_stride);
    if (i == 0) {
      l1_features_row<T>(now, nullptr, out);
    } else {
      const L1Quote<T> before = load_quote(book, i - 1, row_stride, col_stride);
      l1_features_row(now, &before, out + i * kL1Features);
    }
  }
}

}  // namespace

void l1_features_cuda(const Matrix& book, std::uintptr_t out, DType dtype, int device,
                      std::uintptr_t stream) {
  if (book.rows == 0) return;
  cudaStream_t s = use_device(device, stream);
  constexpr int kThreads = 256;
  const std::int64_t blocks = std::min<std::int64_t>((book.rows + kThreads - 1) / kThreads, 65535);
  dispatch_float(dtype, [&](auto* type_tag) {
    using T = std::remove_pointer_t<decltype(type_tag)>;
    l1_features_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, s>>>(
        reinterpret_cast<const T*>(book.data), book.rows, book.row_stride, book.col_stride,
        reinterpret_cast<T*>(out));
  });
  cuda_check(cudaGetLastError(), "l1_features kernel launch");
}

}  // namespace ma_kernels
