// book_features on the CPU: threads take contiguous ranges of rows, and each
// range goes in blocks of kBlock rows. In a block, the event columns are
// filled one column at a time (one formula per loop, which the compiler
// vectorises), then the windows row by row from running sums of the rolling
// terms: the row entering each window is added, the rows leaving it are
// subtracted. Recent rows' terms are remembered in a direct-mapped memo, so a
// leaving row's logarithm is not taken again. A window's sum is summed afresh
// from its rows once every max(kRefresh, its length) rows, so the rounding
// of adding and subtracting never spans more than that many rows.
#include <algorithm>
#include <type_traits>
#include <vector>

#include "book_features.h"
#include "cpu/huge_pages.h"
#include "cpu/parallel.h"

// The hot functions are compiled twice where the compiler can (GCC, Clang on
// x86-64), one picked at run time: with AVX2 the selects of the formulas
// become blends, not branches that a random walk's comparisons mispredict,
// and the column loops run 4 wide.
#if defined(__x86_64__) && (defined(__GNUC__) || defined(__clang__))
#define MA_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define MA_CPU_CLONES
#endif

namespace ma_kernels {
namespace {

using book::kTerms;
using book::Quote;

constexpr int kBlock = 512;
// Rows whose terms each thread remembers: 8192 x 56 B stays in a core's L2.
constexpr std::int64_t kMemoRows = 1 << 13;
constexpr std::int64_t kRefresh = 4096;

// Terms of rows by row index in kMemoRows direct-mapped slots.
class TermsMemo {
 public:
  TermsMemo() : terms_(kMemoRows * kTerms), rows_(kMemoRows, -1) {}

  template <typename T>
  const double* get(const BookSeries& s, std::int64_t j) {
    const std::int64_t slot = j & (kMemoRows - 1);
    double* x = terms_.data() + slot * kTerms;
    if (rows_[slot] != j) {
      book::terms_at<T>(s, j, x);
      rows_[slot] = j;
    }
    return x;
  }

 private:
  std::vector<double> terms_;
  std::vector<std::int64_t> rows_;
};

// Column kCode of n rows from quotes held column-wise, each row's predecessor
// one entry before it.
template <int kCode>
MA_CPU_CLONES void quote_column(const double* bid, const double* bid_size, const double* ask,
                                const double* ask_size, int n, double* v) {
  for (int i = 0; i < n; ++i) {
    v[i] = book::quote_value<kCode>(Quote{bid[i + 1], bid_size[i + 1], ask[i + 1], ask_size[i + 1]},
                                    Quote{bid[i], bid_size[i], ask[i], ask_size[i]}, true);
  }
}

// rows[i * columns + k] = values[k][i] for i < n, k < kCount, row by row
// (each row's cache line written once), kCount known at compile time so
// the row's stores unroll (4-5 % of the model spec's time against a loop of
// run-time length, interleaved A/B).
// 1 .. kBookInstantCount instant columns.
using InstantCounts = std::integer_sequence<int, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11>;
static_assert(kBookInstantCount == 11, "InstantCounts lists 1 .. kBookInstantCount");

template <int kCount, typename U>
MA_CPU_CLONES void write_rows(const double (*values)[kBlock], int n, std::int64_t columns,
                              U* rows) {
  for (int i = 0; i < n; ++i) {
#pragma GCC unroll 16
    for (int k = 0; k < kCount; ++k) rows[i * columns + k] = U(values[k][i]);
  }
}

// The event columns of rows [t0, t0 + n), n <= kBlock, into out (row-major).
// Each column is first computed into a contiguous buffer from the quotes held
// column-wise (loops the compiler vectorises), then the rows are written.
template <typename T, typename U>
MA_CPU_CLONES void event_block(const BookSeries& s, const BookFeatureSpec& spec, std::int64_t t0,
                               int n, U* out) {
  // Quotes of rows t0 - 1 .. t0 + n - 1. At the start of the series row 0
  // stands in for its own predecessor, so every change against it is 0.
  // float64 quotes one row apart are read where they are, not copied (the
  // copy was ~8 % of the model spec's time on 2 cores).
  const std::int64_t first = t0 > 0 ? t0 - 1 : 0;
  const Matrix* sides[4] = {&s.bid_price, &s.bid_size, &s.ask_price, &s.ask_size};
  double copies[4][kBlock + 1];
  const double* quotes[4] = {copies[0], copies[1], copies[2], copies[3]};
  bool in_place = std::is_same_v<T, double> && t0 > 0;
  for (const Matrix* m : sides) in_place = in_place && m->row_stride == 1;
  if (in_place) {
    for (int k = 0; k < 4; ++k) quotes[k] = reinterpret_cast<const double*>(sides[k]->data) + first;
  } else {
    for (int i = 0; i <= n; ++i) {
      const Quote q = book::quote_at<T>(s, i ? t0 + i - 1 : first);
      copies[0][i] = q.bid, copies[1][i] = q.bid_size, copies[2][i] = q.ask,
      copies[3][i] = q.ask_size;
    }
  }
  const double *bid = quotes[0], *bid_size = quotes[1], *ask = quotes[2], *ask_size = quotes[3];
  const std::int64_t columns = spec.columns();
  U* rows = out + t0 * columns;
  double values[kBookInstantCount][kBlock];
  for (int k = 0; k < spec.instant_count; ++k) {
    double* v = values[k];
    const int code = spec.instant[k];
    if (code == kSignedVolume) {
      for (int i = 0; i < n; ++i) v[i] = book::signed_volume<T>(s, t0 + i);
    } else if (code == kInterArrival) {
      for (int i = 0; i < n; ++i) v[i] = book::inter_arrival<T>(s, t0 + i, i ? t0 + i - 1 : first);
    } else {
      book::with_constant(code, [&](auto c) {
        quote_column<c>(bid, bid_size, ask, ask_size, n, v);
      }, book::QuoteCodes{});
    }
  }
  book::with_constant(spec.instant_count, [&](auto count) {
    write_rows<count>(values, n, columns, rows);
  }, InstantCounts{});
  if (spec.depth_count || spec.ofi_levels) {
    for (int i = 0; i < n; ++i) {
      book::store_depth_columns<T>(s, spec, t0 + i, t0 + i > 0,
                                   rows + i * columns + spec.instant_count);
    }
  }
}

// The windows' sums of rows [begin, end), row by row.
template <typename T>
class Windows {
 public:
  Windows(const BookSeries& s, const BookFeatureSpec& spec, std::int64_t begin)
      : s_(s), spec_(spec), count_(spec.rolling_count ? spec.window_count + spec.time_window_count
                                                      : 0) {
    for (int w = 0; w < count_; ++w) {
      first_[w] = w < spec.window_count ? start(w, begin, 0) : bisect(w, begin);
      resum(w, begin - 1);
    }
  }

  int count() const { return count_; }

  // Moves every window to row t, the next row.
  MA_CPU_CLONES void advance(std::int64_t t) {
    const double* entering = memo_.get<T>(s_, t);
    for (int w = 0; w < count_; ++w) {
      const std::int64_t first = start(w, t, first_[w]);
      if (t - refreshed_[w] >= std::max(kRefresh, t - first)) {
        first_[w] = first;
        resum(w, t);
        continue;
      }
      for (int j = 0; j < kTerms; ++j) sums_[w][j] += entering[j];
      for (; first_[w] < first; ++first_[w]) {
        const double* leaving = memo_.get<T>(s_, first_[w]);
        for (int j = 0; j < kTerms; ++j) sums_[w][j] -= leaving[j];
      }
    }
  }

  // Window w's sums of the rolling terms at the current row.
  const double* sums(int w) const { return sums_[w]; }

 private:
  // The first row in window w of row t, at or after `lo`: a time window's
  // start moves forward a few rows at a time, so it is walked, not searched.
  std::int64_t start(int w, std::int64_t t, std::int64_t lo) const {
    if (w < spec_.window_count) return std::max<std::int64_t>(t - spec_.windows[w] + 1, 0);
    const std::int64_t tau = spec_.time_windows[w - spec_.window_count];
    while (lo < t && book::before_time_window(s_, lo, t, tau)) ++lo;
    return lo;
  }

  // The first row in time window w of row t, searched from row 0.
  std::int64_t bisect(int w, std::int64_t t) const {
    const std::int64_t tau = spec_.time_windows[w - spec_.window_count];
    std::int64_t lo = 0, hi = t;
    while (lo < hi) {
      const std::int64_t m = lo + (hi - lo) / 2;
      if (book::before_time_window(s_, m, t, tau)) lo = m + 1; else hi = m;
    }
    return lo;
  }

  // Sums of window w over rows [first_[w], last], added up afresh.
  MA_CPU_CLONES void resum(int w, std::int64_t last) {
    for (int j = 0; j < kTerms; ++j) sums_[w][j] = 0.0;
    for (std::int64_t r = first_[w]; r <= last; ++r) {
      const double* x = memo_.get<T>(s_, r);
      for (int j = 0; j < kTerms; ++j) sums_[w][j] += x[j];
    }
    refreshed_[w] = last;
  }

  const BookSeries& s_;
  const BookFeatureSpec& spec_;
  const int count_;
  TermsMemo memo_;
  std::int64_t first_[2 * kMaxSpecEntries] = {}, refreshed_[2 * kMaxSpecEntries] = {};
  double sums_[2 * kMaxSpecEntries][kTerms] = {};
};

template <typename T, typename U>
void book_features_rows(const BookSeries& s, const BookFeatureSpec& spec, std::int64_t begin,
                        std::int64_t end, U* out) {
  Windows<T> windows(s, spec, begin);
  const std::int64_t columns = spec.columns();
  for (std::int64_t t0 = begin; t0 < end; t0 += kBlock) {
    const int n = int(std::min<std::int64_t>(kBlock, end - t0));
    event_block<T>(s, spec, t0, n, out);
    if (!windows.count()) continue;
    for (std::int64_t t = t0; t < t0 + n; ++t) {
      windows.advance(t);
      U* rolling = out + t * columns + spec.event_columns();
      const double mid = book::quote_at<T>(s, t).mid();
      for (int w = 0; w < windows.count(); ++w) {
        book::store_rolling(spec, windows.sums(w), mid, rolling + w * spec.rolling_count);
      }
    }
  }
}

}  // namespace

void book_features_cpu(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                       std::uintptr_t out, DType out_dtype) {
  std::int64_t longest = 1;  // event window, for the warm-up each range re-reads
  for (int w = 0; w < spec.window_count; ++w) longest = std::max(longest, spec.windows[w]);
  longest = std::min(longest, series.rows);
  const std::int64_t grain = std::max<std::int64_t>(1 << 15, 16 * longest);
  dispatch_float(dtype, [&](auto* in_tag) {
    dispatch_float(out_dtype, [&](auto* out_tag) {
      using T = std::remove_pointer_t<decltype(in_tag)>;
      using U = std::remove_pointer_t<decltype(out_tag)>;
      U* features = reinterpret_cast<U*>(out);
      advise_huge_pages(out, sizeof(U) * spec.columns() * series.rows);
      parallel_for(series.rows, grain, [&](std::int64_t begin, std::int64_t end) {
        book_features_rows<T>(series, spec, begin, end, features);
      });
    });
  });
}

}  // namespace ma_kernels
