#include "l1_features.h"

#include "cpu/parallel.h"

namespace ma_kernels {

void l1_features_cpu(const Matrix& book, std::uintptr_t out, DType dtype) {
  dispatch_float(dtype, [&](auto* type_tag) {
    using T = std::remove_pointer_t<decltype(type_tag)>;
    const T* in = reinterpret_cast<const T*>(book.data);
    T* features = reinterpret_cast<T*>(out);
    parallel_for(book.rows, 1 << 16, [&](std::int64_t begin, std::int64_t end) {
      for (std::int64_t i = begin; i < end; ++i) {
        const L1Quote<T> now = load_quote(in, i, book.row_stride, book.col_stride);
        if (i == 0) {
          l1_features_row<T>(now, nullptr, features);
        } else {
          const L1Quote<T> before = load_quote(in, i - 1, book.row_stride, book.col_stride);
          l1_features_row(now, &before, features + i * kL1Features);
        }
      }
    });
  });
}

}  // namespace ma_kernels
