// A block's threads over the cells of a [rows, width] table without an
// integer division per cell: dividing by a width known only at run time is
// ~40 instructions, and inside element loops such divisions were a fifth of
// a kernel's instructions (Nsight Compute, notes/microstructure.md).
#pragma once

namespace ma_kernels {

// fn(r, c) for every r < rows, c < width, thread t taking cells t, t +
// blockDim.x, ... in the order r * width + c (coalesced where the table is
// row-major): one division a thread, then its row and column advance by adding.
template <typename Fn>
__device__ __forceinline__ void for_each_cell(int rows, int width, Fn&& fn) {
  const int threads = int(blockDim.x), step_rows = threads / width, step_columns = threads % width;
  int r = int(threadIdx.x) / width, c = int(threadIdx.x) % width;
#pragma unroll 1
  while (r < rows) {
    fn(r, c);
    r += step_rows;
    c += step_columns;
    if (c >= width) {
      c -= width;
      ++r;
    }
  }
}

}  // namespace ma_kernels
