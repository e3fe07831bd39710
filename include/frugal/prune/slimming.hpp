#ifndef FRUGAL_PRUNE_SLIMMING_HPP
#define FRUGAL_PRUNE_SLIMMING_HPP

/// @file
/// frugal::slimming: the sparsity penalty of network slimming (Liu et al.
/// 2017) that Early-Bird tickets train with, as a gradient rule of
/// frugal::optimizer.
///
/// The loss becomes `L = CE + lambda * sum |gamma|` over the scale of every
/// batch-normalization layer (every parameter whose role is
/// param_role::bn_scale). As in the authors' code, the penalty is not
/// back-propagated: after back-propagation the optimizer adds
/// `lambda * sign(gamma)` to `dL/dgamma` (sign(0) = 0), before the update
/// rule applies momentum and weight decay. Other parameters are untouched.
///
///     frugal::optimizer<frugal::slimming<>, frugal::sgd> opt(
///         frugal::parameters_of(net), frugal::sgd{0.9f, 1e-4f}, frugal::slimming<>{1e-4f});
///
/// The rule wraps another gradient rule (the exact gradient by default),
/// which runs first.

#include <cstddef>
#include <span>

#include "frugal/layers/layer.hpp"
#include "frugal/optim/sgd.hpp"

namespace frugal {

template <class Inner = exact_gradient>
struct slimming {
    /// What checkpoints record for this rule (the inner rule is not part of it).
    static constexpr const char* name = "slimming";

    /// Strength of the L1 penalty on batch-norm scales (SPEC 2.3: 1e-4).
    float lambda = 1e-4f;
    /// The rule that computes the gradient first.
    Inner inner{};

    void apply(const parameter& p, std::span<float> g) const {
        inner.apply(p, g);
        if (p.role != param_role::bn_scale || lambda == 0.0f) {
            return;
        }
        const std::size_t n = g.size();
        for (std::size_t i = 0; i < n; ++i) {
            const float v = p.value[i];
            g[i] += v > 0.0f ? lambda : (v < 0.0f ? -lambda : 0.0f);
        }
    }
};

} // namespace frugal

#endif
