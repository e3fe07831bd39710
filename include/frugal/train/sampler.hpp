#ifndef FRUGAL_TRAIN_SAMPLER_HPP
#define FRUGAL_TRAIN_SAMPLER_HPP

/// @file
/// frugal::stochastic_drop: E2-Train's stochastic mini-batch dropping (SMD,
/// SPEC §1.2(a)), a Sampler for frugal::fit.
///
/// Every nominal iteration draws u ~ U(0, 1) and drops the mini-batch when
/// u < p (p = 0.5 by default, the paper's "u > 0.5"). The draw is a pure
/// function of (seed, epoch, batch), so a resumed run drops exactly the same
/// batches, and the sampler has no state to checkpoint. The trainer keeps
/// counting nominal iterations for the learning-rate schedule and the
/// budget, whether a batch executes or not (what the paper does).
///
/// Two modes (SPEC §1.2(a), pitfall):
/// - default: a dropped batch does nothing at all: no data loading or
///   augmentation, no forward, no backward, no optimizer step;
/// - `momentum_step = true` (the authors' implementation, SPEC's
///   `smd_momentum_step`): a dropped batch still runs the optimizer step
///   with zero gradients, so momentum and weight decay keep moving the
///   weights. fit() asks the sampler through `step_when_dropped()`.

#include <cstdint>

#include "frugal/error.hpp"
#include "frugal/numeric/random.hpp"

namespace frugal {

class stochastic_drop {
public:
    static constexpr const char* name = "stochastic_drop";

    /// @param p     drop probability in [0, 1]
    /// @param seed  the sampler's own seed (independent of data and weights)
    /// @param momentum_step  run the optimizer step with zero gradients on dropped batches
    explicit stochastic_drop(double p = 0.5, std::uint64_t seed = 1, bool momentum_step = false)
        : p_(p), seed_(seed), momentum_step_(momentum_step) {
        if (!(p >= 0.0 && p <= 1.0)) {
            throw error(detail::concat("frugal::stochastic_drop: the drop probability must be in [0, 1], not ", p));
        }
    }

    /// The uniform draw of nominal batch `batch` of `epoch` (epoch as fit
    /// passes it, 1-based): in [0, 1), a pure function of (seed, epoch, batch).
    [[nodiscard]] double draw(std::uint64_t epoch, std::uint64_t batch) const noexcept {
        // one generator per (epoch, batch): its stream number is the pair
        rng g(seed_, (epoch << 32) ^ batch ^ 0x534d440000000000ULL);
        return g.uniform_double();
    }

    /// Whether nominal batch `batch` of `epoch` executes.
    [[nodiscard]] bool take(std::uint64_t epoch, std::uint64_t batch) const noexcept { return !(draw(epoch, batch) < p_); }

    /// Whether fit must still take the optimizer step (with zero gradients)
    /// for a dropped batch.
    [[nodiscard]] bool step_when_dropped() const noexcept { return momentum_step_; }

    [[nodiscard]] double p() const noexcept { return p_; }
    [[nodiscard]] std::uint64_t seed() const noexcept { return seed_; }

private:
    double p_;
    std::uint64_t seed_;
    bool momentum_step_;
};

} // namespace frugal

#endif
