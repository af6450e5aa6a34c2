#include <pybind11/stl.h>

#include <stdexcept>
#include <string>

#include "python/bind.h"

namespace py = pybind11;

namespace ma_kernels::python {

StreamStandardise standardise_of(int inputs, std::uintptr_t x_index, std::uintptr_t shift,
                                 std::uintptr_t scale, int dt_column, double dt_scale,
                                 double limit, int overflow_code) {
  return {as<const std::int64_t>(x_index), as<const double>(shift), as<const double>(scale),
          inputs, dt_column, dt_scale, limit, overflow_code};
}

BookFeatureSpec stream_spec(const std::vector<std::int64_t>& instant,
                            const std::vector<std::int64_t>& depth, std::int64_t ofi_levels,
                            const std::vector<std::int64_t>& rolling,
                            const std::vector<std::int64_t>& windows,
                            const std::vector<std::int64_t>& time_windows) {
  const BookFeatureSpec spec = book_spec(instant, depth, ofi_levels, rolling, windows,
                                         time_windows);
  if (spec.columns() > kStreamMaxColumns) {
    throw std::invalid_argument("stream: at most " + std::to_string(kStreamMaxColumns) +
                                " feature columns");
  }
  return spec;
}

namespace {

// (x, dt, accepted, code, overflow) pointers.
using Outputs = std::array<std::uintptr_t, 5>;

StreamInputsOut outputs_of(const Outputs& o) {
  return {as<float>(o[0]), as<float>(o[1]), as<std::uint8_t>(o[2]), as<std::int64_t>(o[3]),
          as<std::uint8_t>(o[4])};
}

// One call's arguments, as the kernels take them.
struct Call {
  StreamRound round;
  StreamState state;
  BookFeatureSpec spec;
  StreamStandardise standardise;
  StreamInputsOut out;
};

// ma_kernels/stream.py checks every argument; this only repacks them.
Call call_of(std::uintptr_t f64, std::uintptr_t i64, std::int64_t batch, std::int64_t levels,
             const std::array<std::int64_t, 7>& state, const std::vector<std::int64_t>& instant,
             const std::vector<std::int64_t>& depth, std::int64_t ofi_levels,
             const std::vector<std::int64_t>& rolling, const std::vector<std::int64_t>& windows,
             const std::vector<std::int64_t>& time_windows, int inputs, std::uintptr_t x_index,
             std::uintptr_t shift, std::uintptr_t scale, int dt_column, double dt_scale,
             double limit, int overflow_code, const Outputs& out) {
  return {{as<const double>(f64), as<const std::int64_t>(i64), batch, levels},
          stream_state_of(state),
          stream_spec(instant, depth, ofi_levels, rolling, windows, time_windows),
          standardise_of(inputs, x_index, shift, scale, dt_column, dt_scale, limit,
                         overflow_code),
          outputs_of(out)};
}

}  // namespace

void register_stream_inputs(py::module_& m) {
  // One entry for both devices: device -1 is the CPU.
  m.def("stream_inputs",
        [](std::uintptr_t f64, std::uintptr_t i64, std::int64_t batch, std::int64_t levels,
           const std::array<std::int64_t, 7>& state, const std::vector<std::int64_t>& instant,
           const std::vector<std::int64_t>& depth, std::int64_t ofi_levels,
           const std::vector<std::int64_t>& rolling, const std::vector<std::int64_t>& windows,
           const std::vector<std::int64_t>& time_windows, int inputs, std::uintptr_t x_index,
           std::uintptr_t shift, std::uintptr_t scale, int dt_column, double dt_scale,
           double limit, int overflow_code, const Outputs& out, int device,
           std::uintptr_t stream) {
          const Call c = call_of(f64, i64, batch, levels, state, instant, depth, ofi_levels,
                                 rolling, windows, time_windows, inputs, x_index, shift, scale,
                                 dt_column, dt_scale, limit, overflow_code, out);
          if (device < 0) {
            stream_inputs_cpu(c.round, c.state, c.spec, c.standardise, c.out);
            return;
          }
#ifdef MA_KERNELS_WITH_CUDA
          stream_inputs_cuda(c.round, c.state, c.spec, c.standardise, c.out, device, stream);
#else
          (void)stream;
          no_cuda();
#endif
        });
}

}  // namespace ma_kernels::python
