// Level-1 microstructure features of one book row: the formulas shared by the
// CPU and CUDA kernels, so both compute the same function.
//
// Book columns:   bid_price, bid_size, ask_price, ask_size.
// Output columns: spread, mid, microprice, imbalance, ofi.
#pragma once

#include "common.h"

namespace ma_kernels {

constexpr int kBookColumns = 4;
constexpr int kL1Features = 5;

template <typename T>
struct L1Quote {
  T bid_price, bid_size, ask_price, ask_size;
};

template <typename T>
MA_HOST_DEVICE L1Quote<T> load_quote(const T* book, std::int64_t row, std::int64_t row_stride,
                                     std::int64_t col_stride) {
  const T* r = book + row * row_stride;
  return {r[0], r[col_stride], r[2 * col_stride], r[3 * col_stride]};
}

// Order flow imbalance of Cont, Kukanov and Stoikov (2014) between two quotes.
template <typename T>
MA_HOST_DEVICE T order_flow_imbalance(const L1Quote<T>& now, const L1Quote<T>& before) {
  T bid_flow = (now.bid_price >= before.bid_price ? now.bid_size : T(0)) -
               (now.bid_price <= before.bid_price ? before.bid_size : T(0));
  T ask_flow = (now.ask_price <= before.ask_price ? now.ask_size : T(0)) -
               (now.ask_price >= before.ask_price ? before.ask_size : T(0));
  return bid_flow - ask_flow;
}

// Writes the five features of `now`. An empty book side pair (both sizes 0)
// gives microprice = mid and imbalance = 0 rather than 0/0; the first row of a
// series (no `before`) has ofi = 0.
template <typename T>
MA_HOST_DEVICE void l1_features_row(const L1Quote<T>& now, const L1Quote<T>* before, T* out) {
  const T mid = (now.bid_price + now.ask_price) * T(0.5);
  const T depth = now.bid_size + now.ask_size;
  const bool has_depth = depth > T(0);
  out[0] = now.ask_price - now.bid_price;
  out[1] = mid;
  out[2] = has_depth ? (now.bid_price * now.ask_size + now.ask_price * now.bid_size) / depth : mid;
  out[3] = has_depth ? (now.bid_size - now.ask_size) / depth : T(0);
  out[4] = before ? order_flow_imbalance(now, *before) : T(0);
}

void l1_features_cpu(const Matrix& book, std::uintptr_t out, DType dtype);
#ifdef MA_KERNELS_WITH_CUDA
void l1_features_cuda(const Matrix& book, std::uintptr_t out, DType dtype, int device,
                      std::uintptr_t stream);
#endif

}  // namespace ma_kernels
