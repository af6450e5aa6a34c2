// A resident streaming kernel: launched once, it stays on the GPU and turns
// each round of raw ticks into signals with no launch, graph replay or copy
// call per tick. The host writes a round into pinned, mapped host memory and
// bumps a request number; the kernel (thread-block clusters over tiles of
// sequences, their shared memory holding the model's weights in bf16) sees it,
// checks each tick (book_stream.h), computes its features, standardises
// them, commits the accepted ones (stream_inputs.h), runs the model on chip
// (cuda/resident_stages.cuh) and writes the outputs and a done number back
// into mapped memory, where the host spins on it.
//
// Never left spinning: the kernel's wait for a request gives up after
// idle_ns (the host relaunches it on the next round), the host's wait for a
// round gives up after its own timeout and raises, and stop() asks the
// kernel to leave and waits for it with a timeout.
#pragma once

#include <cstdint>
#include <memory>
#include <vector>

#include "stream_inputs.h"
#include "transformer_step.h"

namespace ma_kernels {

struct ResidentConfig {
  StepShape model;            // batch = instruments
  BookFeatureSpec spec;       // the features the model's inputs are taken from
  std::int64_t levels;        // book levels of a round's rows (the feature state's)
  StreamStandardise inputs;   // the columns to the model's inputs (device pointers)
  std::int64_t idle_ns;       // the kernel leaves after this long without a round
  bool trace;                 // stamp the stages of each round (stage_times())
};

// Device memory the kernel reads and updates: the model's parameters and KV
// caches (StepTensors; its x, dt, active and out are set by the host class)
// and the feature state.
struct ResidentTensors {
  StepTensors model;
  StreamState features;
};

#ifdef MA_KERNELS_WITH_CUDA
// One resident kernel and its mapped buffers. Rounds carry, per instrument, a
// row of float64 book (4 x levels: bid, bid size, ask, ask size) and trade
// (price, size, side), and a row of int64 (time, active flag, event type).
class ResidentStream {
 public:
  ResidentStream(const ResidentConfig& config, const ResidentTensors& tensors, int device,
                 double timeout_s);
  ~ResidentStream();
  ResidentStream(const ResidentStream&) = delete;
  ResidentStream& operator=(const ResidentStream&) = delete;

  // One round: in_f64 [B, 4 levels + 3], in_i64 [B, 3] -> result [B,
  // outputs + 2] float64: each horizon's direction probabilities, the
  // regression outputs, the reason code (0 when accepted) and the
  // instrument's sequence number. Throws if the kernel does not answer
  // within the timeout.
  void step(const double* in_f64, const std::int64_t* in_i64, double* result);
  // Asks the kernel to leave and waits for it (the next step relaunches it).
  void stop();
  std::int64_t clusters() const;
  // With config.trace: the last round's stage times in ns since cluster 0
  // saw it: its features ready, each exchange (three a layer, per tile),
  // its outputs written.
  std::vector<std::int64_t> stage_times() const;

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;  // frees what the constructor took, even if it throws
};

#endif

}  // namespace ma_kernels
