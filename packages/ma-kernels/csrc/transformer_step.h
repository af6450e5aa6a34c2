// One streaming step of the MA-Transformer (ma_model.MATransformer.step) as
// one kernel: a new tick's inputs of each instrument -> its logits and
// regression, against ring-buffer KV caches, for the model family the
// product streams (pre-norm blocks of rotary sliding-window attention with a
// dilation per layer and a SwiGLU MLP; learned Fourier features of dt).
// float32 throughout; ma_kernels/step.py checks every argument and documents
// the parameter order (kGlobal..., then kPerLayer per layer, then kHead...).
#pragma once

#include <cstdint>

#include "common.h"

namespace ma_kernels {

constexpr int kStepMaxLayers = 16;
// Parameters, in the order of ma_kernels.step.parameter_names().
constexpr int kStepEmbedWeight = 0, kStepEmbedBias = 1, kStepTimeFreq = 2, kStepTimePhase = 3,
              kStepTimeWeight = 4, kStepTimeBias = 5, kStepEmbedCount = 6;
constexpr int kStepNorm1Weight = 0, kStepNorm1Bias = 1, kStepQkvWeight = 2, kStepQkvBias = 3,
              kStepOutWeight = 4, kStepOutBias = 5, kStepNorm2Weight = 6, kStepNorm2Bias = 7,
              kStepUpWeight = 8, kStepUpBias = 9, kStepDownWeight = 10, kStepDownBias = 11,
              kStepLayerCount = 12;
constexpr int kStepNormWeight = 0, kStepNormBias = 1, kStepDirectionWeight = 2,
              kStepDirectionBias = 3, kStepRegressionWeight = 4, kStepRegressionBias = 5,
              kStepHeadCount = 6;
constexpr double kStepRopeBase = 10000.0;
constexpr float kStepNormEps = 1e-5f;

struct StepShape {
  std::int64_t batch;
  int inputs;        // F: columns of x
  int model_dim;     // C
  int heads;         // H; head_dim D = C / H
  int hidden;        // M: the SwiGLU's hidden width (up maps C -> 2M)
  int frequencies;   // time encoding frequencies
  int layers;
  int horizons;      // direction logits: 3 per horizon
  int regression;    // R
  int window;        // W keys per query; layer l's ring holds W * dilation[l] slots
  int dilation[kStepMaxLayers];

  MA_HOST_DEVICE int head_dim() const { return model_dim / heads; }
  MA_HOST_DEVICE int outputs() const { return 3 * horizons + regression; }
  MA_HOST_DEVICE int capacity(int layer) const { return window * dilation[layer]; }
};

// Device (or host) pointers, all contiguous float32 but pos (int64) and
// active (bool bytes). keys[l] and values[l] are [B, H, capacity(l), D].
struct StepTensors {
  const float* embed[kStepEmbedCount];
  const float* layer[kStepMaxLayers][kStepLayerCount];
  const float* head[kStepHeadCount];
  float* keys[kStepMaxLayers];
  float* values[kStepMaxLayers];
  const float* x;              // [B, F]
  const float* dt;             // [B]
  const std::uint8_t* active;  // [B]
  std::int64_t* pos;           // [B]: each sequence's next position; += active
  float* out;                  // [B, 3 * horizons + R]: logits, then regression
};

void transformer_step_cpu(const StepShape& shape, const StepTensors& tensors);

#ifdef MA_KERNELS_WITH_CUDA
// Head dims the CUDA kernel is built for.
bool transformer_step_cuda_supports(int head_dim);
// workspace: transformer_step_cuda_workspace(shape) floats of device memory.
std::int64_t transformer_step_cuda_workspace(const StepShape& shape);
void transformer_step_cuda(const StepShape& shape, const StepTensors& tensors, float* workspace,
                           int device, std::uintptr_t stream);
#endif

}  // namespace ma_kernels
