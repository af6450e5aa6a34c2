#include "sliding_window_attention.h"

#include <pybind11/stl.h>

#include <array>

#include "python/bind.h"

namespace py = pybind11;

namespace ma_kernels::python {
namespace {

// A [B, H, L, D] tensor arrives as (data_ptr, stride_b, stride_h, stride_l).
using TensorArg = std::array<std::int64_t, 4>;

Bhld bhld(const TensorArg& t) {
  return {static_cast<std::uintptr_t>(t[0]), t[1], t[2], t[3]};
}

// (batch, heads, kv_heads, length, head_dim, left, right, dilation)
using ShapeArg = std::array<std::int64_t, 8>;

AttentionProblem problem(const ShapeArg& s, double scale) {
  return {s[0], s[1], s[2], s[3], s[4], s[5], s[6], s[7], scale};
}

AttentionForward forward_args(const TensorArg& q, const TensorArg& k, const TensorArg& v,
                              const TensorArg& out, std::uintptr_t lse) {
  return {bhld(q), bhld(k), bhld(v), bhld(out), lse};
}

AttentionBackward backward_args(const TensorArg& q, const TensorArg& k, const TensorArg& v,
                                const TensorArg& out, const TensorArg& dout, const TensorArg& dq,
                                const TensorArg& dk, const TensorArg& dv, std::uintptr_t lse,
                                std::uintptr_t delta) {
  return {bhld(q),  bhld(k),  bhld(v),  bhld(out), bhld(dout),
          bhld(dq), bhld(dk), bhld(dv), lse,       delta};
}

}  // namespace

void register_sliding_window_attention(py::module_& m) {
  m.def(
      "sliding_window_attention_forward_cpu",
      [](const ShapeArg& shape, double scale, const TensorArg& q, const TensorArg& k,
         const TensorArg& v, const TensorArg& out, std::uintptr_t lse, int dtype) {
        py::gil_scoped_release no_gil;
        sliding_window_attention_forward_cpu(problem(shape, scale),
                                             forward_args(q, k, v, out, lse),
                                             static_cast<DType>(dtype));
      },
      py::arg("shape"), py::arg("scale"), py::arg("q"), py::arg("k"), py::arg("v"),
      py::arg("out"), py::arg("lse"), py::arg("dtype"));
  m.def(
      "sliding_window_attention_backward_cpu",
      [](const ShapeArg& shape, double scale, const TensorArg& q, const TensorArg& k,
         const TensorArg& v, const TensorArg& out, const TensorArg& dout, const TensorArg& dq,
         const TensorArg& dk, const TensorArg& dv, std::uintptr_t lse, std::uintptr_t delta,
         int dtype) {
        py::gil_scoped_release no_gil;
        sliding_window_attention_backward_cpu(
            problem(shape, scale), backward_args(q, k, v, out, dout, dq, dk, dv, lse, delta),
            static_cast<DType>(dtype));
      },
      py::arg("shape"), py::arg("scale"), py::arg("q"), py::arg("k"), py::arg("v"),
      py::arg("out"), py::arg("dout"), py::arg("dq"), py::arg("dk"), py::arg("dv"),
      py::arg("lse"), py::arg("delta"), py::arg("dtype"));
#ifdef MA_KERNELS_WITH_CUDA
  m.def(
      "sliding_window_attention_forward_cuda",
      [](const ShapeArg& shape, double scale, const TensorArg& q, const TensorArg& k,
         const TensorArg& v, const TensorArg& out, std::uintptr_t lse, int dtype, int device,
         std::uintptr_t stream) {
        return sliding_window_attention_forward_cuda(problem(shape, scale),
                                              forward_args(q, k, v, out, lse),
                                              static_cast<DType>(dtype), device, stream);
      },
      py::arg("shape"), py::arg("scale"), py::arg("q"), py::arg("k"), py::arg("v"),
      py::arg("out"), py::arg("lse"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
  m.def(
      "sliding_window_attention_backward_cuda",
      [](const ShapeArg& shape, double scale, const TensorArg& q, const TensorArg& k,
         const TensorArg& v, const TensorArg& out, const TensorArg& dout, const TensorArg& dq,
         const TensorArg& dk, const TensorArg& dv, std::uintptr_t lse, std::uintptr_t delta,
         int dtype, int device, std::uintptr_t stream) {
        return sliding_window_attention_backward_cuda(
            problem(shape, scale), backward_args(q, k, v, out, dout, dq, dk, dv, lse, delta),
            static_cast<DType>(dtype), device, stream);
      },
      py::arg("shape"), py::arg("scale"), py::arg("q"), py::arg("k"), py::arg("v"),
      py::arg("out"), py::arg("dout"), py::arg("dq"), py::arg("dk"), py::arg("dv"),
      py::arg("lse"), py::arg("delta"), py::arg("dtype"), py::arg("device"), py::arg("stream"));
#endif
}

}  // namespace ma_kernels::python
