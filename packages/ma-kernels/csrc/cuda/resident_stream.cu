// The resident streaming kernel (resident_stream.h): launched once, each
// cluster loads its slices of the model's weights into shared memory (bf16,
// cuda/resident_stages.cuh), then per round its rank-0 thread sees the host's
// request number in mapped memory; the cluster checks and featurises its
// tiles' ticks (a warp per tick, the functions of book_stream.h), runs the
// model on chip and writes the outputs and its done number back to mapped
// memory. Mapped inputs are read with ld.cv (the host rewrites them every
// round); outputs are fenced at system scope before done.
#include <algorithm>
#include <atomic>
#include <chrono>
#include <cstring>
#include <stdexcept>
#include <string>
#include <tuple>
#include <utility>
#include <vector>

#include "cuda/check.cuh"
#include "cuda/stream_inputs.cuh"
#include "cuda/resident_stages.cuh"
#include "resident_stream.h"

namespace ma_kernels {
namespace {

using resident_stages::OnChip;
using resident_stages::OnChipStep;
using resident_stages::global_ns;
using resident_stages::kTraceSlots;
using step_stages::kThreads;
using step_stages::kTile;
using step_stages::kWarps;
namespace cg = cooperative_groups;

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
  std::int64_t* trace;          // [kTraceSlots] stage stamps, or null
};

// Per-instrument device memory: the round's rows copied out of mapped
// memory, and the model's inputs the stages read.
struct Scratch {
  double* event_f64;
  std::int64_t* event_i64;
  StreamInputsOut inputs;
};

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

// One block per SM (its shared memory holds the block's weights); cluster c
// serves tiles c, c + clusters, ... of the instruments.
template <int D, int Rows>
__global__ void __launch_bounds__(kThreads, 1)
resident_kernel(const __grid_constant__ ResidentConfig c, const __grid_constant__ ResidentTensors t,
                const __grid_constant__ OnChip o, const __grid_constant__ Mapped io,
                const __grid_constant__ Scratch sc) {
  extern __shared__ __align__(16) unsigned char shared[];
  __shared__ long long round;
  cg::cluster_group cluster = cg::this_cluster();
  const int rank = int(cluster.block_rank()), warp = int(threadIdx.x / 32), lane = threadIdx.x % 32;
  const std::int64_t id = blockIdx.x / o.blocks, clusters = gridDim.x / o.blocks;
  const std::int64_t tile_count = (c.model.batch + kTile - 1) / kTile;
  OnChipStep<D, Rows> step{c.model, t.model, o, cluster, shared, rank, warp, lane};
  step.trace = id == 0 ? io.trace : nullptr;
  step.load_weights();
  long long seen = io.done[id], r = kIdle;  // a relaunch serves what this cluster has not
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
    if (r < 0) {  // leave together: block 0's round stays readable until every block has it
      cluster.sync();
      break;
    }
    seen = r;
    step.stamps = 0;
    step.mark();
    for (std::int64_t tile = id; tile < tile_count; tile += clusters) {
      const std::int64_t row0 = tile * kTile;
      const int rows = int(std::min<std::int64_t>(kTile, c.model.batch - row0));
      for (int i = rank * kWarps + warp; i < rows; i += o.blocks * kWarps) {
        featurise(c, t, io, sc, row0 + i, lane);
      }
    }
    cluster.sync();
    step.mark();
    for (std::int64_t tile = id; tile < tile_count; tile += clusters) {
      const std::int64_t row0 = tile * kTile;
      const int rows = int(std::min<std::int64_t>(kTile, c.model.batch - row0));
      step.run(row0, rows, io.out);
      if (rank == 0 && int(threadIdx.x) < rows) {  // the thread that moved pos in run
        const std::int64_t b = row0 + threadIdx.x;
        io.codes[2 * b] = __ldcg(sc.inputs.code + b);
        io.codes[2 * b + 1] = t.model.pos[b];
      }
    }
    if (rank == 0) {
      step.mark();
      if (step.trace && threadIdx.x == 0) {
        step.trace[kTraceSlots - 1] = std::min(step.stamps, kTraceSlots - 1);
      }
      __threadfence_system();
      __syncthreads();
      if (threadIdx.x == 0) io.done[id] = seen;
    }
  }
  if (rank == 0 && threadIdx.x == 0) io.left[id] = 1;
}

std::int64_t tiles(const ResidentConfig& c) { return (c.model.batch + kTile - 1) / kTile; }

// The kernel for `batch` instruments: tiles of at most one row where it is
// one (its projections then sum no absent rows), else of kTile.
template <int D>
auto kernel_for(std::int64_t batch) {
  return batch == 1 ? resident_kernel<D, 1> : resident_kernel<D, kTile>;
}

template <int D>
cudaLaunchConfig_t launch_config(const OnChip& o, std::int64_t clusters,
                                 cudaLaunchAttribute* cluster, cudaStream_t stream) {
  cudaLaunchConfig_t config = {};
  config.gridDim = dim3(unsigned(o.blocks * clusters));
  config.blockDim = dim3(kThreads);
  config.dynamicSmemBytes = o.bytes;
  config.stream = stream;
  cluster->id = cudaLaunchAttributeClusterDimension;
  cluster->val.clusterDim.x = unsigned(o.blocks);
  cluster->val.clusterDim.y = 1;
  cluster->val.clusterDim.z = 1;
  config.attrs = cluster;
  config.numAttrs = 1;
  return config;
}

// How many clusters split as `o` this GPU runs at once (0 where none fits).
template <int D>
int clusters_possible(const OnChip& o, std::int64_t batch, int device) {
  const int most = device_attribute(cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (o.bytes == 0 || o.bytes + 64 > std::size_t(most)) return 0;  // 64: the static round
  auto kernel = kernel_for<D>(batch);
  opt_in_shared_memory(kernel, o.bytes, "resident stream shared memory");
  if (o.blocks > 8) {  // the portable cluster size is 8
    cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeNonPortableClusterSizeAllowed, 1),
               "resident stream cluster size");
  }
  cudaLaunchAttribute cluster;
  const cudaLaunchConfig_t launch = launch_config<D>(o, 1, &cluster, nullptr);
  int clusters = 0;
  if (cudaOccupancyMaxActiveClusters(&clusters, kernel, &launch) != cudaSuccess) {
    cudaGetLastError();  // a cluster size this GPU refuses: none
    return 0;
  }
  return clusters;
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
  OnChip o;
  std::int64_t clusters;
  int device;
  double timeout_s;
  cudaStream_t stream = nullptr;
  void* host = nullptr;    // the mapped block
  void* memory = nullptr;  // scratch
  Mapped io{};             // device pointers into `host`
  Scratch scratch{};
  // Host views of the mapped block.
  double* in_f64 = nullptr;
  std::int64_t* in_i64 = nullptr;
  float* out = nullptr;
  std::int64_t* codes = nullptr;
  volatile std::int64_t* request = nullptr;
  volatile std::int64_t* done = nullptr;
  volatile int* left = nullptr;
  std::int64_t* trace = nullptr;
  std::int64_t issued = 0;
  bool running = false;

  std::int64_t width() const { return 4 * config.levels + 3; }

  void launch() {
    for (std::int64_t c = 0; c < clusters; ++c) left[c] = 0;
    *request = issued;
    with_head_dim(config.model.head_dim(), [&](auto d) {
      constexpr int D = decltype(d)::value;
      cudaLaunchAttribute cluster;
      const cudaLaunchConfig_t launch = launch_config<D>(o, clusters, &cluster, stream);
      cuda_check(cudaLaunchKernelEx(&launch, kernel_for<D>(config.model.batch), config, tensors, o,
                                    io, scratch),
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

// The split of the model over a cluster of 16 blocks where this GPU runs
// one (a non-portable size), else of 8, and how many such clusters to run.
std::pair<OnChip, std::int64_t> place(const ResidentConfig& config, int device) {
  cuda_check(cudaSetDevice(device), "cudaSetDevice");
  std::pair<OnChip, std::int64_t> placed{};
  with_head_dim(config.model.head_dim(), [&](auto d) {
    constexpr int D = decltype(d)::value;
    for (int blocks : {16, 8}) {
      const OnChip o = resident_stages::plan(config.model, blocks);
      const int possible = clusters_possible<D>(o, config.model.batch, device);
      if (possible > 0) {
        placed = {o, std::min<std::int64_t>(possible, tiles(config))};
        return;
      }
    }
  });
  if (placed.second == 0) {
    const double mb = 2e-6 * double(config.model.layers) *
                      (4.0 * config.model.model_dim * config.model.model_dim +
                       3.0 * config.model.model_dim * config.model.hidden);
    throw std::invalid_argument(
        "the resident stream keeps the model's weights (" + std::to_string(mb) +
        " MB in bf16) in the shared memory of one thread-block cluster of 16 (or 8) blocks, "
        "split by heads and hidden units; this model or GPU does not allow it");
  }
  return placed;
}

ResidentStream::ResidentStream(const ResidentConfig& config, const ResidentTensors& tensors,
                               int device, double timeout_s)
    : impl_(new Impl{config, tensors}) {
  Impl& m = *impl_;
  {
    std::tie(m.o, m.clusters) = place(config, device);
    m.device = device;
    m.timeout_s = timeout_s;
    cuda_check(cudaStreamCreateWithFlags(&m.stream, cudaStreamNonBlocking), "cudaStreamCreate");
    const std::int64_t b = config.model.batch, outputs = config.model.outputs();
    const std::int64_t windows = config.spec.time_window_count;
    // The mapped block: inputs, outputs, then the flags, each 64-byte aligned.
    const auto align = [](std::size_t n) { return (n + 63) / 64 * 64; };
    const std::size_t sizes[] = {align(sizeof(double) * b * m.width()),
                                 align(sizeof(std::int64_t) * b * 3),
                                 align(sizeof(float) * b * outputs),
                                 align(sizeof(std::int64_t) * b * 2), align(sizeof(std::int64_t)),
                                 align(sizeof(std::int64_t) * m.clusters),
                                 align(sizeof(int) * m.clusters),
                                 config.trace ? align(sizeof(std::int64_t) * kTraceSlots) : 0};
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
    if (config.trace) carve(sizes[7], m.trace, m.io.trace);
    // Device scratch: the round's rows and the model's inputs.
    const std::size_t scratch_sizes[] = {
        align(sizeof(double) * b * m.width()), align(sizeof(std::int64_t) * b * 3),
        align(sizeof(float) * b * config.model.inputs), align(sizeof(float) * b), align(b),
        align(sizeof(std::int64_t) * b), align(b * std::max<std::int64_t>(windows, 1))};
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
    cuda_check(cudaDeviceSynchronize(), "resident stream setup");
    m.tensors.model.x = inputs.x;
    m.tensors.model.dt = inputs.dt;
    m.tensors.model.active = inputs.accepted;
    m.tensors.model.out = nullptr;  // the kernel writes the mapped outputs
  }
}

ResidentStream::~ResidentStream() = default;

std::int64_t ResidentStream::clusters() const { return impl_->clusters; }

std::vector<std::int64_t> ResidentStream::stage_times() const {
  const Impl& m = *impl_;
  if (!m.trace) return {};
  std::atomic_thread_fence(std::memory_order_seq_cst);
  const volatile std::int64_t* stamps = m.trace;
  std::vector<std::int64_t> times(static_cast<std::size_t>(stamps[kTraceSlots - 1]));
  for (std::size_t i = 0; i < times.size(); ++i) times[i] = stamps[i] - stamps[0];
  return times;
}

void ResidentStream::stop() { impl_->stop(); }

void ResidentStream::step(const double* in_f64, const std::int64_t* in_i64, double* result) {
  Impl& m = *impl_;
  const std::int64_t b = m.config.model.batch;
  cuda_check(cudaSetDevice(m.device), "cudaSetDevice");
  std::memcpy(m.in_f64, in_f64, sizeof(double) * b * m.width());
  std::memcpy(m.in_i64, in_i64, sizeof(std::int64_t) * b * 3);
  if (!m.running) m.launch();
  std::atomic_thread_fence(std::memory_order_seq_cst);  // the round before its number
  *m.request = ++m.issued;
  const auto start = std::chrono::steady_clock::now();
  for (std::int64_t c = 0; c < m.clusters; ++c) {
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
  const std::int64_t outputs = m.config.model.outputs();
  for (std::int64_t i = 0; i < b; ++i) {
    double* row = result + i * (outputs + 2);
    for (std::int64_t j = 0; j < outputs; ++j) row[j] = m.out[i * outputs + j];
    row[outputs] = double(m.codes[2 * i]);
    row[outputs + 1] = double(m.codes[2 * i + 1]);
  }
}

}  // namespace ma_kernels
