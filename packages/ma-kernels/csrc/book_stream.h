// book_features one event at a time: the next event of each of B instruments
// against the state a stream keeps of each (its last event, its count of
// events, a ring of its last rolling terms and event times), with the
// formulas of book_features.h, so a stream computes what the batch op does.
//
// A step is two calls, so that a caller may refuse events once their
// features are known: `columns` reads the state and writes each event's
// columns and rolling terms; `commit` writes the accepted events into the
// state. The rolling sums are summed afresh from the ring at every event
// (exact: no running sum to drift).
#pragma once

#include <cstdint>

#include "book_features.h"

namespace ma_kernels {

// One event per instrument, float64 (trade side as -1.0, 0.0, +1.0).
struct StreamEvents {
  std::int64_t batch, levels;  // levels: what the state keeps (the spec's, at least 1)
  Matrix bid_price, bid_size, ask_price, ask_size;  // [B, >= levels]
  Column trade_price, trade_size, trade_side, time /* int64 */;
  const std::uint8_t* active;  // [B]
};

struct StreamState {
  double* book;          // [B, 4, levels]: the last event's bid, bid size, ask, ask size
  std::int64_t* time;    // [B]: the last event's time
  std::int64_t* count;   // [B]: events so far
  double* ring;          // [B, capacity, kTerms]: terms of event n in slot n % capacity
  std::int64_t* times;   // [B, capacity]
  std::int64_t capacity;
  std::int64_t max_events;  // the most events a time window may hold
};

// Per instrument: the columns [B, spec.columns()], the event's terms [B, kTerms],
// and for each time window whether it would hold more than max_events [B, TW].
struct StreamOut {
  double* columns;
  double* terms;
  std::uint8_t* overflow;
};

namespace book {

template <typename T>
MA_HOST_DEVICE T stream_at(const Column& c, std::int64_t b) {
  return reinterpret_cast<const T*>(c.data)[b * c.stride];
}

MA_HOST_DEVICE Quote stream_level(const StreamEvents& e, std::int64_t b, std::int64_t level) {
  return {at<double>(e.bid_price, b, level), at<double>(e.bid_size, b, level),
          at<double>(e.ask_price, b, level), at<double>(e.ask_size, b, level)};
}

MA_HOST_DEVICE Quote state_level(const StreamState& st, std::int64_t levels, std::int64_t b,
                                 std::int64_t level) {
  const double* q = st.book + b * 4 * levels + level;
  return {q[0], q[levels], q[2 * levels], q[3 * levels]};
}

// Instrument b's event columns (instant, depth, level OFI) and terms.
MA_HOST_DEVICE void stream_event(const StreamEvents& e, const StreamState& st,
                                 const BookFeatureSpec& spec, std::int64_t b, double* row,
                                 double* terms) {
  const bool has_before = st.count[b] > 0;
  const Quote now = stream_level(e, b, 0);
  const Quote before = has_before ? state_level(st, e.levels, b, 0) : now;
  const double size = stream_at<double>(e.trade_size, b);
  const double side = stream_at<double>(e.trade_side, b);
  const std::int64_t time = stream_at<std::int64_t>(e.time, b);
  store_event_columns(
      spec, now, before, has_before, [&] { return side * size; },
      [&] { return 1e-9 * double(time - st.time[b]); },
      [&](std::int64_t level) { return stream_level(e, b, level); },
      [&](std::int64_t level) { return state_level(st, e.levels, b, level); }, row);
  terms_of(now, before, has_before, stream_at<double>(e.trade_price, b), size, side, terms);
}

// Adds to sums [(windows + time windows) * kTerms] the ring entries of slots
// first, first + step, ... that lie in each window of instrument b's event
// (the slot the event will take is in none: its terms are added apart).
MA_HOST_DEVICE void add_ring_sums(const StreamEvents& e, const StreamState& st,
                                  const BookFeatureSpec& spec, std::int64_t b, std::int64_t first,
                                  std::int64_t step, double* sums) {
  const std::int64_t slot = st.count[b] % st.capacity;
  const std::int64_t now = stream_at<std::int64_t>(e.time, b);
  const double* ring = st.ring + b * st.capacity * kTerms;
  const std::int64_t* times = st.times + b * st.capacity;
  for (std::int64_t j = first; j < st.capacity; j += step) {
    const std::int64_t age = (slot - j + st.capacity) % st.capacity;
    if (age == 0) continue;
    for (int w = 0; w < spec.window_count; ++w) {
      if (age < spec.windows[w]) {
        for (int k = 0; k < kTerms; ++k) sums[w * kTerms + k] += ring[j * kTerms + k];
      }
    }
    for (int w = 0; w < spec.time_window_count; ++w) {
      // Unwritten slots (time 0) may pass the time test; they hold zero terms.
      if (times[j] > now - spec.time_windows[w]) {
        double* into = sums + (spec.window_count + w) * kTerms;
        for (int k = 0; k < kTerms; ++k) into[k] += ring[j * kTerms + k];
      }
    }
  }
}

// The rolling columns of instrument b from its ring sums plus its own terms;
// a time window that would hold more than max_events events is NaN there
// and flagged. Times are non-decreasing, so that happens iff the event
// max_events back is still inside the window.
MA_HOST_DEVICE void stream_rolling(const StreamEvents& e, const StreamState& st,
                                   const BookFeatureSpec& spec, std::int64_t b, double* sums,
                                   const double* terms, double* row, std::uint8_t* overflow) {
  const Quote now = stream_level(e, b, 0);
  const std::int64_t time = stream_at<std::int64_t>(e.time, b), count = st.count[b];
  double* out = row + spec.event_columns();
  const int windows = spec.window_count + spec.time_window_count;
  for (int w = 0; w < windows; ++w) {
    double* s = sums + w * kTerms;
    for (int k = 0; k < kTerms; ++k) s[k] += terms[k];
    store_rolling(spec, s, now.mid(), out + w * spec.rolling_count);
    if (w < spec.window_count) continue;
    const int tw = w - spec.window_count;
    const std::int64_t oldest =
        st.times[b * st.capacity + ((count - st.max_events) % st.capacity + st.capacity) %
                                       st.capacity];
    const bool over = e.active[b] && count >= st.max_events &&
                      oldest > time - spec.time_windows[tw];
    overflow[b * spec.time_window_count + tw] = over;
    if (over) {
      for (int k = 0; k < spec.rolling_count; ++k) out[w * spec.rolling_count + k] = NAN;
    }
  }
}

// Instrument b's accepted event becomes part of its state.
MA_HOST_DEVICE void stream_commit(const StreamEvents& e, const StreamState& st,
                                  const double* terms, std::int64_t b) {
  if (!e.active[b]) return;
  const std::int64_t slot = st.count[b] % st.capacity;
  for (int k = 0; k < kTerms; ++k) st.ring[(b * st.capacity + slot) * kTerms + k] = terms[k];
  const std::int64_t time = stream_at<std::int64_t>(e.time, b);
  st.times[b * st.capacity + slot] = time;
  double* q = st.book + b * 4 * e.levels;
  for (std::int64_t level = 0; level < e.levels; ++level) {
    const Quote now = stream_level(e, b, level);
    q[level] = now.bid;
    q[e.levels + level] = now.bid_size;
    q[2 * e.levels + level] = now.ask;
    q[3 * e.levels + level] = now.ask_size;
  }
  st.time[b] = time;
  st.count[b] += 1;
}

// Why an event is refused (0: it is not), in this order of precedence; the
// names are ma_kernels.book_stream.TICK_REASONS, the checks those of
// ma_features.bad_rows on the levels the stream keeps, then a missing best
// quote and time before the instrument's last event.
enum TickReason : int {
  kTickOk, kBadEvent, kBadSize, kBadPrice, kEmptyLevelPrice, kUnsortedLevels, kCrossedBook,
  kBadTrade, kEmptySide, kTimeBackwards
};
constexpr std::int64_t kFirstEventCode = 1, kLastEventCode = 7;  // ma_features.EventType

MA_HOST_DEVICE int tick_reason(const StreamEvents& e, const StreamState& st, const Column& event,
                               std::int64_t b) {
  bool bad_size = false, bad_price = false, empty_price = false, unsorted = false;
  bool present_best[2] = {false, false};
  double best[2] = {0.0, 0.0};
  for (int side = 0; side < 2; ++side) {
    const Matrix& prices = side ? e.ask_price : e.bid_price;
    const Matrix& sizes = side ? e.ask_size : e.bid_size;
    bool present_above = false;
    double price_above = 0.0, size_above = 0.0;
    for (std::int64_t level = 0; level < e.levels; ++level) {
      const double price = at<double>(prices, b, level), size = at<double>(sizes, b, level);
      const bool finite = price - price == 0.0;  // neither NaN nor infinite
      bad_size |= !(size - size == 0.0) || size < 0.0;
      bad_price |= size > 0.0 && !(finite && price > 0.0);
      empty_price |= size == 0.0 && price == price;
      const bool present = size > 0.0 && finite;
      if (level > 0) {
        const bool worse = side ? price > price_above : price < price_above;
        unsorted |= present && (size_above == 0.0 || (present_above && !worse));
      } else {
        present_best[side] = present;
        best[side] = price;
      }
      present_above = present;
      price_above = price;
      size_above = size;
    }
  }
  const double price = stream_at<double>(e.trade_price, b);
  const double size = stream_at<double>(e.trade_size, b);
  const double side = stream_at<double>(e.trade_side, b);
  bad_size |= !(size - size == 0.0) || size < 0.0;
  bad_price |= size > 0.0 && !(price - price == 0.0 && price > 0.0);
  const bool bad_trade = side < -1.0 || side > 1.0 || (size == 0.0 && (price != 0.0 || side != 0.0));
  const std::int64_t code = stream_at<std::int64_t>(event, b);
  const std::int64_t time = stream_at<std::int64_t>(e.time, b);
  if (code < kFirstEventCode || code > kLastEventCode) return kBadEvent;
  if (bad_size) return kBadSize;
  if (bad_price) return kBadPrice;
  if (empty_price) return kEmptyLevelPrice;
  if (unsorted) return kUnsortedLevels;
  if (present_best[0] && present_best[1] && best[0] >= best[1]) return kCrossedBook;
  if (bad_trade) return kBadTrade;
  if (!(best[0] - best[0] == 0.0) || !(best[1] - best[1] == 0.0)) return kEmptySide;
  if (st.count[b] > 0 && time < st.time[b]) return kTimeBackwards;
  return kTickOk;
}

}  // namespace book

void book_tick_reasons_cpu(const StreamEvents& events, const StreamState& state,
                           const Column& event, std::int8_t* reasons);
void book_stream_columns_cpu(const StreamEvents& events, const StreamState& state,
                             const BookFeatureSpec& spec, const StreamOut& out);
void book_stream_commit_cpu(const StreamEvents& events, const StreamState& state,
                            const double* terms);
#ifdef MA_KERNELS_WITH_CUDA
void book_tick_reasons_cuda(const StreamEvents& events, const StreamState& state,
                            const Column& event, std::int8_t* reasons, int device,
                            std::uintptr_t stream);
void book_stream_columns_cuda(const StreamEvents& events, const StreamState& state,
                              const BookFeatureSpec& spec, const StreamOut& out, int device,
                              std::uintptr_t stream);
void book_stream_commit_cuda(const StreamEvents& events, const StreamState& state,
                             const double* terms, int device, std::uintptr_t stream);
#endif

}  // namespace ma_kernels
