// The fused microstructure feature set of one event: the level-1 features of
// l1_features.h plus rolling sums over the last W events, with formulas
// shared by the CPU and CUDA kernels.
//
// Input columns:  bid_price, bid_size, ask_price, ask_size, trade_price, trade_size.
// Output columns: the five of l1_features_row, then rolling_ofi, rolling_vwap,
//                 rolling_realized_variance over the window.
#pragma once

#include <cmath>

#include "common.h"
#include "l1_features.h"

namespace ma_kernels {

constexpr int kMicrostructureInputs = 6;
constexpr int kMicrostructureFeatures = 8;

// What one event adds to the rolling sums. Accumulated in double whatever the
// data type: the window sums are differences of running sums, and float32
// running sums would cancel catastrophically.
struct RollingTerms {
  double ofi, notional, volume, trades, squared_return;
};

MA_HOST_DEVICE RollingTerms operator+(const RollingTerms& a, const RollingTerms& b) {
  return {a.ofi + b.ofi, a.notional + b.notional, a.volume + b.volume, a.trades + b.trades,
          a.squared_return + b.squared_return};
}

MA_HOST_DEVICE RollingTerms operator-(const RollingTerms& a, const RollingTerms& b) {
  return {a.ofi - b.ofi, a.notional - b.notional, a.volume - b.volume, a.trades - b.trades,
          a.squared_return - b.squared_return};
}

// For the small relative moves of a mid (|x| < 2^-7) a 4-term series, whose
// first omitted term x^5/5 is below float rounding; measured, libm's log1pf
// was the CPU kernel's hottest call.
MA_HOST_DEVICE float log1p_of(float x) {
  if (fabsf(x) < 0.0078125f) return x * (1.0f + x * (-0.5f + x * (1.0f / 3.0f - 0.25f * x)));
  return log1pf(x);
}
MA_HOST_DEVICE double log1p_of(double x) { return log1p(x); }

// log(m_now / m_before) of two mids. The difference of mids is taken in double
// (exact for float inputs), so a one-tick move is not lost to rounding of the
// mids themselves; the ratio and the logarithm run in T (a double division
// was a tenth of the CUDA kernel's instructions). A non-positive mid gives 0.
// Most events leave the mid where it was: they skip the logarithm.
template <typename T>
MA_HOST_DEVICE T log_mid_return(const L1Quote<T>& now, const L1Quote<T>& before) {
  const double mid = 0.5 * (double(now.bid_price) + double(now.ask_price));
  const double mid_before = 0.5 * (double(before.bid_price) + double(before.ask_price));
  if (mid == mid_before || !(mid > 0.0 && mid_before > 0.0)) return T(0);
  return log1p_of(T(mid - mid_before) / T(mid_before));
}

// The terms of event i; `before` is null for the first event (no OFI, no return).
template <typename T>
MA_HOST_DEVICE RollingTerms rolling_terms(const L1Quote<T>& now, const L1Quote<T>* before,
                                          T trade_price, T trade_size) {
  const double r = before ? double(log_mid_return(now, *before)) : 0.0;
  return {before ? double(order_flow_imbalance(now, *before)) : 0.0,
          double(trade_price) * double(trade_size), double(trade_size),
          trade_size > T(0) ? 1.0 : 0.0, r * r};
}

// Rolling columns from the window's sums: a window with no trade has the mid
// as its VWAP (not 0/0); the variance is clamped at 0 against the rounding of
// a difference of running sums. The VWAP divides in T, like the return.
template <typename T>
MA_HOST_DEVICE void rolling_features(const RollingTerms& window, T mid, T* out) {
  out[0] = T(window.ofi);
  out[1] = window.trades > 0.5 ? T(window.notional) / T(window.volume) : mid;
  out[2] = T(window.squared_return > 0.0 ? window.squared_return : 0.0);
}

void microstructure_features_cpu(const Matrix& table, std::int64_t window, std::uintptr_t out,
                                 DType dtype);
#ifdef MA_KERNELS_WITH_CUDA
void microstructure_features_cuda(const Matrix& table, std::int64_t window, std::uintptr_t out,
                                  DType dtype, int device, std::uintptr_t stream);
#endif

}  // namespace ma_kernels
