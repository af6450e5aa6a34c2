// The latencies a resident kernel's round is made of, on this GPU, measured
// alone: straight-line code of growing size run once (instruction cache),
// a cluster barrier of 16 and of 8 blocks, a dependent load from another
// block's shared memory (DSMEM), from L2 and from mapped host memory.
// Prints one JSON object. Build and run on the device:
//
//   nvcc -std=c++17 -arch=sm_90a -o /tmp/probe tools/device/probe_latency.cu && /tmp/probe
#include <cooperative_groups.h>
#include <cuda_runtime.h>

#include <cstdint>
#include <cstdio>
#include <cstdlib>

namespace cg = cooperative_groups;

#define CHECK(x)                                                              \
  do {                                                                        \
    cudaError_t e = (x);                                                      \
    if (e != cudaSuccess) {                                                   \
      std::fprintf(stderr, "%s: %s\n", #x, cudaGetErrorString(e));            \
      std::exit(1);                                                           \
    }                                                                         \
  } while (0)

__device__ __forceinline__ std::uint64_t now_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// K x 8 independent FFMAs in straight-line code (16 bytes each: K x 128 B
// of code), run `passes` times by every warp of the block; out[pass] is the
// pass's time in clock cycles. The first pass fetches the code from L2.
template <int K>
__global__ void straight_line(float y, float z, long long* cycles, float* sink, int passes) {
  float a[8];
  for (int i = 0; i < 8; ++i) a[i] = threadIdx.x + i;
  for (int pass = 0; pass < passes; ++pass) {
    __syncthreads();
    const long long t0 = clock64();
#pragma unroll
    for (int k = 0; k < K; ++k) {
#pragma unroll
      for (int i = 0; i < 8; ++i) a[i] = fmaf(a[i], y, z);
    }
    __syncthreads();
    if (threadIdx.x == 0) cycles[pass] = clock64() - t0;
  }
  float s = 0.f;
  for (int i = 0; i < 8; ++i) s += a[i];
  sink[threadIdx.x] = s;
}

// `rounds` cluster barriers; block 0's thread 0 writes the mean in ns.
__global__ void barriers(int rounds, double* ns) {
  cg::cluster_group cluster = cg::this_cluster();
  cluster.sync();
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < rounds; ++i) cluster.sync();
  if (blockIdx.x == 0 && threadIdx.x == 0) *ns = double(now_ns() - t0) / rounds;
}

// A chain of `steps` dependent loads from the next block's shared memory.
__global__ void remote_chain(int steps, double* ns) {
  extern __shared__ int next[];
  cg::cluster_group cluster = cg::this_cluster();
  const int n = 1024;
  for (int i = threadIdx.x; i < n; i += blockDim.x) next[i] = (i * 97 + 1) % n;
  cluster.sync();
  if (cluster.block_rank() == 0 && threadIdx.x == 0) {
    const int* remote = cluster.map_shared_rank(next, 1);
    int at = 0;
    const std::uint64_t t0 = now_ns();
    for (int i = 0; i < steps; ++i) at = remote[at];
    *ns = double(now_ns() - t0) / steps;
    if (at < 0) *ns = -1;  // keeps the chain
  }
  cluster.sync();
}

// A chain of `steps` dependent loads through `next` (global or mapped), by
// one thread; ld.cg so L1 does not serve it; ld.cv (volatile) where mapped.
template <bool Volatile>
__global__ void global_chain(const int* next, int steps, double* ns) {
  int at = 0;
  const std::uint64_t t0 = now_ns();
  for (int i = 0; i < steps; ++i) at = Volatile ? __ldcv(next + at) : __ldcg(next + at);
  *ns = double(now_ns() - t0) / steps;
  if (at < 0) *ns = -1;
}

template <int K>
void code_size(float* sink, long long* cycles, int threads, bool first) {
  const int passes = 4;
  straight_line<K><<<1, threads>>>(1.0001f, 0.5f, cycles, sink, passes);
  CHECK(cudaDeviceSynchronize());
  long long c[passes];
  CHECK(cudaMemcpy(c, cycles, sizeof c, cudaMemcpyDeviceToHost));
  const double instructions = 8.0 * K;
  std::printf("%s\"%d KB, %d warps\": {\"first_pass_cycles\": %lld, \"warm_pass_cycles\": %lld, "
              "\"first_cycles_per_instruction\": %.2f, \"warm_cycles_per_instruction\": %.2f}",
              first ? "" : ", ", K * 128 / 1024, threads / 32, c[0], c[passes - 1],
              c[0] / instructions, c[passes - 1] / instructions);
}

// A launch of `blocks` blocks of `threads` as one cluster.
struct ClusterLaunch {
  cudaLaunchConfig_t config = {};
  cudaLaunchAttribute attr = {};
  ClusterLaunch(int blocks, int threads, std::size_t shared) {
    config.gridDim = dim3(blocks);
    config.blockDim = dim3(threads);
    config.dynamicSmemBytes = shared;
    attr.id = cudaLaunchAttributeClusterDimension;
    attr.val.clusterDim.x = blocks;
    attr.val.clusterDim.y = 1;
    attr.val.clusterDim.z = 1;
    config.attrs = &attr;
    config.numAttrs = 1;
  }
};

double read_back(const double* ns) {
  CHECK(cudaDeviceSynchronize());
  double v;
  CHECK(cudaMemcpy(&v, ns, sizeof v, cudaMemcpyDeviceToHost));
  return v;
}

double run_barriers(int blocks, double* ns) {
  ClusterLaunch launch(blocks, 256, 0);
  CHECK(cudaFuncSetAttribute(barriers, cudaFuncAttributeNonPortableClusterSizeAllowed, 1));
  CHECK(cudaLaunchKernelEx(&launch.config, barriers, 10000, ns));
  return read_back(ns);
}

int main() {
  float* sink;
  long long* cycles;
  double* ns;
  CHECK(cudaMalloc(&sink, 1024 * sizeof(float)));
  CHECK(cudaMalloc(&cycles, 64 * sizeof(long long)));
  CHECK(cudaMalloc(&ns, sizeof(double)));
  cudaDeviceProp prop;
  CHECK(cudaGetDeviceProperties(&prop, 0));
  std::printf("{\"gpu\": \"%s\", \"straight_line_code\": {", prop.name);
  code_size<64>(sink, cycles, 256, true);
  code_size<256>(sink, cycles, 256, false);
  code_size<512>(sink, cycles, 256, false);
  code_size<1024>(sink, cycles, 256, false);
  code_size<2048>(sink, cycles, 256, false);
  code_size<1024>(sink, cycles, 32, false);
  std::printf("}, \"cluster_barrier_ns\": {\"16\": %.1f, \"8\": %.1f, \"2\": %.1f}",
              run_barriers(16, ns), run_barriers(8, ns), run_barriers(2, ns));

  {
    ClusterLaunch launch(2, 32, 4096);
    CHECK(cudaLaunchKernelEx(&launch.config, remote_chain, 10000, ns));
    std::printf(", \"dsmem_load_ns\": %.1f", read_back(ns));
  }

  // A permutation over 16 MB (L2-resident after the first walk), then the
  // same chain over mapped host memory.
  const int n = 1 << 22;
  int* host = static_cast<int*>(std::malloc(n * sizeof(int)));
  for (int i = 0; i < n; ++i) host[i] = int((std::int64_t(i) * 4099 + 12289) % n);
  int* device_next;
  CHECK(cudaMalloc(&device_next, n * sizeof(int)));
  CHECK(cudaMemcpy(device_next, host, n * sizeof(int), cudaMemcpyHostToDevice));
  global_chain<false><<<1, 1>>>(device_next, 20000, ns);  // warms L2
  global_chain<false><<<1, 1>>>(device_next, 20000, ns);
  std::printf(", \"l2_load_ns\": %.1f", read_back(ns));
  int* mapped;
  CHECK(cudaHostAlloc(&mapped, 4096 * sizeof(int), cudaHostAllocMapped));
  for (int i = 0; i < 4096; ++i) mapped[i] = host[i] % 4096;
  int* mapped_device;
  CHECK(cudaHostGetDevicePointer(reinterpret_cast<void**>(&mapped_device), mapped, 0));
  global_chain<true><<<1, 1>>>(mapped_device, 200, ns);
  std::printf(", \"mapped_host_load_ns\": %.1f}\n", read_back(ns));
  return 0;
}
