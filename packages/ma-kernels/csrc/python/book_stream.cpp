#include <pybind11/stl.h>

#include <array>
#include <vector>

#include "book_stream.h"
#include "python/bind.h"

namespace py = pybind11;

namespace ma_kernels::python {
namespace {

using Strided = std::array<std::int64_t, 3>;  // data pointer, row stride, column stride
// (book, time, count, ring, times) pointers, then capacity and max_events.
using State = std::array<std::int64_t, 7>;

// ma_kernels/book.py checks every argument; this only repacks them.
StreamEvents events_of(std::int64_t batch, std::int64_t levels, const std::vector<Strided>& book,
                       const std::vector<Strided>& columns, std::uintptr_t active) {
  auto matrix = [&](const Strided& m) {
    return Matrix{static_cast<std::uintptr_t>(m[0]), batch, levels, m[1], m[2]};
  };
  auto column = [&](const Strided& c) { return Column{static_cast<std::uintptr_t>(c[0]), c[1]}; };
  return {batch, levels, matrix(book.at(0)), matrix(book.at(1)), matrix(book.at(2)),
          matrix(book.at(3)), column(columns.at(0)), column(columns.at(1)),
          column(columns.at(2)), column(columns.at(3)),
          reinterpret_cast<const std::uint8_t*>(active)};
}

StreamOut out_of(std::uintptr_t columns, std::uintptr_t terms, std::uintptr_t overflow) {
  return {reinterpret_cast<double*>(columns), reinterpret_cast<double*>(terms),
          reinterpret_cast<std::uint8_t*>(overflow)};
}

}  // namespace

StreamState stream_state_of(const State& s) {
  return {reinterpret_cast<double*>(s[0]), reinterpret_cast<std::int64_t*>(s[1]),
          reinterpret_cast<std::int64_t*>(s[2]), reinterpret_cast<double*>(s[3]),
          reinterpret_cast<std::int64_t*>(s[4]), s[5], s[6]};
}

// Each op has one entry for both devices: device -1 is the CPU.
void register_book_stream(py::module_& m) {
  m.def("book_stream_columns",
        [](std::int64_t batch, std::int64_t levels, const std::vector<Strided>& book,
           const std::vector<Strided>& columns, std::uintptr_t active, const State& state,
           const std::vector<std::int64_t>& instant, const std::vector<std::int64_t>& depth,
           std::int64_t ofi_levels, const std::vector<std::int64_t>& rolling,
           const std::vector<std::int64_t>& windows,
           const std::vector<std::int64_t>& time_windows, std::uintptr_t out,
           std::uintptr_t terms, std::uintptr_t overflow, int device, std::uintptr_t stream) {
          const StreamEvents e = events_of(batch, levels, book, columns, active);
          const BookFeatureSpec spec =
              book_spec(instant, depth, ofi_levels, rolling, windows, time_windows);
          if (device < 0) {
            py::gil_scoped_release no_gil;
            book_stream_columns_cpu(e, stream_state_of(state), spec,
                                    out_of(out, terms, overflow));
            return;
          }
#ifdef MA_KERNELS_WITH_CUDA
          book_stream_columns_cuda(e, stream_state_of(state), spec, out_of(out, terms, overflow),
                                   device, stream);
#else
          (void)stream;
          no_cuda();
#endif
        });
  m.def("book_tick_reasons",
        [](std::int64_t batch, std::int64_t levels, const std::vector<Strided>& book,
           const std::vector<Strided>& columns, const State& state, const Strided& event,
           std::uintptr_t reasons, int device, std::uintptr_t stream) {
          const StreamEvents e = events_of(batch, levels, book, columns, 0);
          const Column codes{static_cast<std::uintptr_t>(event[0]), event[1]};
          auto* out = reinterpret_cast<std::int8_t*>(reasons);
          if (device < 0) {
            book_tick_reasons_cpu(e, stream_state_of(state), codes, out);
            return;
          }
#ifdef MA_KERNELS_WITH_CUDA
          book_tick_reasons_cuda(e, stream_state_of(state), codes, out, device, stream);
#else
          (void)stream;
          no_cuda();
#endif
        });
  m.def("book_stream_commit",
        [](std::int64_t batch, std::int64_t levels, const std::vector<Strided>& book,
           const std::vector<Strided>& columns, std::uintptr_t active, const State& state,
           std::uintptr_t terms, int device, std::uintptr_t stream) {
          const StreamEvents e = events_of(batch, levels, book, columns, active);
          const auto* t = reinterpret_cast<const double*>(terms);
          if (device < 0) {
            book_stream_commit_cpu(e, stream_state_of(state), t);
            return;
          }
#ifdef MA_KERNELS_WITH_CUDA
          book_stream_commit_cuda(e, stream_state_of(state), t, device, stream);
#else
          (void)stream;
          no_cuda();
#endif
        });
}

}  // namespace ma_kernels::python
