// Queue-reactive limit order book simulator (model and parameters:
// docs/simulator.md). One sequential event loop on one core; its output rows
// are the columns of ma_features.Ticks.
#pragma once

#include <cstdint>

namespace ma_kernels {

// Event codes of ma_features.EventType (LOBSTER's).
constexpr std::int8_t kEventSubmit = 1;
constexpr std::int8_t kEventCancel = 2;
constexpr std::int8_t kEventDelete = 3;
constexpr std::int8_t kEventExecute = 4;

// Rates are per second. ma_kernels.simulator validates every field before
// calling in; the loop trusts them.
struct LobParams {
  double tick_size;          // price grid step, > 0
  double initial_bid;        // best bid at start (rounded to the grid); the ask is a tick above
  double limit_rate;         // limit orders at each tracked level of each side, > 0
  double spread_limit_rate;  // one-tick improvements per side while the spread is wider, > 0
  double market_rate;        // market orders per side at zero imbalance, >= 0
  // b in [0, 1]: buys arrive at market_rate * (1 + b * I), sells at * (1 - b * I),
  // I = L1 imbalance; likewise bid / ask improvements inside the spread.
  double market_imbalance_bias;
  double spread_imbalance_bias;
  double cancel_rate;           // cancellations per resting order of mean size, > 0
  double partial_cancel_prob;   // share of cancellations coded CANCEL rather than DELETE
  std::int64_t max_order_size;  // order sizes are uniform on 1..max_order_size
};

// Preallocated, contiguous outputs of n_events rows; book arrays are
// [n_events, levels] row-major and hold the book after each event.
struct LobOutput {
  std::int64_t* time;  // ns since the start, strictly increasing
  std::int8_t* event;
  double* bid_price;
  double* bid_size;
  double* ask_price;
  double* ask_size;
  double* trade_price;
  double* trade_size;
  std::int8_t* trade_side;  // +1 buyer-initiated, -1 seller-initiated, 0 no trade
};

// Same (seed, params, levels) gives the same output on every run and machine.
void lob_simulate_cpu(std::int64_t n_events, std::int64_t levels, std::uint64_t seed,
                      const LobParams& params, const LobOutput& out);

}  // namespace ma_kernels
