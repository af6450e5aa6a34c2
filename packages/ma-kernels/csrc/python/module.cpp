// The Python module ma_kernels._C. Each kernel family binds itself in its own
// file under csrc/python/ through a register_* function listed in bind.h.
#include "python/bind.h"

#ifdef MA_KERNELS_WITH_CUDA
#include <cuda_runtime.h>
#endif

namespace {

int cuda_device_count() {
#ifdef MA_KERNELS_WITH_CUDA
  int count = 0;
  // No driver or no device reads as zero devices, not as an error.
  if (cudaGetDeviceCount(&count) != cudaSuccess) {
    cudaGetLastError();
    return 0;
  }
  return count;
#else
  return 0;
#endif
}

}  // namespace

PYBIND11_MODULE(_C, m) {
  m.doc() = "ma_kernels compiled kernels (pointer-level API; use ma_kernels.ops)";
#ifdef MA_KERNELS_WITH_CUDA
  m.attr("with_cuda") = true;
#else
  m.attr("with_cuda") = false;
#endif
  m.def("cuda_device_count", &cuda_device_count,
        "Number of CUDA devices our runtime sees (0 without a driver)");

  ma_kernels::python::register_book_features(m);
  ma_kernels::python::register_book_stream(m);
  ma_kernels::python::register_lob_simulator(m);
  ma_kernels::python::register_sliding_window_attention(m);
  ma_kernels::python::register_transformer_step(m);
  ma_kernels::python::register_resident_stream(m);
  ma_kernels::python::register_stream_inputs(m);
}
