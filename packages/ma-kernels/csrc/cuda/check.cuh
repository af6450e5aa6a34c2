// Turns CUDA runtime errors into C++ exceptions, which pybind11 raises in Python.
#pragma once

#include <cuda_runtime.h>

#include <cstdint>
#include <stdexcept>
#include <string>

namespace ma_kernels {

inline void cuda_check(cudaError_t status, const char* what) {
  if (status != cudaSuccess) {
    throw std::runtime_error(std::string("ma_kernels: ") + what + ": " +
                             cudaGetErrorString(status));
  }
}

// Our static CUDA runtime keeps its own current device, apart from torch's.
inline cudaStream_t use_device(int device, std::uintptr_t stream) {
  cuda_check(cudaSetDevice(device), "cudaSetDevice");
  return reinterpret_cast<cudaStream_t>(stream);
}

}  // namespace ma_kernels
