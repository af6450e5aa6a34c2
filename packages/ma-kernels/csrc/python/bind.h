// Binding entry points, one per kernel family. They take integers (data
// pointers, shapes, strides, a CUDA stream handle) so the build needs no
// torch; ma_kernels validates every argument before calling in.
#pragma once

#include <pybind11/pybind11.h>

namespace ma_kernels::python {

void register_book_features(pybind11::module_& m);
void register_lob_simulator(pybind11::module_& m);
void register_sliding_window_attention(pybind11::module_& m);
void register_transformer_step(pybind11::module_& m);

}  // namespace ma_kernels::python
