#include <algorithm>
#include <type_traits>
#include <vector>

#include "book_features.h"
#include "cpu/huge_pages.h"
#include "cpu/parallel.h"

namespace ma_kernels {
namespace {

// Rows whose terms each thread remembers: 8192 x 56 B stays in a core's L2.
constexpr std::int64_t kMemoRows = 1 << 13;

}  // namespace

void book_features_cpu(const BookSeries& series, DType dtype, const BookFeatureSpec& spec,
                       std::uintptr_t out, DType out_dtype) {
  std::int64_t longest = 1;  // event window, for the warm-up each chunk re-reads
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
        std::vector<double> terms(kMemoRows * book::kTerms);
        std::vector<std::int64_t> rows(kMemoRows, -1);
        book_features_rows<T>(series, spec, begin, end, features,
                              book::TermsMemo{terms.data(), rows.data(), kMemoRows});
      });
    });
  });
}

}  // namespace ma_kernels
