// A round's row of one instrument to the model's inputs, by one warp: its
// lanes sum the instrument's ring, lane 0 does the rest (stream_inputs.h).
// Shared by the graph path's kernel and the resident kernel.
#pragma once

#include "stream_inputs.h"

namespace ma_kernels {

__device__ inline void stream_inputs_warp(const StreamRound& round, const StreamState& st,
                                          const BookFeatureSpec& spec,
                                          const StreamStandardise& z, const StreamInputsOut& out,
                                          std::int64_t b, int lane) {
  if (!round.wanted(b)) {  // the same for the whole warp
    if (lane == 0) book::skip_inputs(z, b, out);
    return;
  }
  const int windows = spec.window_count + spec.time_window_count;
  double sums[2 * kMaxSpecEntries * book::kTerms];
  for (int i = 0; i < windows * book::kTerms; ++i) sums[i] = 0.0;
  if (windows) {
    book::add_ring_sums(round.events(out.accepted), st, spec, b, lane, 32, sums);
    for (int i = 0; i < windows * book::kTerms; ++i) {
      for (int offset = 16; offset > 0; offset /= 2) {
        sums[i] += __shfl_xor_sync(0xffffffffu, sums[i], offset);
      }
    }
  }
  if (lane == 0) {
    out.accepted[b] = 1;  // stream_rolling flags a time window's overflow where active
    book::finish_inputs(round, st, spec, z, b, sums, out);
  }
}

}  // namespace ma_kernels
