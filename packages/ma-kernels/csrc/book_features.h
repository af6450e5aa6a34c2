// The whole feature set of a K-level book with trades: per-event features,
// depth imbalances, per-level and multi-level OFI, and rolling sums over event
// windows and time windows. The formulas of one event live here, shared by
// the CPU row function below and the CUDA kernel (cuda/book_features.cu), so
// both compute the same numbers.
//
// Inputs of type T, outputs of type U; everything is computed in double, so
// float64 ticks give float32 features without a float64 copy of either.
#pragma once

#include <cmath>
#include <cstdint>
#include <cstring>

#include "common.h"

namespace ma_kernels {

// Column codes; ma_kernels/book.py holds the matching names (new codes go last).
enum BookInstant : int {
  kSpread, kMid, kMicroprice, kImbalance, kOfi, kLogReturn, kSignedVolume, kInterArrival,
  kMidChange, kMicropriceOffset, kLogDepth, kBookInstantCount
};
enum BookRolling : int { kOfiSum, kSignedVolumeSum, kVwap, kRealizedVariance, kBookRollingCount };

constexpr int kMaxSpecEntries = 8;  // per list of the spec (depths, event windows, time windows)

// A strided column of N values.
struct Column {
  std::uintptr_t data;
  std::int64_t stride;
};

// A series of N events: book sides [N, levels] (empty levels: NaN price, size 0),
// the trade of each event (price and size 0, side 0 when none), time in ns.
struct BookSeries {
  std::int64_t rows, levels;
  Matrix bid_price, bid_size, ask_price, ask_size;
  Column trade_price, trade_size, trade_side /* int8 */, time /* int64 */;
};

// Which columns, in this order: instant, depth imbalances, OFI of levels
// 1..ofi_levels and their sum, then for each event window and then each time
// window the rolling columns.
struct BookFeatureSpec {
  int instant_count = 0, depth_count = 0, rolling_count = 0, window_count = 0,
      time_window_count = 0;
  int instant[kBookInstantCount] = {};
  int rolling[kBookRollingCount] = {};
  std::int64_t depth[kMaxSpecEntries] = {};
  std::int64_t windows[kMaxSpecEntries] = {};
  std::int64_t time_windows[kMaxSpecEntries] = {};
  std::int64_t ofi_levels = 0;

  MA_HOST_DEVICE std::int64_t event_columns() const {
    return instant_count + depth_count + (ofi_levels ? ofi_levels + 1 : 0);
  }
  MA_HOST_DEVICE std::int64_t columns() const {
    return event_columns() + (window_count + time_window_count) * rolling_count;
  }
};

namespace book {

template <typename T>
MA_HOST_DEVICE double at(const Matrix& m, std::int64_t row, std::int64_t level) {
  return double(reinterpret_cast<const T*>(m.data)[row * m.row_stride + level * m.col_stride]);
}
template <typename T>
MA_HOST_DEVICE T at(const Column& c, std::int64_t row) {
  return reinterpret_cast<const T*>(c.data)[row * c.stride];
}

// The best quote of one event.
struct Quote {
  double bid, bid_size, ask, ask_size;
  MA_HOST_DEVICE double mid() const { return 0.5 * (bid + ask); }
};

template <typename T>
MA_HOST_DEVICE Quote quote_at(const BookSeries& s, std::int64_t t) {
  return {at<T>(s.bid_price, t, 0), at<T>(s.bid_size, t, 0), at<T>(s.ask_price, t, 0),
          at<T>(s.ask_size, t, 0)};
}

// x where c holds, else 0, by masking bits: compilers turn `c ? x : 0.0` and
// even `x * c` into branches, which a random walk's comparisons mispredict.
MA_HOST_DEVICE double keep_if(bool c, double x) {
  std::uint64_t bits;
  std::memcpy(&bits, &x, sizeof bits);
  bits &= -static_cast<std::uint64_t>(c);
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// `fill` where x is NaN, else x, by the same means.
MA_HOST_DEVICE double nan_to(double x, double fill) {
  std::uint64_t bits, other;
  std::memcpy(&bits, &x, sizeof bits);
  std::memcpy(&other, &fill, sizeof other);
  const bool nan = (bits & 0x7fffffffffffffffULL) > 0x7ff0000000000000ULL;
  bits ^= (bits ^ other) & -static_cast<std::uint64_t>(nan);
  std::memcpy(&x, &bits, sizeof x);
  return x;
}

// Order flow imbalance of Cont, Kukanov and Stoikov of one level between two
// events. An empty level (NaN price) is priced -inf on the bid side and +inf
// on the ask side, so a level that appears adds its size and one that
// empties removes its old size.
MA_HOST_DEVICE double ofi(double b, double qb, double a, double qa, double pb, double pqb,
                          double pa, double pqa) {
  b = nan_to(b, -INFINITY);
  pb = nan_to(pb, -INFINITY);
  a = nan_to(a, INFINITY);
  pa = nan_to(pa, INFINITY);
  const double bid_flow = keep_if(b >= pb, qb) - keep_if(b <= pb, pqb);
  const double ask_flow = keep_if(a <= pa, qa) - keep_if(a >= pa, pqa);
  return bid_flow - ask_flow;
}

MA_HOST_DEVICE double ofi(const Quote& now, const Quote& before) {
  return ofi(now.bid, now.bid_size, now.ask, now.ask_size, before.bid, before.bid_size,
             before.ask, before.ask_size);
}

template <typename T>
MA_HOST_DEVICE double level_ofi(const BookSeries& s, std::int64_t t, std::int64_t level) {
  return ofi(at<T>(s.bid_price, t, level), at<T>(s.bid_size, t, level),
             at<T>(s.ask_price, t, level), at<T>(s.ask_size, t, level),
             at<T>(s.bid_price, t - 1, level), at<T>(s.bid_size, t - 1, level),
             at<T>(s.ask_price, t - 1, level), at<T>(s.ask_size, t - 1, level));
}

// log(mid_t / mid_{t-1}), taken as log1p of the relative step; 0 where a mid
// is not positive. Most events leave the mid where it was: they skip the log.
MA_HOST_DEVICE double log_return(const Quote& now, const Quote& before) {
  const double m = now.mid(), m_before = before.mid();
  if (m == m_before || !(m > 0.0 && m_before > 0.0)) return 0.0;
  return log1p((m - m_before) / m_before);
}

// log1p of a sum of sizes: for x >= 1, log(1 + x) is as exact (the rounding of
// 1 + x is below 1.2e-16 / x relative) and libm's log is about twice as fast.
MA_HOST_DEVICE double log1p_of_size(double x) { return x >= 1.0 ? log(1.0 + x) : log1p(x); }

// One per-event column of the quote alone; `has_before` is false on the first
// event of the series (no OFI, return or mid change there).
MA_HOST_DEVICE double quote_value(int code, const Quote& now, const Quote& before,
                                  bool has_before) {
  const double depth = now.bid_size + now.ask_size;
  switch (code) {
    case kSpread: return now.ask - now.bid;
    case kMid: return now.mid();
    case kMicroprice:
      return depth > 0.0 ? (now.bid * now.ask_size + now.ask * now.bid_size) / depth : now.mid();
    case kImbalance: return depth > 0.0 ? (now.bid_size - now.ask_size) / depth : 0.0;
    case kOfi: return has_before ? ofi(now, before) : 0.0;
    case kLogReturn: return has_before ? log_return(now, before) : 0.0;
    // Differences of prices, not of mids: no rounding of a mid near 600 in the way.
    case kMidChange: return has_before ? 0.5 * ((now.bid - before.bid) + (now.ask - before.ask))
                                       : 0.0;
    // microprice - mid = spread * imbalance / 2, without cancelling two prices.
    case kMicropriceOffset:
      return depth > 0.0 ? 0.5 * (now.ask - now.bid) * (now.bid_size - now.ask_size) / depth
                         : 0.0;
    case kLogDepth: return log1p_of_size(depth);
    default: return 0.0;
  }
}

// What one event adds to every rolling sum.
constexpr int kTerms = 6;
enum Term : int { kTermOfi, kTermSignedVolume, kTermNotional, kTermVolume, kTermTrades, kTermSquaredReturn };

template <typename T>
MA_HOST_DEVICE double signed_volume(const BookSeries& s, std::int64_t t) {
  return double(at<std::int8_t>(s.trade_side, t)) * double(at<T>(s.trade_size, t));
}

template <typename T>
MA_HOST_DEVICE void terms_of(const BookSeries& s, std::int64_t t, const Quote& now,
                             const Quote& before, bool has_before, double* x) {
  const double price = at<T>(s.trade_price, t), size = at<T>(s.trade_size, t);
  const double r = has_before ? log_return(now, before) : 0.0;
  x[kTermOfi] = has_before ? ofi(now, before) : 0.0;
  x[kTermSignedVolume] = double(at<std::int8_t>(s.trade_side, t)) * size;
  x[kTermNotional] = price * size;
  x[kTermVolume] = size;
  x[kTermTrades] = size > 0.0 ? 1.0 : 0.0;
  x[kTermSquaredReturn] = r * r;
}

template <typename T>
MA_HOST_DEVICE void terms_at(const BookSeries& s, std::int64_t t, double* x) {
  const Quote now = quote_at<T>(s, t);
  terms_of<T>(s, t, now, t > 0 ? quote_at<T>(s, t - 1) : now, t > 0, x);
}

template <typename T>
MA_HOST_DEVICE double inter_arrival(const BookSeries& s, std::int64_t t, std::int64_t before) {
  return 1e-9 * double(at<std::int64_t>(s.time, t) - at<std::int64_t>(s.time, before));
}

// One instant column of event t; the columns a quote does not tell are read
// only when asked for.
template <typename T>
MA_HOST_DEVICE double instant_value(const BookSeries& s, int code, std::int64_t t,
                                    const Quote& now, const Quote& before, bool has_before) {
  switch (code) {
    case kSignedVolume: return signed_volume<T>(s, t);
    case kInterArrival: return has_before ? inter_arrival<T>(s, t, t - 1) : 0.0;
    default: return quote_value(code, now, before, has_before);
  }
}

// The depth imbalances, level OFIs and their sum of event t into row[0 ..).
template <typename T, typename U>
MA_HOST_DEVICE void store_depth_columns(const BookSeries& s, const BookFeatureSpec& spec,
                                        std::int64_t t, bool has_before, U* row) {
  int c = 0;
  for (int k = 0; k < spec.depth_count; ++k) {
    double bids = 0.0, asks = 0.0;
    for (std::int64_t level = 0; level < spec.depth[k]; ++level) {
      bids += at<T>(s.bid_size, t, level);
      asks += at<T>(s.ask_size, t, level);
    }
    row[c++] = U(bids + asks > 0.0 ? (bids - asks) / (bids + asks) : 0.0);
  }
  if (spec.ofi_levels) {
    double total = 0.0;
    for (std::int64_t level = 0; level < spec.ofi_levels; ++level) {
      const double v = has_before ? level_ofi<T>(s, t, level) : 0.0;
      total += v;
      row[c++] = U(v);
    }
    row[c++] = U(total);
  }
}

// The columns of one event that need no window (instant, depth imbalances,
// level OFIs and their sum) into row[0 .. spec.event_columns()).
template <typename T, typename U>
MA_HOST_DEVICE void store_event_columns(const BookSeries& s, const BookFeatureSpec& spec,
                                        std::int64_t t, const Quote& now, const Quote& before,
                                        bool has_before, U* row) {
  for (int k = 0; k < spec.instant_count; ++k) {
    row[k] = U(instant_value<T>(s, spec.instant[k], t, now, before, has_before));
  }
  store_depth_columns<T>(s, spec, t, has_before, row + spec.instant_count);
}

// Whether row j has left the time window (time_t - tau, time_t] of row t >= j.
// Times are non-decreasing, so the unsigned difference is exact.
MA_HOST_DEVICE bool before_time_window(const BookSeries& s, std::int64_t j, std::int64_t t,
                                       std::int64_t tau) {
  const auto now = static_cast<std::uint64_t>(at<std::int64_t>(s.time, t));
  const auto then = static_cast<std::uint64_t>(at<std::int64_t>(s.time, j));
  return now - then >= static_cast<std::uint64_t>(tau);
}

// The rolling columns of one window from its sums: a window without a trade
// has the event's mid as VWAP; the variance is clamped at 0 against rounding.
template <typename U>
MA_HOST_DEVICE void store_rolling(const BookFeatureSpec& spec, const double* sums, double mid,
                                  U* out) {
  for (int k = 0; k < spec.rolling_count; ++k) {
    double v = 0.0;
    switch (spec.rolling[k]) {
      case kOfiSum: v = sums[kTermOfi]; break;
      case kSignedVolumeSum: v = sums[kTermSignedVolume]; break;
      // The trade count is exact, so rounding never makes a window "traded".
      case kVwap: v = sums[kTermTrades] > 0.5 ? sums[kTermNotional] / sums[kTermVolume] : mid; break;
      case kRealizedVariance: v = fmax(sums[kTermSquaredReturn], 0.0); break;
    }
    out[k] = U(v);
  }
}

}  // namespace book

void book_features_cpu(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                       std::uintptr_t out, DType out_dtype);
#ifdef MA_KERNELS_WITH_CUDA
void book_features_cuda(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                        std::uintptr_t out, DType out_dtype, int device, std::uintptr_t stream);
#endif

}  // namespace ma_kernels
