#ifndef FRUGAL_OPTIM_SCHEDULE_HPP
#define FRUGAL_OPTIM_SCHEDULE_HPP

/// @file
/// Learning-rate schedules, indexed by optimizer iteration (a dropped
/// mini-batch still advances the iteration count, as E2-Train's SMD
/// requires): step decay at milestones, cosine annealing, linear warm-up in
/// front of either.

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include "frugal/error.hpp"

namespace frugal {

/// lr = base * gamma^(number of milestones passed).
struct step_schedule {
    float base = 0.1f;
    std::vector<std::uint64_t> milestones; ///< iterations, increasing
    float gamma = 0.1f;

    [[nodiscard]] float operator()(std::uint64_t it) const {
        float lr = base;
        for (const auto m : milestones) {
            lr *= it >= m ? gamma : 1.0f;
        }
        return lr;
    }
};

/// lr = min + (base - min) * (1 + cos(pi * it / total)) / 2, then min.
struct cosine_schedule {
    float base = 0.1f;
    std::uint64_t total = 1;
    float min = 0.0f;

    [[nodiscard]] float operator()(std::uint64_t it) const {
        if (it >= total) {
            return min;
        }
        const double c = 0.5 * (1.0 + std::cos(3.141592653589793 * static_cast<double>(it) / static_cast<double>(total)));
        return static_cast<float>(min + (base - min) * c);
    }
};

/// Any schedule as a value: which one is data (chosen on a command line),
/// evaluated once per iteration.
class lr_schedule {
public:
    enum class kind : std::uint8_t { constant, step, cosine };

    static lr_schedule constant(float lr) { return lr_schedule(kind::constant, step_schedule{lr, {}, 1.0f}, {}, 0); }
    static lr_schedule step(step_schedule s, std::uint64_t warmup = 0) { return lr_schedule(kind::step, std::move(s), {}, warmup); }
    static lr_schedule cosine(cosine_schedule c, std::uint64_t warmup = 0) { return lr_schedule(kind::cosine, {}, c, warmup); }

    /// The rate at iteration `it`: during warm-up a linear ramp from base/warmup to base.
    [[nodiscard]] float operator()(std::uint64_t it) const {
        const float lr = k_ == kind::cosine ? cos_(it) : step_(it);
        if (it < warmup_) {
            return lr * static_cast<float>(it + 1) / static_cast<float>(warmup_);
        }
        return lr;
    }

    [[nodiscard]] std::string describe() const {
        switch (k_) {
        case kind::constant: return "constant " + std::to_string(step_.base);
        case kind::step: return "step from " + std::to_string(step_.base);
        case kind::cosine: return "cosine from " + std::to_string(cos_.base);
        }
        return "?";
    }

private:
    lr_schedule(kind k, step_schedule s, cosine_schedule c, std::uint64_t warmup)
        : k_(k), step_(std::move(s)), cos_(c), warmup_(warmup) {}

    kind k_;
    step_schedule step_;
    cosine_schedule cos_;
    std::uint64_t warmup_;
};

} // namespace frugal

#endif
