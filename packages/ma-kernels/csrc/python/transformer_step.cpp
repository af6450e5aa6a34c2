#include <pybind11/stl.h>

#include <array>
#include <stdexcept>
#include <vector>

#include "python/bind.h"

namespace py = pybind11;

namespace ma_kernels::python {

StepShape shape_of(const Dims& d, const std::vector<std::int64_t>& dilations) {
  StepShape s{};
  s.batch = d[0];
  s.inputs = int(d[1]);
  s.model_dim = int(d[2]);
  s.heads = int(d[3]);
  s.hidden = int(d[4]);
  s.frequencies = int(d[5]);
  s.layers = int(d[6]);
  s.horizons = int(d[7]);
  s.regression = int(d[8]);
  s.window = int(d[9]);
  if (s.layers > kStepMaxLayers || dilations.size() != std::size_t(s.layers)) {
    throw std::invalid_argument("transformer_step: one dilation per layer, at most 16 layers");
  }
  for (int l = 0; l < s.layers; ++l) s.dilation[l] = int(dilations[l]);
  return s;
}

// ma_kernels/step.py orders the parameters: embed, then each layer's, then the heads'.
StepTensors tensors_of(const StepShape& s, const Pointers& params, const Pointers& keys,
                       const Pointers& values, std::uintptr_t x, std::uintptr_t dt,
                       std::uintptr_t active, std::uintptr_t pos, std::uintptr_t out) {
  const std::size_t want = kStepEmbedCount + std::size_t(s.layers) * kStepLayerCount +
                           kStepHeadCount;
  if (params.size() != want || keys.size() != std::size_t(s.layers) ||
      values.size() != std::size_t(s.layers)) {
    throw std::invalid_argument("transformer_step: wrong number of parameters or caches");
  }
  StepTensors t{};
  std::size_t i = 0;
  for (auto& p : t.embed) p = as<const float>(params[i++]);
  for (int l = 0; l < s.layers; ++l) {
    for (auto& p : t.layer[l]) p = as<const float>(params[i++]);
    t.keys[l] = as<float>(keys[l]);
    t.values[l] = as<float>(values[l]);
  }
  for (auto& p : t.head) p = as<const float>(params[i++]);
  t.x = as<const float>(x);
  t.dt = as<const float>(dt);
  t.active = as<const std::uint8_t>(active);
  t.pos = as<std::int64_t>(pos);
  t.out = as<float>(out);
  return t;
}

void register_transformer_step(py::module_& m) {
  m.def(
      "transformer_step_cpu",
      [](const Dims& dims, const std::vector<std::int64_t>& dilations, const Pointers& params,
         const Pointers& keys, const Pointers& values, std::uintptr_t x, std::uintptr_t dt,
         std::uintptr_t active, std::uintptr_t pos, std::uintptr_t out) {
        const StepShape s = shape_of(dims, dilations);
        const StepTensors t = tensors_of(s, params, keys, values, x, dt, active, pos, out);
        py::gil_scoped_release no_gil;
        transformer_step_cpu(s, t);
      },
      py::arg("dims"), py::arg("dilations"), py::arg("params"), py::arg("keys"),
      py::arg("values"), py::arg("x"), py::arg("dt"), py::arg("active"), py::arg("pos"),
      py::arg("out"));
#ifdef MA_KERNELS_WITH_CUDA
  m.def("transformer_step_cuda_supports", &transformer_step_cuda_supports, py::arg("head_dim"));
  m.def(
      "transformer_step_cuda_workspace",
      [](const Dims& dims, const std::vector<std::int64_t>& dilations) {
        return transformer_step_cuda_workspace(shape_of(dims, dilations));
      },
      py::arg("dims"), py::arg("dilations"));
  m.def(
      "transformer_step_cuda",
      [](const Dims& dims, const std::vector<std::int64_t>& dilations, const Pointers& params,
         const Pointers& keys, const Pointers& values, std::uintptr_t x, std::uintptr_t dt,
         std::uintptr_t active, std::uintptr_t pos, std::uintptr_t out, std::uintptr_t workspace,
         int device, std::uintptr_t stream) {
        const StepShape s = shape_of(dims, dilations);
        transformer_step_cuda(s, tensors_of(s, params, keys, values, x, dt, active, pos, out),
                              as<float>(workspace), device, stream);
      },
      py::arg("dims"), py::arg("dilations"), py::arg("params"), py::arg("keys"),
      py::arg("values"), py::arg("x"), py::arg("dt"), py::arg("active"), py::arg("pos"),
      py::arg("out"), py::arg("workspace"), py::arg("device"), py::arg("stream"));
#endif
}

}  // namespace ma_kernels::python
