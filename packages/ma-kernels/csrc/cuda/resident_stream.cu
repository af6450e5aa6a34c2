// The resident streaming kernel (resident_stream.h): per round, each
// cluster's rank-0 thread sees the host's request number in mapped memory;
// the cluster checks and featurises its tile's ticks (a warp per tick, the
// functions of book_stream.h), runs the model's stages
// (cuda/transformer_stages.cuh) and writes the outputs and its done number
// back to mapped memory. Mapped inputs are read with ld.cv (the host rewrites
// them every round); outputs are fenced at system scope before done.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>

#include "cuda/check.cuh"
#include "cuda/stream_inputs.cuh"
#include "cuda/transformer_stages.cuh"
#include "resident_stream.h"

namespace ma_kernels {
namespace {

using namespace step_stages;

constexpr std::int64_t kStop = -1, kIdle = -2;

// Mapped host memory, as the device sees it.
struct Mapped {
  const double* in_f64;        // [B, 4 levels + 3]
  const std::int64_t* in_i64;  // [B, 3]: time, active, event type
  float* out;                  // [B, outputs]
  std::int64_t* codes;         // [B, 2]: reason code, sequence
  volatile std::int64_t* request;
  volatile std::int64_t* done;  // [clusters]: the last round each served
  volatile int* left;           // [clusters]: 1 once the cluster's kernel has left
};

// Per-instrument device memory: the round's rows copied out of mapped
// memory, and the model's inputs the stages read.
struct Scratch {
  double* event_f64;
  std::int64_t* event_i64;
  StreamInputsOut inputs;
};

__device__ __forceinline__ std::uint64_t global_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// Instrument b's tick of this round, by one warp: copied out of mapped
// memory (ld.cv: the host rewrites it every round), then to model inputs.
__device__ void featurise(const ResidentConfig& c, const ResidentTensors& t, const Mapped& io,
                          const Scratch& sc, std::int64_t b, int lane) {
  const StreamRound round{sc.event_f64, sc.event_i64, c.model.batch, c.levels};
  const std::int64_t width = round.width();
  for (std::int64_t i = lane; i < width; i += 32) {
    sc.event_f64[b * width + i] = __ldcv(io.in_f64 + b * width + i);
  }
  if (lane < 3) sc.event_i64[b * 3 + lane] = __ldcv(io.in_i64 + b * 3 + lane);
  __syncwarp();
  stream_inputs_warp(round, t.features, c.spec, c.inputs, sc.inputs, b, lane);
}

// Two blocks per SM, so 256 instruments (32 clusters of 8) fit on an H100 at once.
template <int D>
__global__ void __launch_bounds__(kThreads, 2)
resident_kernel(const __grid_constant__ ResidentConfig c, const __grid_constant__ ResidentTensors t,
                const __grid_constant__ Layout lay, const __grid_constant__ Mapped io,
                const __grid_constant__ Scratch sc, float* ws) {
  extern __shared__ __align__(16) float shared[];
  __shared__ long long round;
  cg::cluster_group cluster = cg::this_cluster();
  const Step step = cluster_step<D>(c.model, t.model, lay, ws, shared, cluster);
  const unsigned rank = cluster.block_rank();
  const std::int64_t tile = blockIdx.x / kCluster;
  long long seen = io.done[tile], r = kIdle;  // a relaunch serves what this cluster has not
  for (;;) {
    if (rank == 0 && threadIdx.x == 0) {
      const std::uint64_t since = global_ns();
      while ((r = *io.request) == seen) {
        if (global_ns() - since > std::uint64_t(c.idle_ns)) {
          r = kIdle;
          break;
        }
      }
      round = r;
    }
    cluster.sync();
    r = *cluster.map_shared_rank(&round, 0);
    if (r < 0) break;
    seen = r;
    if (step.warp == 0) {
      for (int i = int(rank); i < step.rows; i += kCluster) {
        featurise(c, t, io, sc, step.row0 + i, step.lane);
      }
    }
    cluster.sync();
    rope_angles<D>(step);
    model_stages<D>(step, cluster, io.out, c.model.outputs());
    if (rank == 0 && int(threadIdx.x) < step.rows) {  // the thread that moved pos in model_stages
      const std::int64_t b = step.row0 + threadIdx.x;
      io.codes[2 * b] = __ldcg(sc.inputs.code + b);
      io.codes[2 * b + 1] = t.model.pos[b];
    }
    __threadfence_system();
    cluster.sync();
    if (rank == 0 && threadIdx.x == 0) io.done[tile] = seen;
  }
  if (rank == 0 && threadIdx.x == 0) io.left[tile] = 1;
}

std::int64_t tiles(const ResidentConfig& c) { return (c.model.batch + kTile - 1) / kTile; }

template <int D>
cudaLaunchConfig_t launch_config(const ResidentConfig& c, const Layout& lay,
                                 cudaLaunchAttribute* cluster, cudaStream_t stream) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(unsigned(kCluster * tiles(c)));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = shared_bytes<D>(lay);
  config.stream = stream;
  cluster->id = cudaLaunchAttributeClusterDimension;
  cluster->val.clusterDim.x = kCluster;
  cluster->val.clusterDim.y = 1;
  cluster->val.clusterDim.z = 1;
  config.attrs = cluster;
  config.numAttrs = 1;
  return config;
}

template <typename Fn>
void with_head_dim(int head_dim, Fn&& fn) {
  switch (head_dim) {
    case 8: fn(std::integral_constant<int, 8>{}); return;
    case 16: fn(std::integral_constant<int, 16>{}); return;
    case 32: fn(std::integral_constant<int, 32>{}); return;
    case 64: fn(std::integral_constant<int, 64>{}); return;
    default: throw std::invalid_argument("resident stream: head dim must be 8, 16, 32 or 64");
  }
}

double seconds_since(std::chrono::steady_clock::time_point start) {
  return std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
}

}  // namespace

struct ResidentStream::Impl {
  ResidentConfig config;
  ResidentTensors tensors;
  Layout lay;
  int device;
  double timeout_s;
  cudaStream_t stream = nullptr;
  void* host = nullptr;    // the mapped block
  void* memory = nullptr;  // scratch and workspace
  Mapped io{};             // device pointers into `host`
  Scratch scratch{};
  float* workspace = nullptr;
  // Host views of the mapped block.
  double* in_f64 = nullptr;
  std::int64_t* in_i64 = nullptr;
  float* out = nullptr;
  std::int64_t* codes = nullptr;
  volatile std::int64_t* request = nullptr;
  volatile std::int64_t* done = nullptr;
  volatile int* left = nullptr;
  std::int64_t issued = 0;
  bool running = false;

  std::int64_t width() const { return 4 * config.levels + 3; }

  void launch() {
    for (std::int64_t c = 0; c < tiles(config); ++c) left[c] = 0;
    *request = issued;
    with_head_dim(config.model.head_dim(), [&](auto d) {
      constexpr int D = decltype(d)::value;
      cudaLaunchAttribute cluster;
      const cudaLaunchConfig_t launch = launch_config<D>(config, lay, &cluster, stream);
      cuda_check(cudaLaunchKernelEx(&launch, resident_kernel<D>, config, tensors, lay, io,
                                    scratch, workspace),
                 "resident stream launch");
    });
    running = true;
  }

  // Waits for the kernel to leave; throws on a fault or after the timeout.
  void wait_for_exit(double timeout) {
    const auto start = std::chrono::steady_clock::now();
    for (;;) {
      const cudaError_t status = cudaStreamQuery(stream);
      if (status == cudaSuccess) break;
      if (status != cudaErrorNotReady) cuda_check(status, "resident stream kernel");
      if (seconds_since(start) > timeout) {
        throw std::runtime_error("ma_kernels: the resident stream kernel did not stop within " +
                                 std::to_string(timeout) + " s");
      }
    }
    running = false;
  }

  ~Impl() {
    try {
      stop();
    } catch (...) {  // a destructor must not throw; the context is lost anyway
    }
    if (memory) cudaFree(memory);
    if (host) cudaFreeHost(host);
    if (stream) cudaStreamDestroy(stream);
  }

  void stop() {
    if (!running) return;
    *request = kStop;
    std::atomic_thread_fence(std::memory_order_seq_cst);
    // A cluster in a round finishes it; a waiting one sees the stop at once.
    wait_for_exit(timeout_s + double(config.idle_ns) * 1e-9);
    *request = issued;
  }
};

std::int64_t resident_clusters_needed(const ResidentConfig& config) { return tiles(config); }

std::int64_t resident_clusters_possible(const ResidentConfig& config, int device) {
  cuda_check(cudaSetDevice(device), "cudaSetDevice");
  int clusters = 0;
  with_head_dim(config.model.head_dim(), [&](auto d) {
    constexpr int D = decltype(d)::value;
    const Layout lay = layout_of(config.model);
    opt_in_shared_memory(resident_kernel<D>, shared_bytes<D>(lay), "resident stream shared memory");
    cudaLaunchAttribute cluster;
    const cudaLaunchConfig_t launch = launch_config<D>(config, lay, &cluster, nullptr);
    cuda_check(cudaOccupancyMaxActiveClusters(&clusters, resident_kernel<D>, &launch),
               "cudaOccupancyMaxActiveClusters");
  });
  return clusters;
}

ResidentStream::ResidentStream(const ResidentConfig& config, const ResidentTensors& tensors,
                               int device, double timeout_s)
    : impl_(new Impl{config, tensors, layout_of(config.model), device, timeout_s}),
      clusters_(tiles(config)) {
  Impl& m = *impl_;
  {
    const std::int64_t possible = resident_clusters_possible(config, device);
    if (clusters_ > possible) {
      throw std::invalid_argument("the resident stream needs " + std::to_string(clusters_) +
                                  " clusters of 8 blocks at once; this GPU holds " +
                                  std::to_string(possible));
    }
    cuda_check(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    const std::int64_t b = config.model.batch, outputs = config.model.outputs();
    const std::int64_t windows = config.spec.time_window_count;
    // The mapped block: inputs, outputs, then the flags, each 64-byte aligned.
    const auto align = [](std::size_t n) { return (n + 63) / 64 * 64; };
    const std::size_t sizes[] = {align(sizeof(double) * b * m.width()),
                                 align(sizeof(std::int64_t) * b * 3),
                                 align(sizeof(float) * b * outputs),
                                 align(sizeof(std::int64_t) * b * 2), align(sizeof(std::int64_t)),
                                 align(sizeof(std::int64_t) * clusters_),
                                 align(sizeof(int) * clusters_)};
    std::size_t total = 0;
    for (std::size_t s : sizes) total += s;
    cuda_check(cudaHostAlloc(&m.host, total, cudaHostAllocMapped | cudaHostAllocPortable),
               "cudaHostAlloc");
    std::memset(m.host, 0, total);
    void* device_view = nullptr;
    cuda_check(cudaHostGetDevicePointer(&device_view, m.host, 0), "cudaHostGetDevicePointer");
    char* h = static_cast<char*>(m.host);
    char* d = static_cast<char*>(device_view);
    std::size_t at = 0;
    const auto carve = [&](std::size_t size, auto*& host_view, auto*& device_ptr) {
      host_view = reinterpret_cast<std::remove_reference_t<decltype(host_view)>>(h + at);
      device_ptr = reinterpret_cast<std::remove_reference_t<decltype(device_ptr)>>(d + at);
      at += size;
    };
    carve(sizes[0], m.in_f64, m.io.in_f64);
    carve(sizes[1], m.in_i64, m.io.in_i64);
    carve(sizes[2], m.out, m.io.out);
    carve(sizes[3], m.codes, m.io.codes);
    carve(sizes[4], m.request, m.io.request);
    carve(sizes[5], m.done, m.io.done);
    carve(sizes[6], m.left, m.io.left);
    // Device scratch and the stages' workspace.
    const std::size_t scratch_sizes[] = {
        align(sizeof(double) * b * m.width()), align(sizeof(std::int64_t) * b * 3),
        align(sizeof(float) * b * config.model.inputs), align(sizeof(float) * b), align(b),
        align(sizeof(std::int64_t) * b), align(b * std::max<std::int64_t>(windows, 1)),
        align(sizeof(float) * transformer_step_cuda_workspace(config.model))};
    std::size_t scratch_total = 0;
    for (std::size_t s : scratch_sizes) scratch_total += s;
    cuda_check(cudaMalloc(&m.memory, scratch_total), "cudaMalloc");
    cuda_check(cudaMemset(m.memory, 0, scratch_total), "cudaMemset");
    char* p = static_cast<char*>(m.memory);
    const auto take = [&](std::size_t size) {
      char* here = p;
      p += size;
      return here;
    };
    m.scratch.event_f64 = reinterpret_cast<double*>(take(scratch_sizes[0]));
    m.scratch.event_i64 = reinterpret_cast<std::int64_t*>(take(scratch_sizes[1]));
    StreamInputsOut& inputs = m.scratch.inputs;
    inputs.x = reinterpret_cast<float*>(take(scratch_sizes[2]));
    inputs.dt = reinterpret_cast<float*>(take(scratch_sizes[3]));
    inputs.accepted = reinterpret_cast<std::uint8_t*>(take(scratch_sizes[4]));
    inputs.code = reinterpret_cast<std::int64_t*>(take(scratch_sizes[5]));
    inputs.overflow = reinterpret_cast<std::uint8_t*>(take(scratch_sizes[6]));
    m.workspace = reinterpret_cast<float*>(take(scratch_sizes[7]));
    cuda_check(cudaDeviceSynchronize(), "resident stream setup");
    m.tensors.model.x = inputs.x;
    m.tensors.model.dt = inputs.dt;
    m.tensors.model.active = inputs.accepted;
    m.tensors.model.out = nullptr;  // the kernel writes the mapped outputs
  }
}

ResidentStream::~ResidentStream() = default;

void ResidentStream::stop() { impl_->stop(); }

void ResidentStream::step(const double* in_f64, const std::int64_t* in_i64, float* out,
                          std::int64_t* codes) {
  Impl& m = *impl_;
  const std::int64_t b = m.config.model.batch;
  cuda_check(cudaSetDevice(m.device), "cudaSetDevice");
  std::memcpy(m.in_f64, in_f64, sizeof(double) * b * m.width());
  std::memcpy(m.in_i64, in_i64, sizeof(std::int64_t) * b * 3);
  if (!m.running) m.launch();
  std::atomic_thread_fence(std::memory_order_seq_cst);  // the round before its number
  *m.request = ++m.issued;
  const auto start = std::chrono::steady_clock::now();
  for (std::int64_t c = 0; c < clusters_; ++c) {
    while (m.done[c] != m.issued) {
      if (m.left[c]) {  // it gave up waiting as the round came: relaunch every cluster
        m.stop();
        m.launch();
        c = -1;
        break;
      }
      if (seconds_since(start) > m.timeout_s) {
        const cudaError_t status = cudaStreamQuery(m.stream);
        if (status != cudaSuccess && status != cudaErrorNotReady) {
          cuda_check(status, "resident stream kernel");
        }
        throw std::runtime_error("ma_kernels: the resident stream kernel did not answer within " +
                                 std::to_string(m.timeout_s) + " s");
      }
    }
  }
  std::atomic_thread_fence(std::memory_order_seq_cst);  // the outputs after done
  std::memcpy(out, m.out, sizeof(float) * b * m.config.model.outputs());
  std::memcpy(codes, m.codes, sizeof(std::int64_t) * b * 2);
}

}  // namespace ma_kernels
