#ifndef FRUGAL_OPTIM_SGD_HPP
#define FRUGAL_OPTIM_SGD_HPP

/// @file
/// frugal::optimizer<GradientRule, UpdateRule>: the optimizer is two
/// policies. The gradient rule turns the gradients back-propagation left in
/// the parameters into the direction to follow (the exact gradient, or a
/// predicted sign); the update rule applies it (SGD with momentum and weight
/// decay, signSGD). Both are chosen by type: no runtime dispatch.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <span>
#include <string>
#include <vector>

#include "frugal/cost/meter.hpp"
#include "frugal/error.hpp"
#include "frugal/layers/layer.hpp"
#include "frugal/tensor/parallel.hpp"
#include "frugal/tensor/serialize.hpp"

namespace frugal {

/// The gradient as back-propagation computed it.
struct exact_gradient {
    static constexpr const char* name = "exact";
    /// Leaves g unchanged.
    void apply(const parameter&, std::span<float>) const noexcept {}
};

/// SGD with momentum (PyTorch's form: v = mu v + g + wd w; w -= lr v, or with
/// Nesterov w -= lr (g + wd w + mu v)).
struct sgd {
    static constexpr const char* name = "sgd";
    float momentum = 0.9f;
    float weight_decay = 1e-4f;
    bool nesterov = false;

    /// Number of state floats per parameter value.
    static constexpr std::size_t state_size = 1;

    void update(std::span<float> w, std::span<const float> g, std::span<float> v, float lr, bool decay) const noexcept {
        const float wd = decay ? weight_decay : 0.0f;
        const float mu = momentum;
        const std::size_t n = w.size();
        for (std::size_t i = 0; i < n; ++i) {
            const float d = g[i] + wd * w[i];
            v[i] = mu * v[i] + d;
            w[i] -= lr * (nesterov ? d + mu * v[i] : v[i]);
        }
    }
    /// Multiply-accumulates per value, for the cost meter.
    static constexpr std::uint64_t macs_per_value = 3;
};

/// A gradient rule and an update rule over a model's parameters.
template <class GradientRule = exact_gradient, class UpdateRule = sgd>
class optimizer {
public:
    optimizer(std::vector<parameter> params, UpdateRule update = {}, GradientRule gradient = {})
        : params_(std::move(params)), update_(update), gradient_(gradient), slot_("optimizer") {
        std::size_t total = 0;
        for (const auto& p : params_) {
            if (p.value.size() != p.grad.size()) {
                throw error(detail::concat("frugal::optimizer: parameter ", p.name, " has ", p.value.size(),
                                           " values but ", p.grad.size(), " gradients"));
            }
            total += p.value.size();
        }
        state_.assign(total * UpdateRule::state_size, 0.0f);
    }

    [[nodiscard]] const std::vector<parameter>& parameters() const noexcept { return params_; }
    [[nodiscard]] UpdateRule& update_rule() noexcept { return update_; }
    [[nodiscard]] GradientRule& gradient_rule() noexcept { return gradient_; }

    /// One optimizer step with learning rate lr.
    void step(context& ctx, float lr) {
        cost_meter* m = slot_.bind(ctx.meter);
        scoped_timer timer(m, slot_, phase::update);
        std::size_t offset = 0;
        std::uint64_t values = 0;
        for (auto& p : params_) {
            const std::size_t n = p.value.size();
            gradient_.apply(p, p.grad);
            update_.update(p.value, p.grad,
                           std::span<float>(state_.data() + offset * UpdateRule::state_size, n * UpdateRule::state_size),
                           lr * p.lr_scale, p.decay);
            offset += n;
            values += n;
        }
        if (m != nullptr) {
            m->mac(slot_.id(), phase::update, fp32, fp32, values * UpdateRule::macs_per_value);
            m->bytes(slot_.id(), phase::update, 4 * values * (2 + UpdateRule::state_size), 4 * values * (1 + UpdateRule::state_size));
        }
    }

    /// Clears the momentum (or other) state.
    void reset_state() { std::fill(state_.begin(), state_.end(), 0.0f); }

    void save(archive_writer& a) const {
        a.tag("optimizer/1");
        a.str(std::string(GradientRule::name) + "+" + UpdateRule::name);
        a.floats(state_);
    }
    void load(archive_reader& a) {
        a.expect("optimizer/1");
        const std::size_t at = a.offset();
        const std::string kind = a.str();
        const std::string mine = std::string(GradientRule::name) + "+" + UpdateRule::name;
        if (kind != mine) {
            a.fail(at, "the checkpoint's optimizer is " + kind + ", this run's is " + mine);
        }
        a.floats(state_, "optimizer state");
    }

private:
    std::vector<parameter> params_;
    UpdateRule update_;
    GradientRule gradient_;
    std::vector<float> state_;
    meter_slot slot_;
};

/// The parameters of a model, in a fixed order.
template <class Model>
[[nodiscard]] std::vector<parameter> parameters_of(Model& model) {
    std::vector<parameter> ps;
    model.collect_parameters(ps);
    return ps;
}

} // namespace frugal

#endif
