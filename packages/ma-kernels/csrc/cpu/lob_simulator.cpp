#include "lob_simulator.h"

#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

namespace ma_kernels {
namespace {

// xoshiro256** seeded through splitmix64: our own generator and samplers, so
// the stream does not depend on the standard library's distributions.
class Rng {
 public:
  explicit Rng(std::uint64_t seed) {
    for (auto& word : state_) {
      seed += 0x9E3779B97F4A7C15ull;
      std::uint64_t z = seed;
      z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
      z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
      word = z ^ (z >> 31);
    }
  }

  std::uint64_t next() {
    const std::uint64_t result = rotl(state_[1] * 5, 7) * 9;
    const std::uint64_t t = state_[1] << 17;
    state_[2] ^= state_[0];
    state_[3] ^= state_[1];
    state_[1] ^= state_[2];
    state_[0] ^= state_[3];
    state_[2] ^= t;
    state_[3] = rotl(state_[3], 45);
    return result;
  }

  // Uniform on [0, 1) with 53 random bits.
  double uniform() { return static_cast<double>(next() >> 11) * 0x1.0p-53; }

  // Uniform integer on [0, n), n > 0, without modulo bias.
  std::uint64_t below(std::uint64_t n) {
    const std::uint64_t threshold = (0 - n) % n;
    for (;;) {
      const std::uint64_t r = next();
      if (r >= threshold) return r % n;
    }
  }

  // Exponential with mean 1; 1 - uniform() lies in (0, 1], so the log is finite.
  double exponential() { return -std::log(1.0 - uniform()); }

 private:
  static std::uint64_t rotl(std::uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }
  std::uint64_t state_[4];
};

// One side of the book: queue[i] is the size resting i ticks behind the best
// quote. queue[0] > 0 always: when it empties the best quote moves out to the
// next non-empty level, and levels entering the tracked window get a fresh queue.
struct Side {
  std::int64_t best;       // best price in ticks
  std::int64_t outward;    // -1 for bids (deeper is lower), +1 for asks
  std::int64_t volume;     // sum of queue
  std::vector<std::int64_t> queue;
};

class Simulator {
 public:
  Simulator(std::int64_t levels, std::uint64_t seed, const LobParams& p)
      : p_(p), levels_(levels), rng_(seed) {
    const double mean_order = 0.5 * static_cast<double>(p.max_order_size + 1);
    cancel_per_unit_ = p.cancel_rate / mean_order;
    // A level with no market orders settles around limit_rate / cancel_rate
    // orders; fresh levels are drawn with that mean size.
    const double depth = std::max(1.0, std::round(p.limit_rate / p.cancel_rate * mean_order));
    fresh_max_ = 2 * static_cast<std::int64_t>(depth) - 1;
    // k / 100 is the double nearest k * 0.01, k * 0.01 often is not (99.99000000000001).
    const double per_unit = std::round(1.0 / p.tick_size);
    ticks_per_unit_ = std::abs(per_unit * p.tick_size - 1.0) < 1e-12 ? per_unit : 0.0;
    const auto bid = static_cast<std::int64_t>(std::llround(p.initial_bid / p.tick_size));
    init_side(bid_, bid, -1);
    init_side(ask_, bid + 1, +1);
  }

  void run(std::int64_t n_events, const LobOutput& out) {
    std::int64_t time = 0;
    for (std::int64_t row = 0; row < n_events; ++row) {
      const Trade trade = step(time);
      out.time[row] = time;
      out.event[row] = trade.event;
      out.trade_price[row] = trade.side ? price(trade.price) : 0.0;
      out.trade_size[row] = static_cast<double>(trade.size);
      out.trade_side[row] = trade.side;
      write_side(bid_, out.bid_price + row * levels_, out.bid_size + row * levels_);
      write_side(ask_, out.ask_price + row * levels_, out.ask_size + row * levels_);
    }
  }

 private:
  struct Trade {
    std::int8_t event;
    std::int8_t side;
    std::int64_t price;
    std::int64_t size;
  };

  void init_side(Side& s, std::int64_t best, std::int64_t outward) {
    s.best = best;
    s.outward = outward;
    s.queue.resize(static_cast<std::size_t>(levels_));
    s.volume = 0;
    for (auto& q : s.queue) {
      q = fresh_queue();
      s.volume += q;
    }
  }

  std::int64_t order_size() { return 1 + static_cast<std::int64_t>(rng_.below(p_.max_order_size)); }
  std::int64_t fresh_queue() { return 1 + static_cast<std::int64_t>(rng_.below(fresh_max_)); }

  // Draws the next event, applies it and advances `time`.
  Trade step(std::int64_t& time) {
    const double qb = static_cast<double>(bid_.queue[0]);
    const double qa = static_cast<double>(ask_.queue[0]);
    const double imbalance = (qb - qa) / (qb + qa);
    const bool wide = ask_.best - bid_.best > 1;
    const double limit = p_.limit_rate * static_cast<double>(levels_);
    const double inside = wide ? p_.spread_limit_rate : 0.0;
    const double improve_bid = inside * (1 + p_.spread_imbalance_bias * imbalance);
    const double improve_ask = inside * (1 - p_.spread_imbalance_bias * imbalance);
    const double buy = p_.market_rate * (1 + p_.market_imbalance_bias * imbalance);
    const double sell = p_.market_rate * (1 - p_.market_imbalance_bias * imbalance);
    const double cancel_bid = cancel_per_unit_ * static_cast<double>(bid_.volume);
    const double cancel_ask = cancel_per_unit_ * static_cast<double>(ask_.volume);
    const double total =
        2 * limit + improve_bid + improve_ask + buy + sell + cancel_bid + cancel_ask;

    // At least 1 ns apart, so event time is strictly increasing.
    const double wait_ns = rng_.exponential() / total * 1e9;
    time += std::max<std::int64_t>(1, static_cast<std::int64_t>(wait_ns + 0.5));

    double u = rng_.uniform() * total;
    if ((u -= limit) < 0) return submit(bid_);
    if ((u -= limit) < 0) return submit(ask_);
    if ((u -= improve_bid) < 0) return improve(bid_);
    if ((u -= improve_ask) < 0) return improve(ask_);
    if ((u -= buy) < 0) return execute(ask_, +1);
    if ((u -= sell) < 0) return execute(bid_, -1);
    if ((u -= cancel_bid) < 0) return cancel(bid_);
    return cancel(ask_);
  }

  Trade submit(Side& s) {
    const std::int64_t size = order_size();
    s.queue[rng_.below(static_cast<std::uint64_t>(levels_))] += size;
    s.volume += size;
    return {kEventSubmit, 0, 0, 0};
  }

  // A limit order one tick inside the spread becomes the new best quote; the
  // deepest tracked level leaves the window.
  Trade improve(Side& s) {
    const std::int64_t size = order_size();
    s.volume += size - s.queue.back();
    std::copy_backward(s.queue.begin(), s.queue.end() - 1, s.queue.end());
    s.queue[0] = size;
    s.best -= s.outward;
    return {kEventSubmit, 0, 0, 0};
  }

  // A market order of `aggressor` side against the best queue of `s`; it never
  // takes more than that queue, so each trade has one price.
  Trade execute(Side& s, std::int8_t aggressor) {
    const std::int64_t size = std::min(order_size(), s.queue[0]);
    const std::int64_t price = s.best;
    take(s, 0, size);
    return {kEventExecute, aggressor, price, size};
  }

  // Each resting unit is equally likely to be cancelled, so a level's
  // cancellation rate is proportional to its size.
  Trade cancel(Side& s) {
    auto unit = static_cast<std::int64_t>(rng_.below(static_cast<std::uint64_t>(s.volume)));
    std::int64_t level = 0;
    while (unit >= s.queue[level]) unit -= s.queue[level++];
    const std::int8_t code = rng_.uniform() < p_.partial_cancel_prob ? kEventCancel : kEventDelete;
    take(s, level, std::min(order_size(), s.queue[level]));
    return {code, 0, 0, 0};
  }

  void take(Side& s, std::int64_t level, std::int64_t size) {
    s.queue[level] -= size;
    s.volume -= size;
    if (s.queue[0] == 0) deplete(s);
  }

  // The best queue is gone: the next non-empty level becomes the best. Levels
  // beyond the window count as non-empty (they enter it with a fresh queue).
  void deplete(Side& s) {
    std::int64_t shift = 1;
    while (shift < levels_ && s.queue[shift] == 0) ++shift;
    std::copy(s.queue.begin() + shift, s.queue.end(), s.queue.begin());
    for (std::int64_t i = levels_ - shift; i < levels_; ++i) {
      s.queue[i] = fresh_queue();
      s.volume += s.queue[i];
    }
    s.best += s.outward * shift;
  }

  double price(std::int64_t ticks) const {
    const auto k = static_cast<double>(ticks);
    return ticks_per_unit_ > 0 ? k / ticks_per_unit_ : k * p_.tick_size;
  }

  // Non-empty levels best first, then empty ones (price NaN, size 0).
  void write_side(const Side& s, double* prices, double* sizes) const {
    std::int64_t j = 0;
    for (std::int64_t i = 0; i < levels_; ++i) {
      if (s.queue[i] == 0) continue;
      prices[j] = price(s.best + s.outward * i);
      sizes[j] = static_cast<double>(s.queue[i]);
      ++j;
    }
    for (; j < levels_; ++j) {
      prices[j] = std::numeric_limits<double>::quiet_NaN();
      sizes[j] = 0.0;
    }
  }

  const LobParams p_;
  const std::int64_t levels_;
  Rng rng_;
  double cancel_per_unit_;
  std::int64_t fresh_max_;
  double ticks_per_unit_;  // 1 / tick_size when that is an integer, else 0
  Side bid_;
  Side ask_;
};

}  // namespace

void lob_simulate_cpu(std::int64_t n_events, std::int64_t levels, std::uint64_t seed,
                      const LobParams& params, const LobOutput& out) {
  Simulator(levels, seed, params).run(n_events, out);
}

}  // namespace ma_kernels
