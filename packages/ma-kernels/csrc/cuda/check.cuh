// Turns CUDA runtime errors into C++ exceptions, which pybind11 raises in Python.
#pragma once

#include <cuda_runtime.h>

#include <cstddef>
#include <cstdint>
#include <map>
#include <mutex>
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

inline int device_attribute(cudaDeviceAttr attribute, int device) {
  int value = 0;
  cuda_check(cudaDeviceGetAttribute(&value, attribute, device), "cudaDeviceGetAttribute");
  return value;
}

// Past 48 KB a kernel must opt in to dynamic shared memory. Only when a launch
// needs more than the kernel's last opt-in on this device: the attribute call
// costs as much host time as the launch.
template <typename Kernel>
void opt_in_shared_memory(Kernel* kernel, std::size_t bytes, const char* what) {
  if (bytes <= 48 * 1024) return;
  int device = 0;
  cuda_check(cudaGetDevice(&device), "cudaGetDevice");
  static std::mutex mutex;
  static std::map<std::pair<const void*, int>, std::size_t> granted;
  const std::lock_guard<std::mutex> lock(mutex);
  std::size_t& have = granted[std::make_pair(reinterpret_cast<const void*>(kernel), device)];
  if (bytes <= have) return;
  cuda_check(cudaFuncSetAttribute(kernel, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                  static_cast<int>(bytes)),
             what);
  have = bytes;
}

}  // namespace ma_kernels
