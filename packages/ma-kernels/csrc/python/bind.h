// Binding entry points, one per kernel family. They take integers (data
// pointers, shapes, strides, a CUDA stream handle) so the build needs no
// torch; ma_kernels validates every argument before calling in.
#pragma once

#include <pybind11/pybind11.h>

#include <cstdint>
#include <vector>

#include "book_features.h"

namespace ma_kernels::python {

void register_book_features(pybind11::module_& m);
void register_book_stream(pybind11::module_& m);
void register_lob_simulator(pybind11::module_& m);
void register_sliding_window_attention(pybind11::module_& m);
void register_transformer_step(pybind11::module_& m);

// The feature spec as the kernels take it, from the lists ma_kernels/book.py passes.
BookFeatureSpec book_spec(const std::vector<std::int64_t>& instant,
                          const std::vector<std::int64_t>& depth, std::int64_t ofi_levels,
                          const std::vector<std::int64_t>& rolling,
                          const std::vector<std::int64_t>& windows,
                          const std::vector<std::int64_t>& time_windows);

}  // namespace ma_kernels::python
