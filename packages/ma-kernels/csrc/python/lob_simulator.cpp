#include "lob_simulator.h"

#include "python/bind.h"

namespace py = pybind11;

namespace ma_kernels::python {

void register_lob_simulator(py::module_& m) {
  m.def(
      "lob_simulate_cpu",
      [](std::int64_t n_events, std::int64_t levels, std::uint64_t seed, double tick_size,
         double initial_bid, double limit_rate, double spread_limit_rate, double market_rate,
         double market_imbalance_bias, double spread_imbalance_bias, double cancel_rate,
         double partial_cancel_prob, std::int64_t max_order_size, std::uintptr_t time,
         std::uintptr_t event, std::uintptr_t bid_price, std::uintptr_t bid_size,
         std::uintptr_t ask_price, std::uintptr_t ask_size, std::uintptr_t trade_price,
         std::uintptr_t trade_size, std::uintptr_t trade_side) {
        const LobParams params{tick_size,         initial_bid,           limit_rate,
                               spread_limit_rate, market_rate,           market_imbalance_bias,
                               spread_imbalance_bias, cancel_rate,       partial_cancel_prob,
                               max_order_size};
        const LobOutput out{reinterpret_cast<std::int64_t*>(time),
                            reinterpret_cast<std::int8_t*>(event),
                            reinterpret_cast<double*>(bid_price),
                            reinterpret_cast<double*>(bid_size),
                            reinterpret_cast<double*>(ask_price),
                            reinterpret_cast<double*>(ask_size),
                            reinterpret_cast<double*>(trade_price),
                            reinterpret_cast<double*>(trade_size),
                            reinterpret_cast<std::int8_t*>(trade_side)};
        py::gil_scoped_release no_gil;
        lob_simulate_cpu(n_events, levels, seed, params, out);
      },
      py::arg("n_events"), py::arg("levels"), py::arg("seed"), py::arg("tick_size"),
      py::arg("initial_bid"), py::arg("limit_rate"), py::arg("spread_limit_rate"),
      py::arg("market_rate"), py::arg("market_imbalance_bias"), py::arg("spread_imbalance_bias"),
      py::arg("cancel_rate"), py::arg("partial_cancel_prob"), py::arg("max_order_size"),
      py::arg("time"), py::arg("event"), py::arg("bid_price"), py::arg("bid_size"),
      py::arg("ask_price"), py::arg("ask_size"), py::arg("trade_price"), py::arg("trade_size"),
      py::arg("trade_side"));
}

}  // namespace ma_kernels::python
