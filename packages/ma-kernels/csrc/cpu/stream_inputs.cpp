// stream_inputs on the CPU: the instruments one after another (a round is
// one tick per instrument; the ring sums are the only loop of any length).
#include "stream_inputs.h"

namespace ma_kernels {

void stream_inputs_cpu(const StreamRound& round, const StreamState& state,
                       const BookFeatureSpec& spec, const StreamStandardise& z,
                       const StreamInputsOut& out) {
  for (std::int64_t b = 0; b < round.batch; ++b) {
    if (!round.wanted(b)) {
      book::skip_inputs(z, b, out);
      continue;
    }
    double sums[2 * kMaxSpecEntries * book::kTerms] = {};
    book::add_ring_sums(round.events(out.accepted), state, spec, b, 0, 1, sums);
    out.accepted[b] = 1;
    book::finish_inputs(round, state, spec, z, b, sums, out);
  }
}

}  // namespace ma_kernels
