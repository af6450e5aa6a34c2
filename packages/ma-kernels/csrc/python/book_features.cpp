#include <pybind11/stl.h>

#include <array>
#include <vector>

#include "book_features.h"
#include "python/bind.h"

namespace py = pybind11;

namespace ma_kernels::python {
namespace {

using Strided = std::array<std::int64_t, 3>;  // data pointer, row stride, column stride

// ma_kernels/book.py checks every argument; this only repacks them.
BookSeries series_of(std::int64_t rows, std::int64_t levels, const std::vector<Strided>& book,
                     const std::vector<Strided>& columns) {
  auto matrix = [&](const Strided& m) {
    return Matrix{static_cast<std::uintptr_t>(m[0]), rows, levels, m[1], m[2]};
  };
  auto column = [&](const Strided& c) { return Column{static_cast<std::uintptr_t>(c[0]), c[1]}; };
  return {rows, levels, matrix(book.at(0)), matrix(book.at(1)), matrix(book.at(2)),
          matrix(book.at(3)), column(columns.at(0)), column(columns.at(1)),
          column(columns.at(2)), column(columns.at(3))};
}

template <typename T, std::size_t N>
int fill(T (&to)[N], const std::vector<std::int64_t>& from, const char* what) {
  if (from.size() > N) throw std::invalid_argument(std::string("too many ") + what);
  for (std::size_t i = 0; i < from.size(); ++i) to[i] = static_cast<T>(from[i]);
  return static_cast<int>(from.size());
}

}  // namespace

BookFeatureSpec book_spec(const std::vector<std::int64_t>& instant,
                          const std::vector<std::int64_t>& depth, std::int64_t ofi_levels,
                          const std::vector<std::int64_t>& rolling,
                          const std::vector<std::int64_t>& windows,
                          const std::vector<std::int64_t>& time_windows) {
  BookFeatureSpec spec;
  spec.instant_count = fill(spec.instant, instant, "instant features");
  spec.depth_count = fill(spec.depth, depth, "depth imbalances");
  spec.ofi_levels = ofi_levels;
  spec.rolling_count = fill(spec.rolling, rolling, "rolling features");
  if (spec.rolling_count) {  // windows without rolling columns would be summed for nothing
    spec.window_count = fill(spec.windows, windows, "event windows");
    spec.time_window_count = fill(spec.time_windows, time_windows, "time windows");
  }
  return spec;
}

void register_book_features(py::module_& m) {
  m.def(
      "book_features_cpu",
      [](std::int64_t rows, std::int64_t levels, const std::vector<Strided>& book,
         const std::vector<Strided>& columns, const std::vector<std::int64_t>& instant,
         const std::vector<std::int64_t>& depth, std::int64_t ofi_levels,
         const std::vector<std::int64_t>& rolling, const std::vector<std::int64_t>& windows,
         const std::vector<std::int64_t>& time_windows, int dtype, std::uintptr_t out,
         int out_dtype) {
        const BookSeries series = series_of(rows, levels, book, columns);
        const BookFeatureSpec spec = book_spec(instant, depth, ofi_levels, rolling, windows,
                                             time_windows);
        py::gil_scoped_release no_gil;
        book_features_cpu(series, static_cast<DType>(dtype), spec, out,
                          static_cast<DType>(out_dtype));
      },
      py::arg("rows"), py::arg("levels"), py::arg("book"), py::arg("columns"),
      py::arg("instant"), py::arg("depth"), py::arg("ofi_levels"), py::arg("rolling"),
      py::arg("windows"), py::arg("time_windows"), py::arg("dtype"), py::arg("out"),
      py::arg("out_dtype"));
#ifdef MA_KERNELS_WITH_CUDA
  m.def(
      "book_features_cuda",
      [](std::int64_t rows, std::int64_t levels, const std::vector<Strided>& book,
         const std::vector<Strided>& columns, const std::vector<std::int64_t>& instant,
         const std::vector<std::int64_t>& depth, std::int64_t ofi_levels,
         const std::vector<std::int64_t>& rolling, const std::vector<std::int64_t>& windows,
         const std::vector<std::int64_t>& time_windows, int dtype, std::uintptr_t out,
         int out_dtype, std::uintptr_t scratch, int device, std::uintptr_t stream) {
        book_features_cuda(series_of(rows, levels, book, columns), static_cast<DType>(dtype),
                           book_spec(instant, depth, ofi_levels, rolling, windows, time_windows),
                           out, static_cast<DType>(out_dtype), scratch, device, stream);
      },
      py::arg("rows"), py::arg("levels"), py::arg("book"), py::arg("columns"),
      py::arg("instant"), py::arg("depth"), py::arg("ofi_levels"), py::arg("rolling"),
      py::arg("windows"), py::arg("time_windows"), py::arg("dtype"), py::arg("out"),
      py::arg("out_dtype"), py::arg("scratch"), py::arg("device"), py::arg("stream"));
  m.def("book_features_cuda_scratch", &book_features_cuda_scratch, py::arg("rows"),
        "float64s of device scratch book_features_cuda needs for `rows` rows");
#endif
}

}  // namespace ma_kernels::python
