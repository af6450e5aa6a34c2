#include <pybind11/numpy.h>
#include <pybind11/stl.h>

#include <stdexcept>

#include "python/bind.h"
#include "resident_stream.h"

namespace py = pybind11;

namespace ma_kernels::python {

#ifdef MA_KERNELS_WITH_CUDA
namespace {

template <typename T>
using Array = py::array_t<T, py::array::c_style>;

template <typename T>
T* rows_of(Array<T>& a, std::int64_t rows, std::int64_t cols, const char* name) {
  if (a.ndim() != 2 || a.shape(0) != rows || a.shape(1) != cols) {
    throw std::invalid_argument(std::string("resident stream: ") + name + " must be [" +
                                std::to_string(rows) + ", " + std::to_string(cols) + "]");
  }
  return a.mutable_data();
}

// ma_kernels/resident.py checks every argument; this only repacks them.
ResidentStream* make(const Dims& dims, const std::vector<std::int64_t>& dilations,
                     const Pointers& params, const Pointers& keys, const Pointers& values,
                     std::uintptr_t pos, const std::vector<std::int64_t>& instant,
                     const std::vector<std::int64_t>& depth, std::int64_t ofi_levels,
                     const std::vector<std::int64_t>& rolling,
                     const std::vector<std::int64_t>& windows,
                     const std::vector<std::int64_t>& time_windows, std::int64_t levels,
                     const std::array<std::int64_t, 7>& state, std::uintptr_t x_index,
                     std::uintptr_t shift, std::uintptr_t scale, int dt_column, double dt_scale,
                     double limit, int overflow_code, double idle_s, int device,
                     double timeout_s, bool trace) {
  ResidentConfig c{};
  c.model = shape_of(dims, dilations);
  c.spec = stream_spec(instant, depth, ofi_levels, rolling, windows, time_windows);
  c.levels = levels;
  c.inputs = standardise_of(c.model.inputs, x_index, shift, scale, dt_column, dt_scale, limit,
                            overflow_code);
  c.idle_ns = static_cast<std::int64_t>(idle_s * 1e9);
  c.trace = trace;
  ResidentTensors t{};
  t.model = tensors_of(c.model, params, keys, values, 0, 0, 0, pos, 0);
  t.features = stream_state_of(state);
  return new ResidentStream(c, t, device, timeout_s);
}

}  // namespace
#endif

void register_resident_stream(py::module_& m) {
#ifdef MA_KERNELS_WITH_CUDA
  py::class_<ResidentStream>(m, "ResidentStream")
      .def(py::init(&make))
      .def(
          "step",
          [](ResidentStream& s, Array<double> in_f64, Array<std::int64_t> in_i64,
             Array<double> result) {
            const std::int64_t b = in_i64.ndim() == 2 ? in_i64.shape(0) : -1;
            double* f = rows_of(in_f64, b, in_f64.ndim() == 2 ? in_f64.shape(1) : -1, "in_f64");
            std::int64_t* i = rows_of(in_i64, b, 3, "in_i64");
            double* r = rows_of(result, b, result.ndim() == 2 ? result.shape(1) : -1, "result");
            py::gil_scoped_release no_gil;
            s.step(f, i, r);
          },
          py::arg("in_f64"), py::arg("in_i64"), py::arg("result"))
      .def("stop", &ResidentStream::stop)
      .def("stage_times", &ResidentStream::stage_times)
      .def_property_readonly("clusters", &ResidentStream::clusters);
#else
  (void)m;
#endif
}

}  // namespace ma_kernels::python
