#ifndef FRUGAL_EXAMPLES_COMMON_SCHEDULE_HPP
#define FRUGAL_EXAMPLES_COMMON_SCHEDULE_HPP

// The learning-rate schedules the examples offer by name (--schedule):
// "cosine" to 0 over the run, otherwise "step" (x0.1 at 50% and 75%).

#include <cstdint>
#include <string>

#include <frugal/optim/schedule.hpp>

namespace cli {

[[nodiscard]] inline frugal::lr_schedule named_schedule(const std::string& name, double lr, std::uint64_t iters) {
    const auto base = static_cast<float>(lr);
    return name == "cosine" ? frugal::lr_schedule::cosine({base, iters, 0.0f})
                            : frugal::lr_schedule::step({base, {iters / 2, iters * 3 / 4}, 0.1f});
}

} // namespace cli

#endif
