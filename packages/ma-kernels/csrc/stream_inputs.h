// A round of raw ticks to the model's inputs, one instrument per row: the
// tick's checks (book::tick_reason), its features (book_stream.h), their
// standardisation with the training statistics, the refusal of inputs the
// model would overflow on, and the commit of each accepted tick into its
// instrument's feature state. One function for the CPU, the graph path's
// kernel and the resident kernel, so all three refuse and compute alike.
#pragma once

#include <cstdint>

#include "book_stream.h"

namespace ma_kernels {

constexpr int kStreamMaxColumns = 128;  // feature columns a spec may have here

// A round's rows: per instrument, float64 book (bid, bid size, ask, ask size,
// `levels` each) then trade (price, size, side); int64 time, active flag and
// event type.
struct StreamRound {
  const double* f64;  // [B, 4 levels + 3]
  const std::int64_t* i64;  // [B, 3]
  std::int64_t batch, levels;

  MA_HOST_DEVICE std::int64_t width() const { return 4 * levels + 3; }
  MA_HOST_DEVICE bool wanted(std::int64_t b) const { return i64[b * 3 + 1] != 0; }
  MA_HOST_DEVICE Column event() const {
    return {reinterpret_cast<std::uintptr_t>(i64 + 2), 3};
  }
  // The rows as the stream functions read them; `active` flags per instrument.
  MA_HOST_DEVICE StreamEvents events(const std::uint8_t* active) const {
    const auto at = [&](const void* p, std::int64_t stride) {
      return Column{reinterpret_cast<std::uintptr_t>(p), stride};
    };
    const auto side = [&](int k) {
      return Matrix{reinterpret_cast<std::uintptr_t>(f64 + k * levels), batch, levels, width(),
                    1};
    };
    const double* trade = f64 + 4 * levels;
    return {batch, levels, side(0), side(1), side(2), side(3), at(trade, width()),
            at(trade + 1, width()), at(trade + 2, width()), at(i64, 3), active};
  }
};

// How the feature columns become the model's inputs.
struct StreamStandardise {
  const std::int64_t* x_index;  // [inputs]: the column of each model input
  const double* shift;          // [inputs]: input = (column - shift) * scale
  const double* scale;
  int inputs;
  int dt_column;  // the model's dt = column / dt_scale
  double dt_scale;
  double limit;        // a standardised input (or dt) beyond this is refused...
  int overflow_code;   // ...with this reason code
};

// Per instrument: the model's inputs, whether the tick was accepted, and its
// reason code (0 if accepted or not active); overflow [B, time windows] is
// scratch for the time windows' flags (the NaN columns carry them).
struct StreamInputsOut {
  float* x;  // [B, inputs]
  float* dt;
  std::uint8_t* accepted;
  std::int64_t* code;
  std::uint8_t* overflow;
};

namespace book {

// The rest of instrument b's row once `sums` holds its ring sums (and
// out.accepted[b] its active flag): columns, standardisation, refusal, commit.
MA_HOST_DEVICE void finish_inputs(const StreamRound& round, const StreamState& st,
                                  const BookFeatureSpec& spec, const StreamStandardise& z,
                                  std::int64_t b, double* sums, const StreamInputsOut& out) {
  const StreamEvents e = round.events(out.accepted);
  const int reason = tick_reason(e, st, round.event(), b);
  double row[kStreamMaxColumns], terms[kTerms];
  stream_event(e, st, spec, b, row, terms);
  stream_rolling(e, st, spec, b, sums, terms, row, out.overflow);
  // Eight inputs at a time, every load of the eight before their stores: a
  // loop of load, use and store per input waits on memory once per input
  // (the store may alias the next input's statistics), on a GPU ~0.4 us each.
  bool ok = true;
  for (int j0 = 0; j0 < z.inputs; j0 += 8) {
    double v[8];
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      const int j = j0 + i;
      v[i] = j < z.inputs ? (row[z.x_index[j]] - z.shift[j]) * z.scale[j] : 0.0;
    }
#pragma unroll
    for (int i = 0; i < 8; ++i) {
      if (j0 + i >= z.inputs) break;
      ok = ok && v[i] - v[i] == 0.0 && (v[i] < 0.0 ? -v[i] : v[i]) <= z.limit;  // finite, bounded
      out.x[b * z.inputs + j0 + i] = float(v[i]);
    }
  }
  const double dt = row[z.dt_column] / z.dt_scale;
  ok = ok && dt - dt == 0.0 && dt <= z.limit;
  out.dt[b] = float(dt);
  const bool accepted = reason == 0 && ok;
  out.code[b] = reason ? reason : ok ? 0 : z.overflow_code;
  out.accepted[b] = accepted;
  if (accepted) stream_commit(e, st, terms, b);
}

// Instrument b of a round whose tick is not active: nothing to compute.
MA_HOST_DEVICE void skip_inputs(const StreamStandardise& z, std::int64_t b,
                                const StreamInputsOut& out) {
  for (int j = 0; j < z.inputs; ++j) out.x[b * z.inputs + j] = 0.f;
  out.dt[b] = 0.f;
  out.accepted[b] = 0;
  out.code[b] = 0;
}

}  // namespace book

void stream_inputs_cpu(const StreamRound& round, const StreamState& state,
                       const BookFeatureSpec& spec, const StreamStandardise& z,
                       const StreamInputsOut& out);
#ifdef MA_KERNELS_WITH_CUDA
void stream_inputs_cuda(const StreamRound& round, const StreamState& state,
                        const BookFeatureSpec& spec, const StreamStandardise& z,
                        const StreamInputsOut& out, int device, std::uintptr_t stream);
#endif

}  // namespace ma_kernels
