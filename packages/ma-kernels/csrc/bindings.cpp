// The Python module ma_kernels._C: thin wrappers that take integers (data
// pointers, shapes, strides, a CUDA stream handle) so the build needs no torch.
// ma_kernels.ops validates every argument before calling in here.
#include <pybind11/pybind11.h>

#include "l1_features.h"
#ifdef MA_KERNELS_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace py = pybind11;
using namespace ma_kernels;

namespace {

Matrix matrix(std::uintptr_t data, std::int64_t rows, std::int64_t cols, std::int64_t row_stride,
              std::int64_t col_stride) {
  return Matrix{data, rows, cols, row_stride, col_stride};
}

int cuda_device_count() {
#ifdef MA_KERNELS_WITH_CUDA
  int count = 0;
  // No driver or no device reads as zero devices, not as an error.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "ma_kernels compiled kernels (pointer-level API; use ma_kernels.ops)";

#ifdef MA_KERNELS_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("cuda_device_count", &cuda_device_count,
        "Number of CUDA devices our runtime sees (0 without a driver)");

  m.def(
      "l1_features_cpu",
      [](std::uintptr_t book, std::int64_t rows, std::int64_t row_stride, std::int64_t col_stride,
         std::uintptr_t out, int dtype) {
        py::gil_scoped_release no_gil;
        l1_features_cpu(matrix(book, rows, kBookColumns, row_stride, col_stride), out,
                        static_cast<DType>(dtype));
      },
      py::arg("book"), py::arg("rows"), py::arg("row_stride"), py::arg("col_stride"),
      py::arg("out"), py::arg("dtype"));

#ifdef MA_KERNELS_WITH_CUDA
  m.def(
      "l1_features_cuda",
      [](std::uintptr_t book, std::int64_t rows, std::int64_t row_stride, std::int64_t col_stride,
         std::uintptr_t out, int dtype, int device, std::uintptr_t stream) {
        l1_features_cuda(matrix(book, rows, kBookColumns, row_stride, col_stride), out,
                         static_cast<DType>(dtype), device, stream);
      },
      py::arg("book"), py::arg("rows"), py::arg("row_stride"), py::arg("col_stride"),
      py::arg("out"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
#endif
}
