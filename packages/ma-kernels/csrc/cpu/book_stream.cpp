// book_features one event at a time on the CPU (csrc/book_stream.h).
#include <algorithm>

#include "book_stream.h"
#include "cpu/parallel.h"

namespace ma_kernels {

void book_tick_reasons_cpu(const StreamEvents& events, const StreamState& state,
                           const Column& event, std::int8_t* reasons) {
  for (std::int64_t b = 0; b < events.batch; ++b) {
    reasons[b] = static_cast<std::int8_t>(book::tick_reason(events, state, event, b));
  }
}

void book_stream_columns_cpu(const StreamEvents& events, const StreamState& state,
                             const BookFeatureSpec& spec, const StreamOut& out) {
  const std::int64_t columns = spec.columns();
  // Each instrument sums its ring: split the instruments when that is long.
  const std::int64_t grain = std::max<std::int64_t>(1, 4096 / state.capacity);
  parallel_for(events.batch, grain, [&](std::int64_t begin, std::int64_t end) {
    for (std::int64_t b = begin; b < end; ++b) {
      double* row = out.columns + b * columns;
      double* terms = out.terms + b * book::kTerms;
      double sums[2 * kMaxSpecEntries * book::kTerms] = {};
      book::stream_event(events, state, spec, b, row, terms);
      book::add_ring_sums(events, state, spec, b, 0, 1, sums);
      book::stream_rolling(events, state, spec, b, sums, terms, row, out.overflow);
    }
  });
}

void book_stream_commit_cpu(const StreamEvents& events, const StreamState& state,
                            const double* terms) {
  for (std::int64_t b = 0; b < events.batch; ++b) {
    book::stream_commit(events, state, terms + b * book::kTerms, b);
  }
}

}  // namespace ma_kernels
