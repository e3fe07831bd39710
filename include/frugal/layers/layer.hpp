#ifndef FRUGAL_LAYERS_LAYER_HPP
#define FRUGAL_LAYERS_LAYER_HPP

/// @file
/// What every layer shares: the step context, parameters, the `layer`
/// concept, and a small base with a layer's name and meter handle.
///
/// A layer maps an NCHW float tensor to an NCHW float tensor:
/// - `const tensor4& forward(context&, const tensor4& x)` computes the output
///   into a buffer the layer owns (no allocation once shapes are stable) and
///   remembers what backward needs (x must stay alive until backward);
/// - `const tensor4& backward(context&, const tensor4& dy)` writes the
///   parameter gradients (overwriting them) and returns dx, unless the model
///   told the layer that no one needs dx (`set_input_grad(false)`: the first
///   layer of a network skips that work entirely);
/// - `collect_parameters(std::vector<parameter>&)` appends views of its
///   trainable tensors and their gradients;
/// - `output_shape(input_shape)`, `save(archive_writer&)`,
///   `load(archive_reader&)`, `set_name(std::string)`,
///   `reset_parameters(rng&)` (fresh initial values, He initialisation for
///   weights).

#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <vector>

#include "frugal/cost/meter.hpp"
#include "frugal/error.hpp"
#include "frugal/numeric/random.hpp"
#include "frugal/tensor/parallel.hpp"
#include "frugal/tensor/serialize.hpp"
#include "frugal/tensor/tensor.hpp"

namespace frugal {

/// Training or evaluation: decides batch-norm statistics, gate sampling, dropout.
enum class run_mode : std::uint8_t { train, eval };

/// What a training step carries through the layers. Passed by reference,
/// never global.
struct context {
    run_mode mode = run_mode::train;
    /// Randomness of this step (gates, stochastic rounding); the trainer
    /// seeds it per step so that a resumed run draws the same numbers.
    rng random{};
    /// Where kernels report what they executed; null records nothing.
    cost_meter* meter = nullptr;
    /// Index of the current optimizer step.
    std::uint64_t step = 0;

    [[nodiscard]] bool training() const noexcept { return mode == run_mode::train; }
};

/// What a parameter is, for optimizers and pruning.
enum class param_role : std::uint8_t { weight, bias, bn_scale, bn_shift, gate, other };

/// A view of one trainable tensor and its gradient.
struct parameter {
    std::string name;       ///< "<layer path>.weight"
    std::span<float> value;
    std::span<float> grad;
    param_role role = param_role::weight;
    bool decay = true;      ///< whether weight decay applies
    float lr_scale = 1.0f;  ///< this parameter's learning rate is lr_scale times the optimizer's (parameter groups)
};

/// The interface every layer models.
template <class L>
concept layer = requires(L& l, const L& cl, context& ctx, const tensor4& t, std::vector<parameter>& ps,
                         archive_writer& w, archive_reader& r, shape4 s) {
    { l.forward(ctx, t) } -> std::same_as<const tensor4&>;
    { l.backward(ctx, t) } -> std::same_as<const tensor4&>;
    { cl.output_shape(s) } -> std::same_as<shape4>;
    l.collect_parameters(ps);
    cl.save(w);
    l.load(r);
    l.set_name(std::string{});
    l.set_input_grad(true);
    l.reset_parameters(ctx.random);
};

/// Name, meter handle and the input-gradient switch: the state every layer has.
class layer_base {
public:
    /// Sets the layer's full name, its dotted path in the model.
    void set_name(std::string name) { slot_.rename(std::move(name)); }
    [[nodiscard]] const std::string& name() const noexcept { return slot_.name(); }
    /// What the layer is ("conv2d", "batchnorm", ...).
    [[nodiscard]] const std::string& kind() const noexcept { return kind_; }
    /// Whether backward must compute dx (false for the first layer of a network).
    void set_input_grad(bool on) noexcept { input_grad_ = on; }
    [[nodiscard]] bool input_grad() const noexcept { return input_grad_; }

protected:
    explicit layer_base(std::string kind) : slot_(kind), kind_(std::move(kind)) {}

    /// The meter if recording, bound to this layer.
    [[nodiscard]] cost_meter* meter(context& ctx) { return slot_.bind(ctx.meter); }
    [[nodiscard]] cost_meter::layer_id id() const noexcept { return slot_.id(); }
    [[nodiscard]] meter_slot& slot() noexcept { return slot_; }

    void add_parameter(std::vector<parameter>& ps, const char* suffix, std::span<float> value, std::span<float> grad,
                       param_role role, bool decay) const {
        ps.push_back(parameter{name() + "." + suffix, value, grad, role, decay});
    }

private:
    meter_slot slot_;
    std::string kind_;
    bool input_grad_ = true;
};

/// "prefix.local", or "local" at the top of a model.
[[nodiscard]] inline std::string child_name(const std::string& prefix, const std::string& local) {
    return prefix.empty() ? local : prefix + "." + local;
}

/// Throws shape_error naming `who` unless every row is a sample of a batch of n (forward_rows).
inline void check_rows(const std::string& who, std::span<const std::size_t> rows, std::size_t n) {
    for (std::size_t i = 0; i < rows.size(); ++i) {
        if (rows[i] >= n) {
            throw shape_error(detail::concat(who, ".forward_rows: row ", i, " is sample ", rows[i], " of a batch of ", n));
        }
    }
}

/// Resizes t to s when it differs (keeps the buffer otherwise).
inline void ensure_shape(tensor4& t, const shape4& s) {
    if (shape_of(t) != s) {
        t.resize({s.n, s.c, s.h, s.w});
    }
}

/// out = the samples `rows` of x, in that order (rows checked by the caller: check_rows).
inline void gather_rows(const tensor4& x, std::span<const std::size_t> rows, tensor4& out) {
    const shape4 xs = shape_of(x);
    ensure_shape(out, {rows.size(), xs.c, xs.h, xs.w});
    const std::size_t per = xs.per_sample();
    parallel_for(rows.size(), [&](std::size_t j) {
        std::memcpy(out.data() + j * per, x.data() + rows[j] * per, per * sizeof(float));
    });
}

template <std::size_t N>
[[nodiscard]] std::span<float> span_of(tensor<float, N>& t) noexcept {
    return {t.data(), t.size()};
}

/// He (Kaiming) normal initialisation: N(0, 2 / fan_in).
template <std::size_t N>
void he_normal(tensor<float, N>& w, std::size_t fan_in, rng& g) {
    const double sd = std::sqrt(2.0 / static_cast<double>(fan_in));
    for (auto& v : w) {
        // Box-Muller from two uniforms in (0, 1]
        const double u1 = 1.0 - g.uniform_double();
        const double u2 = g.uniform_double();
        v = static_cast<float>(sd * std::sqrt(-2.0 * std::log(u1)) * std::cos(6.283185307179586 * u2));
    }
}

namespace detail {
/// A plane hook that does nothing: what a backward that hands each plane of its input gradient to
/// a hook (quantized_conv::backward) takes without one.
struct no_plane_hook {
    void operator()(std::size_t, const float*) const noexcept {}
};
} // namespace detail

} // namespace frugal

#endif
