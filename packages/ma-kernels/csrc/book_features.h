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
#include <initializer_list>
#include <type_traits>
#include <utility>

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

// index * stride. On CUDA a 32 x 32 -> 64-bit product (one instruction): the
// CUDA launchers refuse rows, levels and strides of 2^31 or more
// (fits_32bit_offsets), and the 64-bit product was 8 instructions a load,
// 30 % of the window kernel's (notes/microstructure.md, v11).
MA_HOST_DEVICE std::int64_t scaled(std::int64_t index, std::int64_t stride) {
#ifdef __CUDA_ARCH__
  long long product;  // (written as C++, ptxas kept a 64 x 64-bit multiply)
  asm("mul.wide.s32 %0, %1, %2;" : "=l"(product) : "r"(int(index)), "r"(int(stride)));
  return product;
#else
  return index * stride;
#endif
}

// Whether the rows (or instruments), levels and strides of a CUDA launch
// fit `scaled`'s 32-bit operands; the launchers refuse what does not.
inline bool fits_32bit_offsets(std::int64_t rows, std::int64_t levels,
                               std::initializer_list<Matrix> matrices,
                               std::initializer_list<Column> columns) {
  constexpr std::int64_t kLimit = std::int64_t(1) << 31;
  const auto small = [](std::int64_t v) { return v > -kLimit && v < kLimit; };
  bool ok = small(rows) && small(levels);
  for (const Matrix& m : matrices) ok = ok && small(m.row_stride) && small(m.col_stride);
  for (const Column& c : columns) ok = ok && small(c.stride);
  return ok;
}

template <typename T>
MA_HOST_DEVICE double at(const Matrix& m, std::int64_t row, std::int64_t level) {
  return double(reinterpret_cast<const T*>(m.data)[scaled(row, m.row_stride) +
                                                   scaled(level, m.col_stride)]);
}
template <typename T>
MA_HOST_DEVICE T at(const Column& c, std::int64_t row) {
  return reinterpret_cast<const T*>(c.data)[scaled(row, c.stride)];
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

// num / den for den and 1 / den normal (not zero, inf or subnormal). On
// CUDA a reciprocal estimate refined by two Newton steps, then the quotient
// corrected once: within an ulp of the division, ~10 instructions and no
// branch. CUDA's IEEE double division is ~40, and leaves for a
// ~60-instruction subroutine whenever the numerator or denominator is zero
// (a mid that did not move, equal sizes, no trade), which a warp runs when
// one lane needs it (notes/microstructure.md, v9-v11). A CPU divides as
// written.
MA_HOST_DEVICE double quotient(double num, double den) {
#ifdef __CUDA_ARCH__
  double r;
  asm("rcp.approx.ftz.f64 %0, %1;" : "=d"(r) : "d"(den));
  r = fma(r, fma(-den, r, 1.0), r);
  r = fma(r, fma(-den, r, 1.0), r);
  const double q = num * r;
  return fma(r, fma(-den, q, num), q);
#else
  return num / den;
#endif
}

// num / den where den > 0, else fallback. The division runs either way (on a
// harmless denominator), so the CPU kernel's loops stay branch-free and
// vectorise (built with -fno-trapping-math: CMakeLists.txt).
MA_HOST_DEVICE double ratio(double num, double den, double fallback) {
  const bool ok = den > 0.0;
  const double r = quotient(num, ok ? den : 1.0);
  return ok ? r : fallback;
}

// Order flow imbalance of Cont, Kukanov and Stoikov of one level between two
// events. An empty level (NaN price) is priced -inf on the bid side and +inf
// on the ask side, so a level that appears adds its size and one that
// empties removes its old size.
MA_HOST_DEVICE double ofi(double b, double qb, double a, double qa, double pb, double pqb,
                          double pa, double pqa) {
  const double inf = INFINITY;
  b = b == b ? b : -inf;
  pb = pb == pb ? pb : -inf;
  a = a == a ? a : inf;
  pa = pa == pa ? pa : inf;
  const double bid_flow = (b >= pb ? qb : 0.0) - (b <= pb ? pqb : 0.0);
  const double ask_flow = (a <= pa ? qa : 0.0) - (a >= pa ? pqa : 0.0);
  return bid_flow - ask_flow;
}

MA_HOST_DEVICE double ofi(const Quote& now, const Quote& before) {
  return ofi(now.bid, now.bid_size, now.ask, now.ask_size, before.bid, before.bid_size,
             before.ask, before.ask_size);
}

// The quote of one level of event t.
template <typename T>
MA_HOST_DEVICE Quote level_at(const BookSeries& s, std::int64_t t, std::int64_t level) {
  return {at<T>(s.bid_price, t, level), at<T>(s.bid_size, t, level), at<T>(s.ask_price, t, level),
          at<T>(s.ask_size, t, level)};
}

// atanh(s) / s = 1 + z / 3 + z^2 / 5 + ... for z = s^2: to z^10 / 21, which
// leaves out less than 2^-55 of the value for |s| < 0.1716.
MA_HOST_DEVICE double atanh_series(double z) {
  double series = 1.0 / 21;
  for (int k = 19; k >= 1; k -= 2) series = series * z + 1.0 / k;
  return series;
}

// log1p(x) for finite x > -1, to about 2 ulp, without branches or calls, so a
// loop of it vectorises (libm's log1p is a call per element and was the CPU
// kernel's largest cost). With u = 1 + x rounded, log1p(x) = log(u) * x / (u - 1)
// (Goldberg, 1991) and log(u) = e ln 2 + 2 atanh(s), where u = 2^e m with
// m in [sqrt(1/2), sqrt(2)) and s = (m - 1) / (m + 1), |s| < 0.1716.
MA_HOST_DEVICE double log1p_fast(double x) {
  const double u = 1.0 + x, d = u - 1.0;
  std::uint64_t bits;
  std::memcpy(&bits, &u, sizeof bits);
  const int exponent = int(bits >> 52) - 1023;
  bits = (bits & 0x000fffffffffffffULL) | 0x3ff0000000000000ULL;  // m in [1, 2)
  double m;
  std::memcpy(&m, &bits, sizeof m);
  const bool high = m > 1.4142135623730951;
  m = high ? 0.5 * m : m;
  const double s = quotient(m - 1.0, m + 1.0);
  const double e = double(exponent + (high ? 1 : 0));
  const double log_u =
      e * 0.6931471805599453 + (e * 2.3190468138462996e-17 + 2.0 * s * atanh_series(s * s));
  return d == 0.0 ? x : log_u * quotient(x, d == 0.0 ? 1.0 : d);  // (d < 0 for x < 0: no ratio)
}

// log(mid_t / mid_{t-1}) = 2 atanh(s), s = (m_t - m_{t-1}) / (m_t + m_{t-1})
// (the difference exact for mids within a factor 2): one quotient. A book's
// steps have |s| < 2^-10, where three terms of the series leave out less
// than 2^-60 of the value; up to |s| < 0.1716 (a mid moving by less than
// 41 %) the whole series, beyond it log1p_fast. 0 where a mid is not
// positive or did not move (most events: they skip the log). On CUDA the
// log1p form was ~70 instructions a row, three quotients among them.
MA_HOST_DEVICE double log_return(const Quote& now, const Quote& before) {
  const double m = now.mid(), m_before = before.mid();
  if (m == m_before || !(m > 0.0) || !(m_before > 0.0)) return 0.0;
  const double s = quotient(m - m_before, m + m_before), z = s * s;
  if (std::fabs(s) < 0x1p-10) return 2.0 * s * (1.0 + z * (1.0 / 3 + z * (1.0 / 5)));
  if (std::fabs(s) < 0.1716) return 2.0 * s * atanh_series(z);
  return log1p_fast(quotient(m - m_before, m_before));
}


// One per-event column of the quote alone; `has_before` is false on the first
// event of the series (no OFI, return or mid change there). A template on the
// column, so a loop over rows of one column compiles to that formula alone.
template <int kCode>
MA_HOST_DEVICE double quote_value(const Quote& now, const Quote& before, bool has_before) {
  const double depth = now.bid_size + now.ask_size;
  if constexpr (kCode == kSpread) return now.ask - now.bid;
  if constexpr (kCode == kMid) return now.mid();
  if constexpr (kCode == kMicroprice) {
    return ratio(now.bid * now.ask_size + now.ask * now.bid_size, depth, now.mid());
  }
  if constexpr (kCode == kImbalance) return ratio(now.bid_size - now.ask_size, depth, 0.0);
  if constexpr (kCode == kOfi) return has_before ? ofi(now, before) : 0.0;
  if constexpr (kCode == kLogReturn) return has_before ? log_return(now, before) : 0.0;
  // Differences of prices, not of mids: no rounding of a mid near 600 in the way.
  if constexpr (kCode == kMidChange) {
    return has_before ? 0.5 * ((now.bid - before.bid) + (now.ask - before.ask)) : 0.0;
  }
  // microprice - mid = spread * imbalance / 2, without cancelling two prices.
  if constexpr (kCode == kMicropriceOffset) {
    return ratio(0.5 * (now.ask - now.bid) * (now.bid_size - now.ask_size), depth, 0.0);
  }
  if constexpr (kCode == kLogDepth) return log1p_fast(depth);
  return 0.0;
}

// The per-event columns a quote tells, in column-code order.
using QuoteCodes = std::integer_sequence<int, kSpread, kMid, kMicroprice, kImbalance, kOfi,
                                         kLogReturn, kMidChange, kMicropriceOffset, kLogDepth>;

// Calls fn(std::integral_constant<int, value>) for the runtime `value` among
// kValues (nothing where it is none of them): a loop over one column then
// runs that column's formula alone, a loop over a row's columns unrolls.
template <typename Fn, int... kValues>
MA_HOST_DEVICE void with_constant(int value, Fn&& fn, std::integer_sequence<int, kValues...>) {
  ((value == kValues && (fn(std::integral_constant<int, kValues>{}), true)) || ...);
}

MA_HOST_DEVICE double quote_value(int code, const Quote& now, const Quote& before,
                                  bool has_before) {
  double v = 0.0;
  with_constant(code, [&](auto c) { v = quote_value<c>(now, before, has_before); }, QuoteCodes{});
  return v;
}

// What one event adds to every rolling sum.
constexpr int kTerms = 6;
enum Term : int {
  kTermOfi, kTermSignedVolume, kTermNotional, kTermVolume, kTermTrades, kTermSquaredReturn
};

template <typename T>
MA_HOST_DEVICE double signed_volume(const BookSeries& s, std::int64_t t) {
  return double(at<std::int8_t>(s.trade_side, t)) * double(at<T>(s.trade_size, t));
}

MA_HOST_DEVICE void terms_of(const Quote& now, const Quote& before, bool has_before,
                             double price, double size, double side, double* x) {
  const double r = has_before ? log_return(now, before) : 0.0;
  x[kTermOfi] = has_before ? ofi(now, before) : 0.0;
  x[kTermSignedVolume] = side * size;
  x[kTermNotional] = price * size;
  x[kTermVolume] = size;
  x[kTermTrades] = size > 0.0 ? 1.0 : 0.0;
  x[kTermSquaredReturn] = r * r;
}

template <typename T>
MA_HOST_DEVICE void terms_of(const BookSeries& s, std::int64_t t, const Quote& now,
                             const Quote& before, bool has_before, double* x) {
  terms_of(now, before, has_before, at<T>(s.trade_price, t), at<T>(s.trade_size, t),
           double(at<std::int8_t>(s.trade_side, t)), x);
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

// The depth imbalances, level OFIs and their sum of an event into row[0 ..);
// level_now(l) and level_before(l) give the quote of level l of the event and
// of the one before it (read only if has_before).
template <typename U, typename Now, typename Before>
MA_HOST_DEVICE void store_depth_columns(const BookFeatureSpec& spec, const Now& level_now,
                                        const Before& level_before, bool has_before, U* row) {
  int c = 0;
  for (int k = 0; k < spec.depth_count; ++k) {
    double bids = 0.0, asks = 0.0;
    for (std::int64_t level = 0; level < spec.depth[k]; ++level) {
      const Quote q = level_now(level);
      bids += q.bid_size;
      asks += q.ask_size;
    }
    row[c++] = U(ratio(bids - asks, bids + asks, 0.0));
  }
  if (spec.ofi_levels) {
    double total = 0.0;
    for (std::int64_t level = 0; level < spec.ofi_levels; ++level) {
      const double v = has_before ? ofi(level_now(level), level_before(level)) : 0.0;
      total += v;
      row[c++] = U(v);
    }
    row[c++] = U(total);
  }
}

template <typename T, typename U>
MA_HOST_DEVICE void store_depth_columns(const BookSeries& s, const BookFeatureSpec& spec,
                                        std::int64_t t, bool has_before, U* row) {
  store_depth_columns(
      spec, [&](std::int64_t level) { return level_at<T>(s, t, level); },
      [&](std::int64_t level) { return level_at<T>(s, t - 1, level); }, has_before, row);
}

// The columns of one event that need no window (instant, depth imbalances,
// level OFIs and their sum) into row[0 .. spec.event_columns()). The columns
// a quote does not tell come from callables, read only when asked for.
template <typename U, typename SignedVolume, typename InterArrival, typename Now, typename Before>
MA_HOST_DEVICE void store_event_columns(const BookFeatureSpec& spec, const Quote& now,
                                        const Quote& before, bool has_before,
                                        const SignedVolume& signed_volume,
                                        const InterArrival& inter_arrival, const Now& level_now,
                                        const Before& level_before, U* row) {
  for (int k = 0; k < spec.instant_count; ++k) {
    const int code = spec.instant[k];
    row[k] = U(code == kSignedVolume   ? signed_volume()
               : code == kInterArrival ? (has_before ? inter_arrival() : 0.0)
                                       : quote_value(code, now, before, has_before));
  }
  store_depth_columns(spec, level_now, level_before, has_before, row + spec.instant_count);
}

template <typename T, typename U>
MA_HOST_DEVICE void store_event_columns(const BookSeries& s, const BookFeatureSpec& spec,
                                        std::int64_t t, const Quote& now, const Quote& before,
                                        bool has_before, U* row) {
  store_event_columns(
      spec, now, before, has_before, [&] { return signed_volume<T>(s, t); },
      [&] { return inter_arrival<T>(s, t, t - 1); },
      [&](std::int64_t level) { return level_at<T>(s, t, level); },
      [&](std::int64_t level) { return level_at<T>(s, t - 1, level); }, row);
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
      case kVwap:
        v = ratio(sums[kTermNotional], sums[kTermTrades] > 0.5 ? sums[kTermVolume] : 0.0, mid);
        break;
      case kRealizedVariance: v = fmax(sums[kTermSquaredReturn], 0.0); break;
    }
    out[k] = U(v);
  }
}

}  // namespace book

void book_features_cpu(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                       std::uintptr_t out, DType out_dtype);
#ifdef MA_KERNELS_WITH_CUDA
// scratch: book_features_cuda_scratch(rows) float64s of device memory.
std::int64_t book_features_cuda_scratch(std::int64_t rows);
void book_features_cuda(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                        std::uintptr_t out, DType out_dtype, std::uintptr_t scratch, int device,
                        std::uintptr_t stream);
#endif

}  // namespace ma_kernels
