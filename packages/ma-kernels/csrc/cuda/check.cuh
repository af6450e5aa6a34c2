// Turns CUDA runtime errors into C++ exceptions, which pybind11 raises in Python.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <mutex>
#include <set>
#include <stdexcept>
#include <string>
#include <utility>

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

// Past 48 KB a kernel must opt in to dynamic shared memory. Once per kernel
// and device: the attribute call costs as much host time as the launch.
template <typename Kernel>
void opt_in_shared_memory(Kernel* kernel, std::size_t bytes, const char* what) {
  if (bytes <= 48 * 1024) return;
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  static std::mutex mutex;
  static std::set<std::pair<const void*, int>> done;
  const std::lock_guard<std::mutex> lock(mutex);
  const auto key = std::make_pair(reinterpret_cast<const void*>(kernel), device);
  if (done.count(key)) return;
  cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(bytes)),
             what);
  done.insert(key);
}

}  // namespace ma_kernels
