// The streaming step on CUDA: the whole model in one launch, one
// thread-block cluster per tile of sequences (the stages:
// cuda/transformer_stages.cuh).
#include <algorithm>

#include "cuda/check.cuh"
#include "cuda/transformer_stages.cuh"
#include "transformer_step.h"

namespace ma_kernels {
namespace {

using namespace step_stages;

// Rows: the most sequences of a cluster's tile, 1 where the batch is one
// sequence (projections then sum no absent rows; its one cluster may take
// every register). Many clusters need several blocks an SM: at two, only 30
// clusters of 8 fit an H100 at once (its GPCs hold whole clusters), so 256
// sequences (32 tiles) took two waves; three fit D <= 32 in 80 registers
// (a few spilled loads outside the loops).
template <int D, int Rows>
__global__ void __launch_bounds__(kThreads, Rows == 1 ? 1 : D <= 32 ? 3 : 2)
transformer_step_kernel(const __grid_constant__ StepShape s, const __grid_constant__ StepTensors t,
                        const __grid_constant__ Layout lay, float* ws) {
  extern __shared__ __align__(16) float shared[];
  cg::cluster_group cluster = cg::this_cluster();
  const Step step = cluster_step<D>(s, t, lay, ws, shared, cluster);
  rope_angles<D>(step);
  model_stages<D, Rows>(step, cluster, t.out, s.outputs());
}

template <int D>
void launch(const StepShape& s, const StepTensors& t, float* ws, cudaStream_t stream) {
  const Layout lay = layout_of(s);
  const std::size_t bytes = shared_bytes<D>(lay);
  auto kernel = s.batch == 1 ? transformer_step_kernel<D, 1> : transformer_step_kernel<D, kTile>;
  opt_in_shared_memory(kernel, bytes, "transformer_step shared memory");
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(unsigned(kCluster * ((s.batch + kTile - 1) / kTile)));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = bytes;
  config.stream = stream;
  cudaLaunchAttribute cluster;
  cluster.id = cudaLaunchAttributeClusterDimension;
  cluster.val.clusterDim.x = kCluster;
  cluster.val.clusterDim.y = 1;
  cluster.val.clusterDim.z = 1;
  config.attrs = &cluster;
  config.numAttrs = 1;
  cuda_check(cudaLaunchKernelEx(&config, kernel, s, t, lay, ws), "transformer_step launch");
}

}  // namespace

bool transformer_step_cuda_supports(int head_dim) {
  return head_dim == 8 || head_dim == 16 || head_dim == 32 || head_dim == 64;
}

std::int64_t transformer_step_cuda_workspace(const StepShape& shape) {
  return shape.batch * layout_of(shape).stride;
}

void transformer_step_cuda(const StepShape& shape, const StepTensors& tensors, float* workspace,
                           int device, std::uintptr_t stream) {
  if (shape.batch == 0) return;
  const cudaStream_t s = use_device(device, stream);
  switch (shape.head_dim()) {
    case 8: launch<8>(shape, tensors, workspace, s); break;
    case 16: launch<16>(shape, tensors, workspace, s); break;
    case 32: launch<32>(shape, tensors, workspace, s); break;
    case 64: launch<64>(shape, tensors, workspace, s); break;
    default: throw std::invalid_argument("transformer_step: head dim must be 8, 16, 32 or 64");
  }
}

}  // namespace ma_kernels
