// The streaming step on the CPU: each sequence (instrument) on its own, in
// parallel, the layers in order. The CUDA kernel splits the same arithmetic
// over a thread-block cluster; this file is the plainer reading of it.
#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "cpu/parallel.h"
#include "transformer_step.h"

namespace ma_kernels {
namespace {

// Eight partial sums: the compiler vectorises them without reassociating.
float dot(const float* a, const float* b, int n) {
  float acc[8] = {};
  int i = 0;
  for (; i + 8 <= n; i += 8) {
    for (int j = 0; j < 8; ++j) acc[j] += a[i + j] * b[i + j];
  }
  for (; i < n; ++i) acc[0] += a[i] * b[i];
  return ((acc[0] + acc[4]) + (acc[1] + acc[5])) + ((acc[2] + acc[6]) + (acc[3] + acc[7]));
}

// y[n] (+)= W[n] . x + bias[n] for W [N, K].
void linear(const float* weight, const float* bias, const float* x, int n_out, int k,
            float* y, bool accumulate) {
  for (int n = 0; n < n_out; ++n) {
    const float value = dot(weight + static_cast<std::int64_t>(n) * k, x, k) + bias[n];
    y[n] = accumulate ? y[n] + value : value;
  }
}

// LayerNorm of x [C] into y: biased variance, eps inside the root (as torch).
void layer_norm(const float* x, const float* weight, const float* bias, int c, float* y) {
  float mean = 0.f;
  for (int i = 0; i < c; ++i) mean += x[i];
  mean /= static_cast<float>(c);
  float var = 0.f;
  for (int i = 0; i < c; ++i) var += (x[i] - mean) * (x[i] - mean);
  const float inv = 1.f / std::sqrt(var / static_cast<float>(c) + kStepNormEps);
  for (int i = 0; i < c; ++i) y[i] = (x[i] - mean) * inv * weight[i] + bias[i];
}

// Rotates pairs (x[2i], x[2i+1]) by the float32 angles of position p (float64 angles).
void rope(float* x, const float* cos_p, const float* sin_p, int head_dim) {
  for (int i = 0; i < head_dim / 2; ++i) {
    const float even = x[2 * i], odd = x[2 * i + 1];
    x[2 * i] = even * cos_p[i] - odd * sin_p[i];
    x[2 * i + 1] = even * sin_p[i] + odd * cos_p[i];
  }
}

struct Scratch {
  std::vector<float> h, normed, qkv, y, hidden, features, cos_p, sin_p, scores;
  explicit Scratch(const StepShape& s)
      : h(s.model_dim), normed(s.model_dim), qkv(3 * s.model_dim), y(s.model_dim),
        hidden(2 * s.hidden), features(2 * s.frequencies + 1), cos_p(s.head_dim() / 2),
        sin_p(s.head_dim() / 2), scores(s.window) {}
};

void attention(const StepShape& s, const StepTensors& t, int layer, std::int64_t b,
               Scratch& w) {
  const int c = s.model_dim, d = s.head_dim(), cap = s.capacity(layer);
  const int dilation = s.dilation[layer];
  const std::int64_t p = t.pos[b];
  const float scale = 1.f / std::sqrt(static_cast<float>(d));
  for (int h = 0; h < s.heads; ++h) {
    float* q = w.qkv.data() + h * d;
    float* k = w.qkv.data() + c + h * d;
    const float* v = w.qkv.data() + 2 * c + h * d;
    rope(q, w.cos_p.data(), w.sin_p.data(), d);
    rope(k, w.cos_p.data(), w.sin_p.data(), d);
    float* ring_k = t.keys[layer] + (b * s.heads + h) * static_cast<std::int64_t>(cap) * d;
    float* ring_v = t.values[layer] + (b * s.heads + h) * static_cast<std::int64_t>(cap) * d;
    const std::int64_t slot = p % cap;
    if (t.active[b]) {
      std::copy(k, k + d, ring_k + slot * d);
      std::copy(v, v + d, ring_v + slot * d);
    }
    // Key j is position p - j * dilation; the new one (j = 0) from registers,
    // as the CUDA kernel takes it, so an inactive row still sees its own.
    const int seen = static_cast<int>(std::min<std::int64_t>(s.window, p / dilation + 1));
    float top = -std::numeric_limits<float>::infinity();
    for (int j = 0; j < seen; ++j) {
      const float* key = j == 0 ? k : ring_k + ((p - j * dilation) % cap) * d;
      w.scores[j] = dot(q, key, d) * scale;
      top = std::max(top, w.scores[j]);
    }
    float total = 0.f;
    float* y = w.y.data() + h * d;
    std::fill(y, y + d, 0.f);
    for (int j = 0; j < seen; ++j) {
      const float e = std::exp(w.scores[j] - top);
      total += e;
      const float* value = j == 0 ? v : ring_v + ((p - j * dilation) % cap) * d;
      for (int i = 0; i < d; ++i) y[i] += e * value[i];
    }
    for (int i = 0; i < d; ++i) y[i] /= total;
  }
}

void step_row(const StepShape& s, const StepTensors& t, std::int64_t b, Scratch& w) {
  const int c = s.model_dim, d = s.head_dim(), f = s.frequencies;
  // Inputs: embed(x) + time(dt), u = log1p(max(dt, 0)) -> [u, sin(u w + b), cos(u w + b)].
  const float u = std::log1p(std::max(t.dt[b], 0.f));
  w.features[0] = u;
  for (int i = 0; i < f; ++i) {
    const float angle = u * t.embed[kStepTimeFreq][i] + t.embed[kStepTimePhase][i];
    w.features[1 + i] = std::sin(angle);
    w.features[1 + f + i] = std::cos(angle);
  }
  linear(t.embed[kStepEmbedWeight], t.embed[kStepEmbedBias], t.x + b * s.inputs, c, s.inputs,
         w.h.data(), false);
  linear(t.embed[kStepTimeWeight], t.embed[kStepTimeBias], w.features.data(), c, 2 * f + 1,
         w.h.data(), true);
  for (int i = 0; i < d / 2; ++i) {
    const double angle = static_cast<double>(t.pos[b]) *
                         std::pow(kStepRopeBase, -static_cast<double>(2 * i) / d);
    w.cos_p[i] = static_cast<float>(std::cos(angle));
    w.sin_p[i] = static_cast<float>(std::sin(angle));
  }
  for (int l = 0; l < s.layers; ++l) {
    const float* const* p = t.layer[l];
    layer_norm(w.h.data(), p[kStepNorm1Weight], p[kStepNorm1Bias], c, w.normed.data());
    linear(p[kStepQkvWeight], p[kStepQkvBias], w.normed.data(), 3 * c, c, w.qkv.data(), false);
    attention(s, t, l, b, w);
    linear(p[kStepOutWeight], p[kStepOutBias], w.y.data(), c, c, w.h.data(), true);
    layer_norm(w.h.data(), p[kStepNorm2Weight], p[kStepNorm2Bias], c, w.normed.data());
    linear(p[kStepUpWeight], p[kStepUpBias], w.normed.data(), 2 * s.hidden, c,
           w.hidden.data(), false);
    for (int i = 0; i < s.hidden; ++i) {  // SwiGLU: silu(gate) * value
      const float gate = w.hidden[i];
      w.hidden[i] = gate / (1.f + std::exp(-gate)) * w.hidden[s.hidden + i];
    }
    linear(p[kStepDownWeight], p[kStepDownBias], w.hidden.data(), c, s.hidden, w.h.data(), true);
  }
  layer_norm(w.h.data(), t.head[kStepNormWeight], t.head[kStepNormBias], c, w.normed.data());
  float* out = t.out + b * s.outputs();
  linear(t.head[kStepDirectionWeight], t.head[kStepDirectionBias], w.normed.data(),
         3 * s.horizons, c, out, false);
  linear(t.head[kStepRegressionWeight], t.head[kStepRegressionBias], w.normed.data(),
         s.regression, c, out + 3 * s.horizons, false);
  if (t.active[b]) t.pos[b] += 1;
}

}  // namespace

void transformer_step_cpu(const StepShape& shape, const StepTensors& tensors) {
  parallel_for(shape.batch, 1, [&](std::int64_t begin, std::int64_t end) {
    Scratch scratch(shape);
    for (std::int64_t b = begin; b < end; ++b) step_row(shape, tensors, b, scratch);
  });
}

}  // namespace ma_kernels
