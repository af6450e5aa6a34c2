// The stages of one streaming step of the MA-Transformer on a thread-block
// cluster, shared by the one-shot kernel (transformer_step.cu) and the
// resident one (resident_stream.cu).
//
// A cluster of kCluster blocks owns a tile of kTile sequences. The stages are
// separated by cluster barriers (release/acquire at cluster scope); between
// stages the activations live in a small global workspace. Every load of
// data that changes between steps (activations, inputs, positions, the KV
// rings) is ld.cg, never through L1: a resident kernel's SM may still hold
// the line from an earlier step. Weights never change: read-only cache.
//
//   embed + time features -> h                  | per layer:
//   A  LayerNorm, qkv projection                 -> qkv
//   B  rotary, ring write, windowed attention    -> partial (m, l, acc) per split
//   C  combine splits, out projection + residual -> h
//   D  LayerNorm, SwiGLU up projection           -> gate and value
//   E  silu(gate) * value, down projection + residual -> h
//   heads (LayerNorm, direction, regression)     -> out; pos += active
//
// In the projections a warp owns whole output columns: its lanes stride the
// weight row (coalesced, each weight read once per cluster) against the
// tile's rows staged in shared memory. In attention a warp owns one
// (sequence, head, split of the window); eight groups of four lanes take a
// key each (a lane holds D/4 dims), with an online softmax per group merged
// across groups by shuffles, then across splits in stage C.
#pragma once

#include <cooperative_groups.h>

#include <algorithm>
#include <cmath>
#include <limits>

#include "cuda/cells.cuh"
#include "transformer_step.h"

namespace ma_kernels::step_stages {

namespace cg = cooperative_groups;

constexpr int kCluster = 8;  // blocks per cluster (the portable maximum)
constexpr int kWarps = 8;
constexpr int kThreads = 32 * kWarps;
constexpr int kTile = 8;        // sequences per cluster
constexpr int kGroups = 8;      // key groups of four lanes in a warp
constexpr int kMaxModelDim = 256;
constexpr unsigned kAll = 0xffffffffu;

// Where each sequence's activations live in the workspace (floats).
struct Layout {
  int splits;  // of each (sequence, head)'s window across warps
  int kmax;    // widest row staged in shared memory
  int act;     // qkv [3C] or the up projection [2M], after h [C]
  int partial; // per (head, split): D accumulators, max, sum
  int stride;
};

inline Layout layout_of(const StepShape& s) {
  Layout lay{};
  const int rows = static_cast<int>(std::min<std::int64_t>(s.batch, kTile));
  const int warps = kCluster * kWarps;
  lay.splits = std::clamp(warps / (rows * s.heads), 1, std::max(1, s.window / kGroups));
  lay.kmax = std::max({s.inputs + 2 * s.frequencies + 1, s.model_dim, s.hidden});
  lay.act = s.model_dim;
  lay.partial = lay.act + std::max(3 * s.model_dim, 2 * s.hidden);
  lay.stride = lay.partial + s.heads * lay.splits * (s.head_dim() + 2);
  return lay;
}

__device__ __forceinline__ float warp_sum(float x) {
#pragma unroll
  for (int offset = 16; offset > 0; offset /= 2) x += __shfl_xor_sync(kAll, x, offset);
  return x;
}

// Sums each of v[0:N] over the N lanes of this lane's group (lanes that
// differ only in their low log2(N) bits, N a power of two up to 32); returns,
// at the lane whose low bits are i, the sum of v[i]. Each step halves what a
// lane holds and sends the other half to its partner: N - 1 shuffles in
// all, against N log2(N) for a warp_sum of each value (and far less code).
// The steps are a template recursion, not a loop over `half`: nvcc left
// that loop rolled, so v was indexed at run time and lived in local memory.
template <int N, int Half = N / 2>
__device__ __forceinline__ float reduce_scatter(float (&v)[N], int lane) {
  if constexpr (Half == 0) {
    return v[0];
  } else {
    const bool upper = lane & Half;
#pragma unroll
    for (int i = 0; i < Half; ++i) {
      const float keep = upper ? v[i + Half] : v[i], send = upper ? v[i] : v[i + Half];
      v[i] = keep + __shfl_xor_sync(kAll, send, Half);
    }
    return reduce_scatter<N, Half / 2>(v, lane);
  }
}

// Sums each of v[0:N] over the Width lanes of this lane's group (lanes that
// differ only in their low log2(Width) bits; N <= Width, powers of two up to
// 32); returns, at the lanes whose low log2(N) bits are i, the sum of v[i].
template <int N, int Width>
__device__ __forceinline__ float group_sums(float (&v)[N], int lane) {
  float y = reduce_scatter(v, lane);
#pragma unroll
  for (int offset = N; offset < Width; offset *= 2) y += __shfl_xor_sync(kAll, y, offset);
  return y;
}

// acc[r] = xs[r, 0:k] . w[0:k] for the tile's first `rows` <= Rows rows
// (warp-uniform).
template <int Rows>
__device__ __forceinline__ void warp_dots(const float* xs, int row_stride, int k,
                                          const float* w, int rows, int lane,
                                          float (&acc)[Rows]) {
#pragma unroll
  for (int r = 0; r < Rows; ++r) acc[r] = 0.f;
  for (int i = lane; i < k; i += 32) {
    const float wi = __ldg(w + i);
#pragma unroll
    for (int r = 0; r < Rows; ++r) {
      if (r < rows) acc[r] = fmaf(xs[r * row_stride + i], wi, acc[r]);
    }
  }
#pragma unroll
  for (int r = 0; r < Rows; ++r) {
    if (r < rows) acc[r] = warp_sum(acc[r]);
  }
}

// LayerNorm of one row of c <= kMaxModelDim values by a warp: in(i) is
// element i; out[i] the result. The gains and biases are loaded first, so
// that their round trip overlaps the row's sums instead of following them.
template <typename In>
__device__ __forceinline__ void warp_layer_norm(const In& in, int c, const float* weight,
                                                const float* bias, float* out, int lane) {
  constexpr int kPerLane = kMaxModelDim / 32;
  float x[kPerLane], gain[kPerLane], shift[kPerLane];
  float sum = 0.f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int i = lane + 32 * j;
    gain[j] = i < c ? __ldg(weight + i) : 0.f;
    shift[j] = i < c ? __ldg(bias + i) : 0.f;
  }
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int i = lane + 32 * j;
    x[j] = i < c ? in(i) : 0.f;
    sum += x[j];
  }
  const float mean = warp_sum(sum) / c;
  float var = 0.f;
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const float centred = lane + 32 * j < c ? x[j] - mean : 0.f;
    var += centred * centred;
  }
  const float inv = 1.f / sqrtf(warp_sum(var) / c + kStepNormEps);
#pragma unroll
  for (int j = 0; j < kPerLane; ++j) {
    const int i = lane + 32 * j;
    if (i < c) out[i] = (x[j] - mean) * inv * gain[j] + shift[j];
  }
}

// Which of a head's D dims a lane of a key group (four lanes) holds: E =
// D / 4 of them, in chunks of up to four floats, lane c of the group chunks
// c, c + 4, ...: a group's loads of its i-th chunks read 64 contiguous bytes
// of a key, two whole sectors. (Each lane's dims in one run read every
// sector twice, half at a time; E scalar loads, E times.)
template <int D>
struct LaneDims {
  static constexpr int E = D / 4, kChunk = E < 4 ? E : 4;
  static_assert(kChunk == 2 || kChunk == 4, "head dims 8, 16, 32 or 64");
  int c;  // the lane within its group
  __device__ explicit LaneDims(int lane) : c(lane % 4) {}
  // The head dim of this lane's element e.
  __device__ int operator()(int e) const { return (e / kChunk * 4 + c) * kChunk + e % kChunk; }

  // x[e] = row[dim(e)] for this lane's elements, by ld.cg (rewritten between
  // the steps of a resident kernel), a float4 (float2) a chunk; row is 16-byte
  // aligned.
  __device__ void load_cg(const float* row, float (&x)[E]) const {
#pragma unroll
    for (int e = 0; e < E; e += kChunk) {
      if constexpr (kChunk == 4) {
        const float4 v = __ldcg(reinterpret_cast<const float4*>(row + (*this)(e)));
        x[e] = v.x;
        x[e + 1] = v.y;
        x[e + 2] = v.z;
        x[e + 3] = v.w;
      } else {
        const float2 v = __ldcg(reinterpret_cast<const float2*>(row + (*this)(e)));
        x[e] = v.x;
        x[e + 1] = v.y;
      }
    }
  }
};

// The keys a query at position p sees, min(window, p / dilation + 1): the
// 64-bit division (~70 instructions) only while the window is still
// filling, in the first window x dilation positions.
__device__ __forceinline__ int keys_seen(std::int64_t p, int window, int dilation) {
  return p >= std::int64_t(window - 1) * dilation ? window : int(p / dilation) + 1;
}

// Rotary on a lane's dims of q and k (pairs (2i, 2i + 1) of the head, in
// one chunk), at the angles cos and sin [D / 2] of the row.
template <int D>
__device__ __forceinline__ void rotate(float (&q)[D / 4], float (&k)[D / 4], const float* cos,
                                       const float* sin, const LaneDims<D>& dim) {
#pragma unroll
  for (int i = 0; i < D / 8; ++i) {
    const int pair = dim(2 * i) / 2;
    const float cs = cos[pair], sn = sin[pair];
    const float qe = q[2 * i], qo = q[2 * i + 1], ke = k[2 * i], ko = k[2 * i + 1];
    q[2 * i] = qe * cs - qo * sn;
    q[2 * i + 1] = qe * sn + qo * cs;
    k[2 * i] = ke * cs - ko * sn;
    k[2 * i + 1] = ke * sn + ko * cs;
  }
}

// Online softmax of q against keys j in [j0, j1) of one (sequence, head)'s
// ring, by a warp: key j is position p - j * dilation (j = 0: the new key,
// k and v, from registers); eight groups of four lanes take a key each, a
// lane holding its LaneDims of q, k, v and acc.
// On return every group holds the warp's merged max m, sum and acc.
template <int D>
__device__ __forceinline__ void attend(const float (&q)[D / 4], const float (&k)[D / 4],
                                       const float (&v)[D / 4], const float* ring_k,
                                       const float* ring_v, int p_slot, int dilation,
                                       int cap, int j0, int j1, int lane, float& m, float& sum,
                                       float (&acc)[D / 4]) {
  constexpr int E = D / 4;
  const int g = lane / 4;
  const LaneDims<D> dim(lane);
  const float scale = 1.f / sqrtf(float(D));
  m = -INFINITY;
  sum = 0.f;
#pragma unroll
  for (int e = 0; e < E; ++e) acc[e] = 0.f;
  // The ring slot of this lane's key, (p - j dilation) mod cap, from the
  // query's p_slot = p mod cap and kept as the keys step back: no 64-bit
  // modulo per key (~100 instructions each). Only keys j < j1 <= p /
  // dilation + 1 are read, so the slot read is that of a non-negative position.
  const int back = kGroups * dilation;
  int slot = p_slot - (j0 + g) * dilation;
  while (slot < 0) slot += cap;
  // kSteps steps at a time, every load of them issued before the first
  // product waits: loads of every lane, whatever its key (a slot of the
  // ring holds memory of the ring, whatever its position), the new key (j =
  // 0) then taken from registers and keys past j1 left out of the sums.
  // (Loads under `if (valid)` made each step its own branch: ptxas kept
  // every step's loads behind the previous step's arithmetic, one HBM round
  // trip a step; Nsight Compute at 256 sequences, notes/streaming.md.)
  constexpr int kSteps = D < 64 ? 2 : 1;  // at D = 64 its registers would spill
#pragma unroll 1
  for (int base = j0; base < j1; base += kSteps * kGroups) {  // warp-uniform trip count
    float kj[kSteps][E], vj[kSteps][E];
#pragma unroll
    for (int u = 0; u < kSteps; ++u) {
      dim.load_cg(ring_k + slot * D, kj[u]);
      dim.load_cg(ring_v + slot * D, vj[u]);
      slot -= back;
      while (slot < 0) slot += cap;
    }
#pragma unroll
    for (int u = 0; u < kSteps; ++u) {
      const int j = base + u * kGroups + g;
      if (j == 0) {
#pragma unroll
        for (int e = 0; e < E; ++e) {
          kj[u][e] = k[e];
          vj[u][e] = v[e];
        }
      }
      float part = 0.f;
#pragma unroll
      for (int e = 0; e < E; ++e) part = fmaf(q[e], kj[u][e], part);
      part += __shfl_xor_sync(kAll, part, 1);
      part += __shfl_xor_sync(kAll, part, 2);
      if (j < j1) {
        const float score = part * scale, top = fmaxf(m, score);
        const float rescale = expf(m - top), weight = expf(score - top);
        sum = sum * rescale + weight;
#pragma unroll
        for (int e = 0; e < E; ++e) acc[e] = acc[e] * rescale + weight * vj[u][e];
        m = top;
      }
    }
  }
#pragma unroll
  for (int offset = 4; offset < 32; offset *= 2) {  // merge the groups
    const float m_other = __shfl_xor_sync(kAll, m, offset);
    const float sum_other = __shfl_xor_sync(kAll, sum, offset);
    const float top = fmaxf(m, m_other);
    const float mine = m == -INFINITY ? 0.f : expf(m - top);
    const float theirs = m_other == -INFINITY ? 0.f : expf(m_other - top);
    sum = sum * mine + sum_other * theirs;
#pragma unroll
    for (int e = 0; e < E; ++e) {
      acc[e] = acc[e] * mine + __shfl_xor_sync(kAll, acc[e], offset) * theirs;
    }
    m = top;
  }
}

// The new key and value into their ring slot, by a warp's first group of
// lanes, after `attend` has read the ring: written before, the ring's loads
// in `attend` would wait on the stores (they may alias) and the stores on
// the active flag, two more round trips. `attend` takes the new key from
// registers and uses no ring key from this slot (keys 1 .. window - 1 back,
// dilation apart, all within the ring's capacity).
template <int D>
__device__ __forceinline__ void write_key(float* ring_k, float* ring_v, int p_slot,
                                          const float (&k)[D / 4], const float (&v)[D / 4],
                                          const LaneDims<D>& dim) {
  const std::int64_t at = std::int64_t(p_slot) * D;
#pragma unroll
  for (int e = 0; e < D / 4; ++e) {
    ring_k[at + dim(e)] = k[e];
    ring_v[at + dim(e)] = v[e];
  }
}

// Each row's inputs and time features [x, u, sin(u w + b), cos(u w + b)],
// u = log1p(max(dt, 0)), into xs [kTile, F + 2 f + 1] (zeros past rows), by
// the block; the embedding's input.
__device__ inline void embed_inputs(const StepShape& s, const StepTensors& t, std::int64_t row0,
                                    int rows, float* xs) {
  const int f = s.inputs, k = f + 2 * s.frequencies + 1;
  const float* freq = t.embed[kStepTimeFreq];
  const float* phase = t.embed[kStepTimePhase];
  for_each_cell(kTile, k, [&](int r, int j) {
    float v = 0.f;
    if (r < rows && j < f) {
      v = __ldcg(t.x + (row0 + r) * f + j);
    } else if (r < rows) {
      const float u = log1pf(fmaxf(__ldcg(t.dt + row0 + r), 0.f));
      const int q = j - f - 1;
      const int i_freq = q < 0 ? 0 : q % s.frequencies;
      const float angle = __fadd_rn(__fmul_rn(u, freq[i_freq]), phase[i_freq]);
      v = q < 0 ? u : q < s.frequencies ? sinf(angle) : cosf(angle);
    }
    xs[r * k + j] = v;
  });
}

struct Step {
  const StepShape& s;
  const StepTensors& t;
  const Layout& lay;
  float* ws;
  float* xs;         // shared [kTile, kmax]
  float* rope_cos;   // shared [kTile, D / 2]
  float* rope_sin;
  std::int64_t row0;
  int rows, warp, lane, gwarp;
  static constexpr int kWarpsInCluster = kCluster * kWarps;

  __device__ float* row(int r) const { return ws + (row0 + r) * lay.stride; }
  // The active flag (bytes rewritten between the steps of a resident kernel: ld.cg).
  __device__ bool active(std::int64_t b) const {
    return __ldcg(reinterpret_cast<const signed char*>(t.active) + b) != 0;
  }

  // LayerNorm of each row's h into xs [r, 0:C] (zeros past `rows`).
  __device__ void layer_norm(const float* weight, const float* bias) const {
    const int c = s.model_dim;
    for (int r = warp; r < kTile; r += kWarps) {
      if (r >= rows) {
        for (int i = lane; i < c; i += 32) xs[r * c + i] = 0.f;
        continue;
      }
      const float* h = row(r);
      warp_layer_norm([&](int i) { return __ldcg(h + i); }, c, weight, bias, xs + r * c, lane);
    }
    __syncthreads();
  }

  // The SwiGLU activations silu(gate) * value of the up projection's outputs
  // [rows, 2M] in the workspace, staged into xs [rows, M].
  __device__ void stage_swiglu() const {
    const int hidden = s.hidden;
    for_each_cell(kTile, hidden, [&](int r, int j) {
      float v = 0.f;
      if (r < rows) {
        const float gate = __ldcg(row(r) + lay.act + j);
        v = gate / (1.f + expf(-gate)) * __ldcg(row(r) + lay.act + hidden + j);
      }
      xs[r * hidden + j] = v;
    });
    __syncthreads();
  }

  // One projection of the tile's rows staged in xs [r, 0:k] (k a multiple
  // of 4): for each output n < n_out of this warp, y = xs[r] . W[n] + bias(n)
  // into out[r * stride + n] (added to what is there where `accumulate`).
  // W[n] and bias(n) come from the first matrix and bias below `split`, then
  // from the second ones at n - split. A warp takes kOuts outputs at a time,
  // a group of eight lanes each: lane `sub` of a group reads the float4s
  // 4 sub, 4 sub + 32, ... of its output's weight row (a group's load, 128
  // contiguous bytes) against each row's, and keeps one sum per row; the
  // group's sums meet by shuffles (group_sums), row `sub` at lane `sub`.
  // (Lanes over the whole row and 4 x 8 sums each spent two thirds of the
  // loop on selects and moves for a 32-way reduce-scatter.) Every projection
  // of the step calls this one function: the kernel holds one copy of it.
  // Rows bounds `rows` at compile time: 1 for a single sequence.
  struct Projection {
    const float* weight;
    const float* bias;
    int split;
    const float* second_weight;
    const float* second_bias;
    float* out;  // row 0 of the tile
    std::int64_t stride;
    bool accumulate;
  };

  template <int Rows>
  __device__ void project(int k, int n_out, const Projection& to) const {
    constexpr int kOuts = 4, kLanes = 32 / kOuts;  // outputs a warp, lanes an output
    static_assert(Rows <= kLanes, "a group's lanes hold the sums of its rows");
    const int group = lane / kLanes, sub = lane % kLanes;
#pragma unroll 1
    for (int n0 = gwarp; n0 < n_out; n0 += kOuts * kWarpsInCluster) {
      const int n = n0 + group * kWarpsInCluster;
      const int m = min(n, n_out - 1);
      const float* w = m < to.split ? to.weight + std::int64_t(m) * k
                                    : to.second_weight + std::int64_t(m - to.split) * k;
      float acc[Rows] = {};
      // kLoads float4s of the row in flight at once, then their products:
      // one L2 round trip for a row of 128 at one sequence; one at a time
      // for a tile of 8 (more would spill; its 16 warps an SM hide it).
      constexpr int kLoads = Rows == 1 ? 4 : 2, kStride = 4 * kLanes;
#pragma unroll 1
      for (int i0 = 4 * sub; i0 < k; i0 += kLoads * kStride) {
        float4 wi[kLoads];
#pragma unroll
        for (int q = 0; q < kLoads; ++q) {
          const int i = i0 + q * kStride;
          wi[q] = i < k ? __ldg(reinterpret_cast<const float4*>(w + i)) : float4{};
        }
#pragma unroll
        for (int q = 0; q < kLoads; ++q) {
          const int i = i0 + q * kStride;
          if (i >= k) break;
#pragma unroll
          for (int r = 0; r < Rows; ++r) {  // xs is zero past `rows`: no branch per row
            const float4 x = *reinterpret_cast<const float4*>(xs + r * k + i);
            acc[r] = fmaf(wi[q].x, x.x, fmaf(wi[q].y, x.y, fmaf(wi[q].z, x.z,
                     fmaf(wi[q].w, x.w, acc[r]))));
          }
        }
      }
      const float y = group_sums<Rows, kLanes>(acc, lane);  // of row `sub`
      if (n < n_out && sub < rows) {  // rows <= Rows
        float* at = to.out + sub * to.stride + n;
        const float bias = n < to.split ? to.bias[n] : to.second_bias[n - to.split];
        *at = (to.accumulate ? __ldcg(at) : 0.f) + (y + bias);
      }
    }
  }

  // The projection of xs by W [n, k] with bias into the workspace: at
  // column `column` of each row, or added to h (column 0) where `residual`.
  __device__ Projection to_workspace(const float* weight, const float* bias, int column,
                                     bool residual) const {
    // split past every output: all from the first matrix and bias
    return {weight, bias, std::numeric_limits<int>::max(), nullptr, nullptr, row(0) + column,
            lay.stride, residual};
  }

  template <int Rows>
  __device__ void embed() const {
    const int f = s.inputs, nf = 2 * s.frequencies + 1, k = f + nf;
    embed_inputs(s, t, row0, rows, xs);
    __syncthreads();
    for (int n = gwarp; n < s.model_dim; n += kWarpsInCluster) {
      float from_x[Rows], from_time[Rows];
      warp_dots(xs, k, f, t.embed[kStepEmbedWeight] + std::int64_t(n) * f, rows, lane, from_x);
      warp_dots(xs + f, k, nf, t.embed[kStepTimeWeight] + std::int64_t(n) * nf, rows, lane,
                from_time);
      if (lane == 0) {
#pragma unroll
        for (int r = 0; r < Rows; ++r) {
          if (r < rows) {
            row(r)[n] = (from_x[r] + t.embed[kStepEmbedBias][n]) +
                        (from_time[r] + t.embed[kStepTimeBias][n]);
          }
        }
      }
    }
  }

  template <int D>
  __device__ void attention(int layer) const {
    constexpr int E = D / 4;  // dims per lane
    const int c = s.model_dim, heads = s.heads, splits = lay.splits;
    const int cap = s.capacity(layer), dilation = s.dilation[layer];
    const int g = lane / 4;
    const LaneDims<D> dim(lane);
    for (int item = gwarp; item < rows * heads * splits; item += kWarpsInCluster) {
      const int split = item % splits, h = item / splits % heads, r = item / (splits * heads);
      const std::int64_t b = row0 + r, p = __ldcg(t.pos + b);
      const bool writes = split == 0 && g == 0 && active(b);  // loaded beside p
      const float* in = row(r) + lay.act + h * D;
      float q[E], k[E], v[E];
#pragma unroll
      for (int e = 0; e < E; ++e) {
        q[e] = __ldcg(in + dim(e));
        k[e] = __ldcg(in + c + dim(e));
        v[e] = __ldcg(in + 2 * c + dim(e));
      }
      const int p_slot = int(p % cap);  // the query's ring slot
      rotate(q, k, rope_cos + r * (D / 2), rope_sin + r * (D / 2), dim);
      const std::int64_t ring = (b * heads + h) * std::int64_t(cap) * D;
      float* ring_k = t.keys[layer] + ring;
      float* ring_v = t.values[layer] + ring;
      // Key j is position p - j * dilation (j = 0: the new one, from registers).
      const int seen = keys_seen(p, s.window, dilation);
      const int per = (s.window + splits - 1) / splits;
      const int j0 = split * per, j1 = min(seen, j0 + per);
      float m, sum, acc[E];
      attend<D>(q, k, v, ring_k, ring_v, p_slot, dilation, cap, j0, j1, lane, m, sum, acc);
      if (writes) write_key<D>(ring_k, ring_v, p_slot, k, v, dim);
      float* out = row(r) + lay.partial + (h * splits + split) * (D + 2);
      if (g == 0) {
#pragma unroll
        for (int e = 0; e < E; ++e) out[dim(e)] = acc[e];
      }
      if (lane == 0) {
        out[D] = m;
        out[D + 1] = sum;
      }
    }
  }

  // The attention output of every row into xs [r, 0:C], merging the splits.
  template <int D, int Rows>
  __device__ void combine() const {
    const int c = s.model_dim, splits = lay.splits;
    for_each_cell(kTile, c, [&](int r, int n) {
      const int h = n / D, d = n % D;
      float y = 0.f;
      if (r < rows) {
        // The splits' (acc, max, sum) kBatch at a time, their loads in flight
        // together (one L2 round trip a batch, not one a split), merged online.
        // A tile of many rows has few splits a row (2 for the ANCHORS model):
        // a batch of 16 would be mostly idle slots, each a load and an exp.
        constexpr int kBatch = Rows == 1 ? 16 : 4;
        const float* part = row(r) + lay.partial + h * splits * (D + 2);
        float top = -INFINITY, num = 0.f, den = 0.f;
        for (int q0 = 0; q0 < splits; q0 += kBatch) {
          float m[kBatch], acc[kBatch], sum[kBatch];
#pragma unroll
          for (int j = 0; j < kBatch; ++j) {
            const bool in = q0 + j < splits;
            const float* split = part + (q0 + j) * (D + 2);
            m[j] = in ? __ldcg(split + D) : -INFINITY;
            acc[j] = in ? __ldcg(split + d) : 0.f;
            sum[j] = in ? __ldcg(split + D + 1) : 0.f;
          }
          float batch_top = top;
#pragma unroll
          for (int j = 0; j < kBatch; ++j) batch_top = fmaxf(batch_top, m[j]);
          const float rescale = top == -INFINITY ? 0.f : expf(top - batch_top);
          num *= rescale;
          den *= rescale;
#pragma unroll
          for (int j = 0; j < kBatch; ++j) {
            const float w = m[j] == -INFINITY ? 0.f : expf(m[j] - batch_top);
            num += w * acc[j];
            den += w * sum[j];
          }
          top = batch_top;
        }
        y = num / den;
      }
      xs[r * c + n] = y;
    });
    __syncthreads();
  }

  // The heads' outputs into out [B, out_stride]: logits, then regression.
  template <int Rows>
  __device__ void heads(float* out, int out_stride) const {
    const int logits = 3 * s.horizons;
    project<Rows>(s.model_dim, s.outputs(),
            {t.head[kStepDirectionWeight], t.head[kStepDirectionBias], logits,
             t.head[kStepRegressionWeight], t.head[kStepRegressionBias], out + row0 * out_stride,
             out_stride, false});
  }
};

// Rotary angles of the positions of rows [row0, row0 + rows) into cos and
// sin [kTile, D / 2], in float64 (float32 would be off by whole radians at
// large positions), rounded to float32 as the model does.
template <int D>
__device__ void rope_angles(const std::int64_t* pos, std::int64_t row0, int rows, float* cos,
                            float* sin) {
  for (int i = threadIdx.x; i < kTile * D / 2; i += blockDim.x) {
    const int r = i / (D / 2), pair = i % (D / 2);
    const double angle =
        r < rows ? double(__ldcg(pos + row0 + r)) * pow(kStepRopeBase, -double(2 * pair) / D)
                 : 0.0;
    double sn, cs;
    sincos(angle, &sn, &cs);
    cos[i] = float(cs);
    sin[i] = float(sn);
  }
}

template <int D>
__device__ void rope_angles(const Step& step) {
  rope_angles<D>(step.t.pos, step.row0, step.rows, step.rope_cos, step.rope_sin);
}

// The model on the tile of at most Rows rows: every stage, then pos +=
// active. The caller has computed the rotary angles; out receives the heads'
// outputs.
template <int D, int Rows>
__device__ void model_stages(const Step& step, cg::cluster_group& cluster, float* out,
                             int out_stride) {
  const StepShape& s = step.s;
  const StepTensors& t = step.t;
  step.template embed<Rows>();
  cluster.sync();
  // A layer is two halves running the same code (one call site of each
  // function, so the kernel is half the size): LayerNorm and a projection into
  // the workspace (qkv, or the up projection's gate and value), then
  // attention and the merge of its splits (or SwiGLU) into xs, then the out
  // (or down) projection added to h.
#pragma unroll 1
  for (int half = 0; half < 2 * s.layers; ++half) {
    const int l = half / 2;
    const bool attention = half % 2 == 0;
    const float* const* p = t.layer[l];
    step.layer_norm(p[attention ? kStepNorm1Weight : kStepNorm2Weight],
                    p[attention ? kStepNorm1Bias : kStepNorm2Bias]);
    step.template project<Rows>(s.model_dim, attention ? 3 * s.model_dim : 2 * s.hidden,
                 step.to_workspace(p[attention ? kStepQkvWeight : kStepUpWeight],
                                   p[attention ? kStepQkvBias : kStepUpBias], step.lay.act, false));
    cluster.sync();
    if (attention) {
      step.template attention<D>(l);
      cluster.sync();
      step.template combine<D, Rows>();
    } else {
      step.stage_swiglu();
    }
    step.template project<Rows>(attention ? s.model_dim : s.hidden, s.model_dim,
                 step.to_workspace(p[attention ? kStepOutWeight : kStepDownWeight],
                                   p[attention ? kStepOutBias : kStepDownBias], 0, true));
    cluster.sync();
  }
  step.layer_norm(t.head[kStepNormWeight], t.head[kStepNormBias]);
  step.template heads<Rows>(out, out_stride);
  // Every read of pos in this cluster came before the last barrier.
  const int r = threadIdx.x;
  if (cluster.block_rank() == 0 && r < step.rows && step.active(step.row0 + r)) {
    t.pos[step.row0 + r] += 1;
  }
}

// The step of the cluster this block belongs to, over shared memory `shared`.
template <int D>
__device__ Step cluster_step(const StepShape& s, const StepTensors& t, const Layout& lay,
                             float* ws, float* shared, const cg::cluster_group& cluster) {
  const std::int64_t row0 = std::int64_t(blockIdx.x / kCluster) * kTile;
  return Step{s, t, lay, ws, shared, shared + kTile * lay.kmax,
              shared + kTile * lay.kmax + kTile * D / 2, row0,
              int(std::min<std::int64_t>(kTile, s.batch - row0)), int(threadIdx.x / 32),
              int(threadIdx.x % 32), int(cluster.block_rank()) * kWarps + int(threadIdx.x / 32)};
}

template <int D>
constexpr std::size_t shared_bytes(const Layout& lay) {
  return sizeof(float) * (kTile * std::size_t(lay.kmax) + kTile * D);
}

}  // namespace ma_kernels::step_stages
