// Binding entry points, one per kernel family. They take integers (data
// pointers, shapes, strides, a CUDA stream handle) so the build needs no
// torch; ma_kernels validates every argument before calling in.
#pragma once

#include <pybind11/pybind11.h>

#include <array>
#include <cstdint>
#include <stdexcept>
#include <vector>

#include "book_features.h"
#include "book_stream.h"
#include "stream_inputs.h"
#include "transformer_step.h"

namespace ma_kernels::python {

void register_book_features(pybind11::module_& m);
void register_book_stream(pybind11::module_& m);
void register_lob_simulator(pybind11::module_& m);
void register_sliding_window_attention(pybind11::module_& m);
void register_transformer_step(pybind11::module_& m);
void register_resident_stream(pybind11::module_& m);
void register_stream_inputs(pybind11::module_& m);

// (batch, inputs, model_dim, heads, hidden, frequencies, layers, horizons, regression, window)
using Dims = std::array<std::int64_t, 10>;
using Pointers = std::vector<std::uintptr_t>;

template <typename T>
T* as(std::uintptr_t p) {
  return reinterpret_cast<T*>(p);
}

// What an entry says when asked for a CUDA device in a build without CUDA kernels.
[[noreturn]] inline void no_cuda() {
  throw std::invalid_argument("ma_kernels: this build has no CUDA kernels");
}

// The model's sizes and pointers as ma_kernels/step.py passes them.
StepShape shape_of(const Dims& d, const std::vector<std::int64_t>& dilations);
StepTensors tensors_of(const StepShape& s, const Pointers& params, const Pointers& keys,
                       const Pointers& values, std::uintptr_t x, std::uintptr_t dt,
                       std::uintptr_t active, std::uintptr_t pos, std::uintptr_t out);
// A stream's state from the pointers of ma_kernels.book_stream.STATE, capacity, max_events.
StreamState stream_state_of(const std::array<std::int64_t, 7>& s);
// book_spec, refusing more columns than the streaming kernels hold.
BookFeatureSpec stream_spec(const std::vector<std::int64_t>& instant,
                            const std::vector<std::int64_t>& depth, std::int64_t ofi_levels,
                            const std::vector<std::int64_t>& rolling,
                            const std::vector<std::int64_t>& windows,
                            const std::vector<std::int64_t>& time_windows);
// The standardisation as ma_kernels/stream.py passes it (checks the column count).
StreamStandardise standardise_of(int inputs, std::uintptr_t x_index, std::uintptr_t shift,
                                 std::uintptr_t scale, int dt_column, double dt_scale,
                                 double limit, int overflow_code);

// The feature spec as the kernels take it, from the lists ma_kernels/book.py passes.
BookFeatureSpec book_spec(const std::vector<std::int64_t>& instant,
                          const std::vector<std::int64_t>& depth, std::int64_t ofi_levels,
                          const std::vector<std::int64_t>& rolling,
                          const std::vector<std::int64_t>& windows,
                          const std::vector<std::int64_t>& time_windows);

}  // namespace ma_kernels::python
