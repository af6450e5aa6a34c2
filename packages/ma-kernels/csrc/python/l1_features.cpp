#include "l1_features.h"

#include "python/bind.h"

namespace py = pybind11;

namespace ma_kernels::python {

void register_l1_features(py::module_& m) {
  m.def(
      "l1_features_cpu",
      [](std::uintptr_t book, std::int64_t rows, std::int64_t row_stride, std::int64_t col_stride,
         std::uintptr_t out, int dtype) {
        py::gil_scoped_release no_gil;
        l1_features_cpu({book, rows, kBookColumns, row_stride, col_stride}, out,
                        static_cast<DType>(dtype));
      },
      py::arg("book"), py::arg("rows"), py::arg("row_stride"), py::arg("col_stride"),
      py::arg("out"), py::arg("dtype"));
#ifdef MA_KERNELS_WITH_CUDA
  m.def(
      "l1_features_cuda",
      [](std::uintptr_t book, std::int64_t rows, std::int64_t row_stride, std::int64_t col_stride,
         std::uintptr_t out, int dtype, int device, std::uintptr_t stream) {
        l1_features_cuda({book, rows, kBookColumns, row_stride, col_stride}, out,
                         static_cast<DType>(dtype), device, stream);
      },
      py::arg("book"), py::arg("rows"), py::arg("row_stride"), py::arg("col_stride"),
      py::arg("out"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
#endif
}

}  // namespace ma_kernels::python
