// stream_inputs on CUDA: a warp per instrument (cuda/stream_inputs.cuh).
#include "cuda/check.cuh"
#include "cuda/stream_inputs.cuh"

namespace ma_kernels {
namespace {

constexpr int kWarps = 4;

__global__ void __launch_bounds__(kWarps * 32)
stream_inputs_kernel(const __grid_constant__ StreamRound round,
                     const __grid_constant__ StreamState st,
                     const __grid_constant__ BookFeatureSpec spec,
                     const __grid_constant__ StreamStandardise z, StreamInputsOut out) {
  const std::int64_t b = std::int64_t(blockIdx.x) * kWarps + threadIdx.x / 32;
  if (b < round.batch) stream_inputs_warp(round, st, spec, z, out, b, threadIdx.x % 32);
}

}  // namespace

void stream_inputs_cuda(const StreamRound& round, const StreamState& state,
                        const BookFeatureSpec& spec, const StreamStandardise& z,
                        const StreamInputsOut& out, int device, std::uintptr_t stream) {
  if (round.batch == 0) return;
  const cudaStream_t s = use_device(device, stream);
  const unsigned blocks = unsigned((round.batch + kWarps - 1) / kWarps);
  stream_inputs_kernel<<<blocks, kWarps * 32, 0, s>>>(round, state, spec, z, out);
  cuda_check(cudaGetLastError(), "stream_inputs kernel launch");
}

}  // namespace ma_kernels
