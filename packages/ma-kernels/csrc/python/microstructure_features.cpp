#include "microstructure_features.h"

#include "python/bind.h"

namespace py = pybind11;

namespace ma_kernels::python {

void register_microstructure_features(py::module_& m) {
  m.def(
      "microstructure_features_cpu",
      [](std::uintptr_t table, std::int64_t rows, std::int64_t row_stride, std::int64_t col_stride,
         std::int64_t window, std::uintptr_t out, int dtype) {
        py::gil_scoped_release no_gil;
        microstructure_features_cpu({table, rows, kMicrostructureInputs, row_stride, col_stride},
                                    window, out, static_cast<DType>(dtype));
      },
      py::arg("table"), py::arg("rows"), py::arg("row_stride"), py::arg("col_stride"),
      py::arg("window"), py::arg("out"), py::arg("dtype"));
#ifdef MA_KERNELS_WITH_CUDA
  m.def(
      "microstructure_features_cuda",
      [](std::uintptr_t table, std::int64_t rows, std::int64_t row_stride, std::int64_t col_stride,
         std::int64_t window, std::uintptr_t out, int dtype, int device, std::uintptr_t stream) {
        microstructure_features_cuda({table, rows, kMicrostructureInputs, row_stride, col_stride},
                                     window, out, static_cast<DType>(dtype), device, stream);
      },
      py::arg("table"), py::arg("rows"), py::arg("row_stride"), py::arg("col_stride"),
      py::arg("window"), py::arg("out"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
#endif
}

}  // namespace ma_kernels::python
