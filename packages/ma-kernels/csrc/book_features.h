// The whole feature set of a K-level book with trades: per-event features,
// depth imbalances, per-level and multi-level OFI, and rolling sums over event
// windows and time windows. One function computes a contiguous range of rows;
// CPU threads and CUDA threads both run it, so both compute the same numbers.
//
// Inputs of type T, outputs of type U; everything is computed in double, so
// float64 ticks give float32 features without a float64 copy of either.
// Window sums are running sums with Neumaier compensation: the rounding of
// adding and removing millions of terms stays at a few ulps of the terms.
#pragma once

#include <cmath>
#include <cstdint>

#include "common.h"

namespace ma_kernels {

// Column codes; ma_kernels/book.py holds the matching names.
enum BookInstant : int {
  kSpread, kMid, kMicroprice, kImbalance, kOfi, kLogReturn, kSignedVolume, kInterArrival,
  kBookInstantCount
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

  MA_HOST_DEVICE std::int64_t columns() const {
    return instant_count + depth_count + (ofi_levels ? ofi_levels + 1 : 0) +
           (window_count + time_window_count) * rolling_count;
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

// Running sum with Neumaier's compensation: value() is the sum of every x
// added (or subtracted) to within a few ulps, however many there were.
struct CompensatedSum {
  double sum = 0.0, carry = 0.0;
  MA_HOST_DEVICE void add(double x) {
    const double t = sum + x;
    carry += fabs(sum) >= fabs(x) ? (sum - t) + x : (x - t) + sum;
    sum = t;
  }
  MA_HOST_DEVICE double value() const { return sum + carry; }
};

// What one event adds to every rolling sum.
constexpr int kTerms = 6;
enum Term : int { kTermOfi, kTermSignedVolume, kTermNotional, kTermVolume, kTermTrades, kTermSquaredReturn };

// Order flow imbalance of one level between rows t - 1 and t. An empty level
// (NaN price) is priced -inf on the bid side and +inf on the ask side, so a
// level that appears adds its size and one that empties removes its old size.
template <typename T>
MA_HOST_DEVICE double level_ofi(const BookSeries& s, std::int64_t t, std::int64_t level) {
  const double inf = INFINITY;
  auto price = [&](const Matrix& m, std::int64_t row, double empty) {
    const double p = at<T>(m, row, level);
    return p == p ? p : empty;
  };
  const double b = price(s.bid_price, t, -inf), pb = price(s.bid_price, t - 1, -inf);
  const double a = price(s.ask_price, t, inf), pa = price(s.ask_price, t - 1, inf);
  const double bid_flow = (b >= pb ? at<T>(s.bid_size, t, level) : 0.0) -
                          (b <= pb ? at<T>(s.bid_size, t - 1, level) : 0.0);
  const double ask_flow = (a <= pa ? at<T>(s.ask_size, t, level) : 0.0) -
                          (a >= pa ? at<T>(s.ask_size, t - 1, level) : 0.0);
  return bid_flow - ask_flow;
}

template <typename T>
MA_HOST_DEVICE double mid(const BookSeries& s, std::int64_t t) {
  return 0.5 * (at<T>(s.bid_price, t, 0) + at<T>(s.ask_price, t, 0));
}

// log(mid_t / mid_{t-1}); 0 for the first row and where a mid is not positive.
template <typename T>
MA_HOST_DEVICE double log_return(const BookSeries& s, std::int64_t t) {
  if (t == 0) return 0.0;
  const double now = mid<T>(s, t), before = mid<T>(s, t - 1);
  // Most events leave the mid where it was: they skip the logarithm.
  if (now == before || !(now > 0.0 && before > 0.0)) return 0.0;
  return log1p((now - before) / before);
}

template <typename T>
MA_HOST_DEVICE void terms_at(const BookSeries& s, std::int64_t t, double* x) {
  const double price = at<T>(s.trade_price, t), size = at<T>(s.trade_size, t);
  const double r = log_return<T>(s, t);
  x[kTermOfi] = t > 0 ? level_ofi<T>(s, t, 0) : 0.0;
  x[kTermSignedVolume] = double(at<std::int8_t>(s.trade_side, t)) * size;
  x[kTermNotional] = price * size;
  x[kTermVolume] = size;
  x[kTermTrades] = size > 0.0 ? 1.0 : 0.0;
  x[kTermSquaredReturn] = r * r;
}

// Whether row j has left the time window [time_t - tau, time_t] of row t >= j.
// Times are non-decreasing, so the unsigned difference is exact.
MA_HOST_DEVICE bool before_time_window(const BookSeries& s, std::int64_t j, std::int64_t t,
                                       std::int64_t tau) {
  const auto now = static_cast<std::uint64_t>(at<std::int64_t>(s.time, t));
  const auto then = static_cast<std::uint64_t>(at<std::int64_t>(s.time, j));
  return now - then >= static_cast<std::uint64_t>(tau);
}

// One window's running sums and the first row they cover.
struct WindowSums {
  CompensatedSum term[kTerms];
  std::int64_t first;

  MA_HOST_DEVICE void add(const double* x, double sign) {
    for (int k = 0; k < kTerms; ++k) term[k].add(sign * x[k]);
  }
};

// Terms of rows by row index, remembered in `capacity` direct-mapped slots
// (a power of two): a row leaving a window is usually recent enough to be
// there, so its logarithm is not taken again. Capacity 0 remembers nothing
// (a CUDA thread has no room for it) and computes every time.
struct TermsMemo {
  double* terms;         // [capacity, kTerms]
  std::int64_t* rows;    // [capacity], the row each slot holds (-1: none)
  std::int64_t capacity;

  template <typename T>
  MA_HOST_DEVICE const double* get(const BookSeries& s, std::int64_t j, double* scratch) {
    if (capacity == 0) {
      terms_at<T>(s, j, scratch);
      return scratch;
    }
    const std::int64_t slot = j & (capacity - 1);
    double* x = terms + slot * kTerms;
    if (rows[slot] != j) {
      terms_at<T>(s, j, x);
      rows[slot] = j;
    }
    return x;
  }
};

template <typename U>
MA_HOST_DEVICE void store_rolling(const BookFeatureSpec& spec, const WindowSums& w, double mid,
                                  U* out) {
  for (int k = 0; k < spec.rolling_count; ++k) {
    double v = 0.0;
    switch (spec.rolling[k]) {
      case kOfiSum: v = w.term[kTermOfi].value(); break;
      case kSignedVolumeSum: v = w.term[kTermSignedVolume].value(); break;
      // The trade count is exact, so rounding never makes a window "traded".
      case kVwap:
        v = w.term[kTermTrades].value() > 0.5
                ? w.term[kTermNotional].value() / w.term[kTermVolume].value()
                : mid;
        break;
      case kRealizedVariance: v = fmax(w.term[kTermSquaredReturn].value(), 0.0); break;
    }
    out[k] = U(v);
  }
}

}  // namespace book

// Rows [begin, end) of the features of `s` into `out` (contiguous [rows, spec.columns()]).
// Window sums start from the rows before `begin` that the windows cover, so any
// split of the rows into ranges gives the same output. `memo` is this range's own.
template <typename T, typename U>
MA_HOST_DEVICE void book_features_rows(const BookSeries& s, const BookFeatureSpec& spec,
                                       std::int64_t begin, std::int64_t end, U* out,
                                       book::TermsMemo memo) {
  using namespace book;
  const int event_windows = spec.window_count;
  WindowSums windows[2 * kMaxSpecEntries];
  double scratch[kTerms];
  for (int w = 0; w < event_windows + spec.time_window_count; ++w) {
    std::int64_t first;
    if (w < event_windows) {
      first = begin - (spec.windows[w] - 1 < begin ? spec.windows[w] - 1 : begin);
    } else {  // the first row still inside the time window of row `begin`
      const std::int64_t tau = spec.time_windows[w - event_windows];
      std::int64_t lo = 0, hi = begin;
      while (lo < hi) {
        const std::int64_t m = lo + (hi - lo) / 2;
        if (before_time_window(s, m, begin, tau)) lo = m + 1; else hi = m;
      }
      first = lo;
    }
    windows[w] = WindowSums{};
    windows[w].first = first;
    for (std::int64_t j = first; j < begin; ++j) windows[w].add(memo.get<T>(s, j, scratch), 1.0);
  }

  const std::int64_t columns = spec.columns();
  for (std::int64_t t = begin; t < end; ++t) {
    U* row = out + t * columns;
    const double bid = at<T>(s.bid_price, t, 0), ask = at<T>(s.ask_price, t, 0);
    const double bid_size = at<T>(s.bid_size, t, 0), ask_size = at<T>(s.ask_size, t, 0);
    const double mid = 0.5 * (bid + ask), depth = bid_size + ask_size;
    int c = 0;
    for (int k = 0; k < spec.instant_count; ++k) {
      double v = 0.0;
      switch (spec.instant[k]) {
        case kSpread: v = ask - bid; break;
        case kMid: v = mid; break;
        case kMicroprice: v = depth > 0.0 ? (bid * ask_size + ask * bid_size) / depth : mid; break;
        case kImbalance: v = depth > 0.0 ? (bid_size - ask_size) / depth : 0.0; break;
        case kOfi: v = t > 0 ? level_ofi<T>(s, t, 0) : 0.0; break;
        case kLogReturn: v = log_return<T>(s, t); break;
        case kSignedVolume:
          v = double(at<std::int8_t>(s.trade_side, t)) * double(at<T>(s.trade_size, t));
          break;
        case kInterArrival:
          v = t > 0 ? 1e-9 * double(at<std::int64_t>(s.time, t) - at<std::int64_t>(s.time, t - 1))
                    : 0.0;
          break;
      }
      row[c++] = U(v);
    }
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
        const double v = t > 0 ? level_ofi<T>(s, t, level) : 0.0;
        total += v;
        row[c++] = U(v);
      }
      row[c++] = U(total);
    }
    double now[kTerms];
    if (event_windows + spec.time_window_count) {
      const double* x = memo.get<T>(s, t, scratch);
      for (int k = 0; k < kTerms; ++k) now[k] = x[k];
    }
    for (int w = 0; w < event_windows + spec.time_window_count; ++w) {
      WindowSums& sums = windows[w];
      sums.add(now, 1.0);
      if (w < event_windows) {
        for (; sums.first <= t - spec.windows[w]; ++sums.first) {
          sums.add(memo.get<T>(s, sums.first, scratch), -1.0);
        }
      } else {
        const std::int64_t tau = spec.time_windows[w - event_windows];
        for (; before_time_window(s, sums.first, t, tau); ++sums.first) {
          sums.add(memo.get<T>(s, sums.first, scratch), -1.0);
        }
      }
      store_rolling(spec, sums, mid, row + c);
      c += spec.rolling_count;
    }
  }
}

void book_features_cpu(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                       std::uintptr_t out, DType out_dtype);
#ifdef MA_KERNELS_WITH_CUDA
void book_features_cuda(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                        std::uintptr_t out, DType out_dtype, int device, std::uintptr_t stream);
#endif

}  // namespace ma_kernels
