// The model step of the resident kernel (resident_stream.cu) with every
// weight on chip. A cluster of N blocks (16 where the GPU allows) keeps the
// model's weight matrices in its shared memory, in bf16, each block the
// slice it multiplies (accumulating in float32):
//
//   qkv        output columns [r q, (r + 1) q), q = 3C / N       -> exchange 1: gather
//   attention  block r = (head h, split s of the window), S = N / H blocks
//              a head; the out projection's columns of head h applied to
//              the block's unnormalised partial                   -> exchange 2: reduce
//   SwiGLU     hidden units [r u, (r + 1) u), u = M / N: their gate and
//              value rows of the up projection, their columns of the down
//              projection (a partial sum of its outputs)          -> exchange 3: reduce
//
// Every block keeps the residual stream h of the tile's rows itself, so the
// embedding and the LayerNorms need no exchange: three cluster barriers a
// layer (the graph path's kernel, transformer_stages.cuh, takes five and
// streams its float32 weights from L2). An exchange: each block writes its
// part into its own shared buffer, a cluster barrier, then every block reads
// the parts it needs from the others' (distributed shared memory). Two
// buffers alternate, so no part is overwritten while another block reads it.
#pragma once

#include <cuda_bf16.h>

#include <algorithm>

#include "cuda/transformer_stages.cuh"

namespace ma_kernels::resident_stages {

using step_stages::attend;
using step_stages::cg::cluster_group;
using step_stages::kAll;
using step_stages::kThreads;
using step_stages::kTile;
using step_stages::keys_seen;
using step_stages::kWarps;
using step_stages::group_sums;
using step_stages::rotate;
using step_stages::warp_sum;
using step_stages::write_key;

constexpr int kMaxBlocks = 16;  // of a cluster (the largest size Hopper allows)
constexpr int kTraceSlots = 128;  // stage stamps of a round; the last holds their count

__device__ __forceinline__ std::uint64_t global_ns() {
  std::uint64_t t;
  asm volatile("mov.u64 %0, %%globaltimer;" : "=l"(t));
  return t;
}

// How the model is split over the cluster, and where each part lives in a
// block's shared memory (offsets in bytes). Host-computed (plan()).
struct OnChip {
  int blocks;  // N
  int q;       // qkv columns per block
  int splits;  // S: blocks per head (blocks past H S sit attention out)
  int units;   // u: hidden units per block
  int embed_k; // F + 2 frequencies + 1
  // bf16 weights: per layer [qkv q x C][out C x D][up 2u x C][down C x u],
  // then the embedding [C x F], the time features [C x (2 f + 1)] and the
  // heads [outputs x C].
  std::size_t layer_bytes, embed, time, head;
  // float32 activations.
  std::size_t h, xs, qkv, act, warp_part, part, weight, exchange, rope, outputs;
  std::size_t exchange_stride;  // floats per row of a part: C + 2
  std::size_t bytes;            // in all
};

inline std::size_t align16(std::size_t n) { return (n + 15) / 16 * 16; }

// The split of `s` over `blocks`, or bytes = 0 where it does not divide.
inline OnChip plan(const StepShape& s, int blocks) {
  OnChip o{};
  const int c = s.model_dim, d = s.head_dim();
  // u even (bf16 pairs), C a multiple of 16 (project's steps)
  if ((3 * c) % blocks || s.hidden % (2 * blocks) || c % 16 || s.heads > blocks) return o;
  o.blocks = blocks;
  o.q = 3 * c / blocks;
  o.splits = blocks / s.heads;
  o.units = s.hidden / blocks;
  o.embed_k = s.inputs + 2 * s.frequencies + 1;
  const std::size_t bf = sizeof(__nv_bfloat16), f = sizeof(float);
  o.layer_bytes = align16(bf * (std::size_t(o.q) * c + std::size_t(c) * d +
                                3 * std::size_t(o.units) * c));
  std::size_t at = o.layer_bytes * s.layers;
  const auto take = [&](std::size_t n) {
    const std::size_t here = at;
    at += align16(n);
    return here;
  };
  o.embed = take(bf * c * s.inputs);
  o.time = take(bf * c * (2 * s.frequencies + 1));
  o.head = take(bf * s.outputs() * c);
  o.exchange_stride = c + 2;
  o.h = take(f * kTile * c);
  o.xs = take(f * kTile * std::max({c, o.embed_k, o.units}));
  o.qkv = take(f * kTile * 3 * d);
  o.act = take(f * kTile * 2 * o.units);
  o.warp_part = take(f * kWarps * (d + 2));
  o.part = take(f * kTile * (d + 2));
  o.weight = take(f * 3 * kTile * blocks);  // weights, maxima, sums
  o.exchange = take(f * 2 * kTile * o.exchange_stride);
  o.rope = take(f * 2 * kTile * d / 2);
  o.outputs = take(f * kTile * s.outputs());
  o.bytes = at;
  return o;
}

// out[i] = bf16 of in[i] for i < n, by the block's threads.
__device__ inline void to_bf16(__nv_bfloat16* out, const float* in, int n) {
  for (int i = threadIdx.x; i < n; i += blockDim.x) out[i] = __float2bfloat16(in[i]);
}

// Rows: the most rows of a tile, 1 where the batch is one instrument (the
// projections then sum no absent rows).
template <int D, int Rows>
struct OnChipStep {
  const StepShape& s;
  const StepTensors& t;
  const OnChip& o;
  cluster_group& cluster;
  unsigned char* shared;
  int rank, warp, lane;
  std::int64_t row0 = 0;
  int rows = 0;
  int buffer = 0;  // the exchange buffer the next exchange writes
  std::int64_t* trace = nullptr;  // stage stamps (cluster 0's, when tracing)
  int stamps = 0;

  // Stamps the time of this point of the round (thread 0 of block 0).
  __device__ void mark() {
    if (trace && rank == 0 && threadIdx.x == 0 && stamps < kTraceSlots - 1) {
      trace[stamps] = std::int64_t(global_ns());
    }
    ++stamps;
  }

  template <typename T>
  __device__ T* at(std::size_t offset) const {
    return reinterpret_cast<T*>(shared + offset);
  }
  __device__ const __nv_bfloat16* layer_weights(int l) const {
    return at<__nv_bfloat16>(o.layer_bytes * l);
  }
  __device__ float* part_of(int block) const {  // the exchange buffer read now, of a block
    return cluster.map_shared_rank(at<float>(o.exchange), block) +
           (buffer ^ 1) * kTile * o.exchange_stride;
  }
  // Element `offset` of the part of each block x < n (0 past n), the loads
  // issued together: one distributed-shared-memory round trip, not n.
  __device__ void gather(int n, std::size_t offset, float (&v)[kMaxBlocks]) const {
#pragma unroll
    for (int x = 0; x < kMaxBlocks; ++x) v[x] = x < n ? part_of(x)[offset] : 0.f;
  }
  // h[r] += bias + the sum over blocks x < n of their parts' rows r, each
  // times weight[r, x] (weight [rows, n], or none).
  __device__ void add_parts(int n, const float* weight, const float* bias) const {
    const int c = s.model_dim;
    float* hs = at<float>(o.h);
    for_each_cell(rows, c, [&](int r, int j) {
      float v[kMaxBlocks], y = 0.f;
      gather(n, r * o.exchange_stride + j, v);
#pragma unroll
      for (int x = 0; x < kMaxBlocks; ++x) {
        if (x < n) y = fmaf(weight ? weight[r * n + x] : 1.f, v[x], y);
      }
      hs[r * c + j] += y + __ldg(bias + j);
    });
    __syncthreads();
  }

  __device__ float* own_part() const {
    return at<float>(o.exchange) + buffer * kTile * o.exchange_stride;
  }
  __device__ bool active(std::int64_t b) const {
    return __ldcg(reinterpret_cast<const signed char*>(t.active) + b) != 0;
  }
  __device__ int head() const { return rank / o.splits; }
  __device__ bool attends() const { return rank < s.heads * o.splits; }

  // This block's slices of every weight matrix into shared memory, in bf16.
  __device__ void load_weights() const {
    const int c = s.model_dim, u = o.units;
    for (int l = 0; l < s.layers; ++l) {
      const float* const* p = t.layer[l];
      __nv_bfloat16* w = const_cast<__nv_bfloat16*>(layer_weights(l));
      to_bf16(w, p[kStepQkvWeight] + std::int64_t(rank) * o.q * c, o.q * c);
      w += o.q * c;
      if (attends()) {  // out[:, head columns]: row n is out[n, h D : h D + D]
        for (int n = 0; n < c; ++n) to_bf16(w + n * D, p[kStepOutWeight] + n * c + head() * D, D);
      }
      w += c * D;
      to_bf16(w, p[kStepUpWeight] + std::int64_t(rank) * u * c, u * c);  // gate rows
      to_bf16(w + u * c, p[kStepUpWeight] + (std::int64_t(s.hidden) + rank * u) * c, u * c);
      w += 2 * u * c;
      for (int n = 0; n < c; ++n) to_bf16(w + n * u, p[kStepDownWeight] + n * s.hidden + rank * u, u);
    }
    to_bf16(at<__nv_bfloat16>(o.embed), t.embed[kStepEmbedWeight], c * s.inputs);
    to_bf16(at<__nv_bfloat16>(o.time), t.embed[kStepTimeWeight], c * (o.embed_k - s.inputs));
    if (rank == 0) {
      const int logits = 3 * s.horizons;
      to_bf16(at<__nv_bfloat16>(o.head), t.head[kStepDirectionWeight], logits * c);
      to_bf16(at<__nv_bfloat16>(o.head) + logits * c, t.head[kStepRegressionWeight],
              s.regression * c);
    }
    __syncthreads();
  }

  // out[r * stride + n] = xs[r, 0:k] . W[n] + bias(n) for n < n_out and
  // rows r, W [n_out, k] in shared memory (k a multiple of 16); bias(n) is
  // bias[n] below `split`, then second_bias[n - split] (each may be null: 0).
  // A group of eight lanes an output, four at a time a warp, so that a short
  // projection takes few dependent steps. A group starts its row at a
  // different sixteenth of it: the four rows a warp reads meet on different
  // banks.
  __device__ void project(const __nv_bfloat16* w, int k, int n_out, const float* xs, float* out,
                          int stride, const float* bias, int split,
                          const float* second_bias) const {
    const int group = lane / 8, sub = lane % 8, steps = k / 16;
#pragma unroll 1
    for (int n0 = 4 * warp; n0 < n_out; n0 += 4 * kWarps) {
      const int n = n0 + group;
      float acc[Rows] = {};
      if (n < n_out) {
        const __nv_bfloat16* row = w + std::int64_t(n) * k;
        int piece = (2 * group) % steps;  // the sixteenth of the row read now
        for (int j = 0; j < steps; ++j) {
          const int i = 16 * piece + 2 * sub;
          const float2 wi = __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(row + i));
#pragma unroll
          for (int r = 0; r < Rows; ++r) {
            if (r < rows) acc[r] = fmaf(xs[r * k + i], wi.x, fmaf(xs[r * k + i + 1], wi.y, acc[r]));
          }
          piece = piece + 1 == steps ? 0 : piece + 1;  // no division per step
        }
      }
      static_assert(Rows <= 8, "a group's eight lanes hold the sums of its rows");
      const float y = group_sums<Rows, 8>(acc, lane);  // of row `sub`
      if (n < n_out && sub < rows) {  // rows <= Rows
        const float* b = n < split ? (bias ? bias + n : nullptr)
                                   : (second_bias ? second_bias + n - split : nullptr);
        out[sub * stride + n] = y + (b ? __ldg(b) : 0.f);
      }
    }
  }

  // out[r, n] = xs[r, 0:k] . W[n] for n < C, W [C, k] with k small: a
  // thread an output, every row.
  __device__ void project_short(const __nv_bfloat16* w, int k, const float* xs, int xs_stride,
                                float* out, std::size_t out_stride) const {
#pragma unroll 1
    for (int n = threadIdx.x; n < s.model_dim; n += kThreads) {
      float acc[Rows] = {};
      for (int i = 0; i < k; i += 2) {
        const float2 wi =
            __bfloat1622float2(*reinterpret_cast<const __nv_bfloat162*>(w + n * k + i));
#pragma unroll
        for (int r = 0; r < Rows; ++r) {
          if (r < rows) {
            acc[r] = fmaf(xs[r * xs_stride + i], wi.x, fmaf(xs[r * xs_stride + i + 1], wi.y, acc[r]));
          }
        }
      }
#pragma unroll
      for (int r = 0; r < Rows; ++r) {
        if (r < rows) out[r * out_stride + n] = acc[r];
      }
    }
  }

  // LayerNorm of each row's h into xs [r, 0:C].
  __device__ void layer_norm(const float* weight, const float* bias) const {
    const int c = s.model_dim;
    const float* h = at<float>(o.h);
    float* xs = at<float>(o.xs);
#pragma unroll 1
    for (int r = warp; r < rows; r += kWarps) {
      const float* row = h + r * c;
      step_stages::warp_layer_norm([&](int i) { return row[i]; }, c, weight, bias, xs + r * c,
                                   lane);
    }
    __syncthreads();
  }

  // h = the embedding of each row's inputs and dt (every block, no exchange).
  __device__ void embed() const {
    const int f = s.inputs, k = o.embed_k, c = s.model_dim;
    float* xs = at<float>(o.xs);
    step_stages::embed_inputs(s, t, row0, rows, xs);
    __syncthreads();
    float* h = at<float>(o.h);
    const __nv_bfloat16* we = at<__nv_bfloat16>(o.embed);
    const __nv_bfloat16* wt = at<__nv_bfloat16>(o.time);
    for_each_cell(rows, c, [&](int r, int n) {
      float from_x = 0.f, from_time = 0.f;
      for (int j = 0; j < f; ++j) from_x = fmaf(__bfloat162float(we[n * f + j]), xs[r * k + j], from_x);
      for (int j = f; j < k; ++j) {
        from_time = fmaf(__bfloat162float(wt[n * (k - f) + j - f]), xs[r * k + j], from_time);
      }
      h[r * c + n] = (from_x + t.embed[kStepEmbedBias][n]) + (from_time + t.embed[kStepTimeBias][n]);
    });
    __syncthreads();
  }

  __device__ void exchange() {
    mark();  // this block's part written
    cluster.sync();
    buffer ^= 1;
    mark();  // every block's
  }

  // A layer is two halves, each: LayerNorm, a projection by this block's
  // slice, an exchange, h += the blocks' parts. Both halves run the same
  // code (one call site of each function in the kernel: a layer is ~60 KB
  // of SASS, not ~100).
  //
  //   attention half: qkv columns -> exchange 1, q, k, v of the block's head
  //     gathered -> its split of the head's window -> the out projection's
  //     columns of the head on the unnormalised partial (with its max and
  //     sum) -> exchange 2 -> h += the softmax-weighted sum over blocks
  //   mlp half: gate and value of this block's hidden units -> SwiGLU ->
  //     their part of the down projection -> exchange 3 -> h += the sum
  __device__ void half_layer(int half) {
    const int l = half / 2, c = s.model_dim, u = o.units;
    const bool attention = half % 2 == 0;
    const float* const* p = t.layer[l];
    layer_norm(p[attention ? kStepNorm1Weight : kStepNorm2Weight],
               p[attention ? kStepNorm1Bias : kStepNorm2Bias]);
    mark();
    // qkv columns into this block's part, or gate then value units into act
    const __nv_bfloat16* w = layer_weights(l);
    const float* bias = p[attention ? kStepQkvBias : kStepUpBias];
    const int n_out = attention ? o.q : 2 * u;
    project(attention ? w : w + o.q * c + c * D, c, n_out, at<float>(o.xs),
            attention ? own_part() : at<float>(o.act), attention ? int(o.exchange_stride) : n_out,
            bias + rank * (attention ? o.q : u), attention ? n_out : u,
            attention ? nullptr : bias + s.hidden + rank * u);
    if (attention) {
      exchange();
      gather_qkv();
      attend_split(l);
    } else {
      swiglu();
    }
    if (!attention || attends()) {
      const float* xs = attention ? at<float>(o.part) : at<float>(o.xs);
      project_short(w + o.q * c + (attention ? 0 : c * D + 2 * u * c), attention ? D : u, xs,
                    attention ? D + 2 : u, own_part(), o.exchange_stride);
    }
    if (attention && attends()) {  // the partial's max and sum beside it
      const float* part = at<float>(o.part);
      float* mine = own_part();
      for (int r = threadIdx.x; r < rows; r += kThreads) {
        mine[r * o.exchange_stride + c] = part[r * (D + 2) + D];
        mine[r * o.exchange_stride + c + 1] = part[r * (D + 2) + D + 1];
      }
    }
    exchange();
    if (attention) softmax_weights();
    add_parts(attention ? s.heads * o.splits : o.blocks, attention ? at<float>(o.weight) : nullptr,
              p[attention ? kStepOutBias : kStepDownBias]);
    mark();
  }

  // After exchange 1: the q, k and v of this block's head from the blocks
  // that hold their columns.
  __device__ void gather_qkv() {
    if (!attends()) return;
    const int c = s.model_dim;
    float* qkv = at<float>(o.qkv);
#pragma unroll 1
    for (int i = threadIdx.x; i < rows * 3 * D; i += kThreads) {
      const int r = i / (3 * D), j = i % (3 * D);
      const int column = j / D * c + head() * D + j % D;  // of q, k or v
      qkv[i] = part_of(column / o.q)[r * o.exchange_stride + column % o.q];
    }
    __syncthreads();
    mark();
  }

  // This block's split of its head's window for each row: the unnormalised
  // output, max and sum into part [r, 0:D + 2] (blocks past the heads: none).
  __device__ void attend_split(int l) {
    constexpr int E = D / 4;
    const int cap = s.capacity(l), dilation = s.dilation[l];
    const int h = head(), split = rank % o.splits, g = lane / 4;
    const step_stages::LaneDims<D> dim(lane);
    // Warps per row, each a sub-range of the block's keys: kWarps / rows
    // rounded down to a power of two, so that items split by shifts.
    static_assert(kWarps == 8, "warps per row: 8, 4, 2 or 1");
    const int per_row_log2 = rows <= 1 ? 3 : rows == 2 ? 2 : rows <= 4 ? 1 : 0;
    const int per_row = 1 << per_row_log2;
    const int per = (s.window + o.splits - 1) / o.splits;  // keys per split
    float* warp_part = at<float>(o.warp_part);
    float* part = at<float>(o.part);
    if (attends()) {
      const float* cos = at<float>(o.rope);
      const float* sin = cos + kTile * D / 2;
#pragma unroll 1
      for (int item = warp; item < rows * per_row; item += kWarps) {
        const int r = item >> per_row_log2, sub = item & (per_row - 1);
        const std::int64_t b = row0 + r, p = __ldcg(t.pos + b);
        const bool writes = split == 0 && sub == 0 && g == 0 && active(b);  // loaded beside p
        const float* in = at<float>(o.qkv) + r * 3 * D;
        float q[E], k[E], v[E];
#pragma unroll
        for (int e = 0; e < E; ++e) {
          q[e] = in[dim(e)];
          k[e] = in[D + dim(e)];
          v[e] = in[2 * D + dim(e)];
        }
        rotate(q, k, cos + r * (D / 2), sin + r * (D / 2), dim);
        const std::int64_t ring = (b * s.heads + h) * std::int64_t(cap) * D;
        float* ring_k = t.keys[l] + ring;
        float* ring_v = t.values[l] + ring;
        const int p_slot = int(p % cap);  // the query's ring slot
        const int seen = keys_seen(p, s.window, dilation);
        const int lo = split * per, hi = min(seen, lo + per);
        const int per_sub = (max(hi - lo, 0) + per_row - 1) >> per_row_log2;
        const int j0 = lo + sub * per_sub, j1 = min(hi, j0 + per_sub);
        float m, sum, acc[E];
        attend<D>(q, k, v, ring_k, ring_v, p_slot, dilation, cap, j0, j1, lane, m, sum, acc);
        if (writes) write_key<D>(ring_k, ring_v, p_slot, k, v, dim);
        float* out = warp_part + warp * (D + 2);
        if (g == 0) {
#pragma unroll
          for (int e = 0; e < E; ++e) out[dim(e)] = acc[e];
        }
        if (lane == 0) {
          out[D] = m;
          out[D + 1] = sum;
        }
      }
      __syncthreads();
      // Merge each row's warps into part [r, 0:D] (unnormalised), max, sum.
#pragma unroll 1
      for (int i = threadIdx.x; i < rows * (D + 1); i += kThreads) {
        const int r = i / (D + 1), d = i % (D + 1);
        const float* w = warp_part + (r * per_row) * (D + 2);
        float top = -INFINITY;
        for (int x = 0; x < per_row; ++x) top = fmaxf(top, w[x * (D + 2) + D]);
        float acc = 0.f, sum = 0.f;
        for (int x = 0; x < per_row; ++x) {
          const float m = w[x * (D + 2) + D];
          const float scale = m == -INFINITY ? 0.f : expf(m - top);
          if (d < D) acc += scale * w[x * (D + 2) + d];
          sum += scale * w[x * (D + 2) + D + 1];
        }
        if (d < D) {
          part[r * (D + 2) + d] = acc;
        } else {
          part[r * (D + 2) + D] = top;
          part[r * (D + 2) + D + 1] = sum;
        }
      }
      __syncthreads();
    }
  }

  // The SwiGLU of each row's gate and value units into xs [r, 0:u].
  __device__ void swiglu() const {
    const int u = o.units;
    const float* act = at<float>(o.act);
    __syncthreads();
    float* hidden = at<float>(o.xs);  // free until the next LayerNorm
    for_each_cell(kTile, u, [&](int r, int j) {
      const float gate = r < rows ? act[r * 2 * u + j] : 0.f;
      hidden[r * u + j] = r < rows ? gate / (1.f + expf(-gate)) * act[r * 2 * u + u + j] : 0.f;
    });
    __syncthreads();
  }

  // After exchange 2: the weight of each block's partial in its head's output.
  __device__ void softmax_weights() const {
    const int c = s.model_dim;
    // weight[r, x] = exp(m_x - max of its head) / the head's sum, per block
    // x: each thread (row, block) loads that block's max and sum into shared
    // memory, then takes the max and the sum over its head's `splits` blocks.
    const int attending = s.heads * o.splits;
    float* weight = at<float>(o.weight);  // [rows, attending] weights, maxima, sums
    float* maxima = weight + kTile * o.blocks;
    float* sums = maxima + kTile * o.blocks;
    for_each_cell(rows, attending, [&](int r, int x) {
      // Both loads before either store: a store to shared memory may alias
      // the other block's part, so one load a store took two round trips.
      const float* part = part_of(x) + r * o.exchange_stride + c;
      const float m = part[0], sum = part[1];
      maxima[r * attending + x] = m;
      sums[r * attending + x] = sum;
    });
    __syncthreads();
    // Cell (g, y): block y of its head in group g = (row, head), at g * splits + y.
    for_each_cell(rows * s.heads, o.splits, [&](int g, int y) {
      const int first = g * o.splits, i = first + y;
      float top = -INFINITY, total = 0.f;
#pragma unroll 1
      for (int x = first; x < first + o.splits; ++x) top = fmaxf(top, maxima[x]);
#pragma unroll 1
      for (int x = first; x < first + o.splits; ++x) {
        if (maxima[x] != -INFINITY) total += expf(maxima[x] - top) * sums[x];
      }
      weight[i] = maxima[i] == -INFINITY ? 0.f : expf(maxima[i] - top) / total;
    });
    __syncthreads();
  }

  // The heads' outputs of the tile's rows into out [B, outputs] (block 0):
  // each horizon's direction probabilities (the softmax of its 3 logits),
  // then the regression outputs.
  __device__ void heads(float* out) const {
    const int c = s.model_dim, logits = 3 * s.horizons, outputs = s.outputs();
    float* y = at<float>(o.outputs);
    layer_norm(t.head[kStepNormWeight], t.head[kStepNormBias]);
    project(at<__nv_bfloat16>(o.head), c, outputs, at<float>(o.xs), y, outputs,
            t.head[kStepDirectionBias], logits, t.head[kStepRegressionBias]);
    __syncthreads();
    const int per_row = s.horizons + s.regression;
    for_each_cell(rows, per_row, [&](int r, int j) {
      const float* in = y + r * outputs;
      float* to = out + (row0 + r) * outputs;
      if (j >= s.horizons) {
        to[logits + j - s.horizons] = in[logits + j - s.horizons];
        return;
      }
      const float top = fmaxf(in[3 * j], fmaxf(in[3 * j + 1], in[3 * j + 2]));
      const float e0 = expf(in[3 * j] - top), e1 = expf(in[3 * j + 1] - top),
                  e2 = expf(in[3 * j + 2] - top), total = e0 + e1 + e2;
      to[3 * j] = e0 / total;
      to[3 * j + 1] = e1 / total;
      to[3 * j + 2] = e2 / total;
    });
  }

  // The model on the tile of rows [row0, row0 + rows), whose inputs are
  // ready: every stage, the outputs into out (heads()), then pos += active. The
  // caller's cluster barrier comes first; no barrier is needed after (the
  // next tile's first exchange follows block 0's last reads of the parts).
  __device__ void run(std::int64_t first_row, int tile_rows, float* out) {
    row0 = first_row;
    rows = tile_rows;
    step_stages::rope_angles<D>(t.pos, row0, rows, at<float>(o.rope),
                                at<float>(o.rope) + kTile * D / 2);
    embed();
    mark();
#pragma unroll 1
    for (int half = 0; half < 2 * s.layers; ++half) half_layer(half);
    if (rank == 0) {
      heads(out);
      __syncthreads();
      if (int(threadIdx.x) < rows && active(row0 + threadIdx.x)) t.pos[row0 + threadIdx.x] += 1;
    }
  }
};

}  // namespace ma_kernels::resident_stages
