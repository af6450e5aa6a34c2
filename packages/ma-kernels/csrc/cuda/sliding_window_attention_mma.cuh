// Tensor-core (mma.sync) sliding-window attention for float16 and bfloat16;
// sliding_window_attention.cu dispatches those dtypes here.
#pragma once

#include <cuda_runtime.h>

#include "sliding_window_attention.h"

namespace ma_kernels {

void sliding_window_attention_forward_mma(const AttentionProblem& p, const AttentionForward& a,
                                          DType dtype, cudaStream_t stream);
// dq, dk, dv are in the input dtype; delta (float32) is written, then read.
void sliding_window_attention_backward_mma(const AttentionProblem& p, const AttentionBackward& a,
                                           DType dtype, cudaStream_t stream);

}  // namespace ma_kernels
