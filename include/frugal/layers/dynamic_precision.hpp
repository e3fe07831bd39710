#ifndef FRUGAL_LAYERS_DYNAMIC_PRECISION_HPP
#define FRUGAL_LAYERS_DYNAMIC_PRECISION_HPP

/// @file
/// FracTrain's dynamic fractional quantization (DFQ, SPEC §3.2), for real:
/// `dynamic_precision<Block, Set>` runs residual blocks in order (it
/// replaces `repeated<Block>` in a ResNet), and before each block a gate
/// picks, per sample, one precision of the compile-time set `Set` (a
/// `precision_set<precision<W, A, G>...>`: weight, activation and error
/// widths). The samples of a batch are sorted by their choice, the block
/// runs once on the sorted batch with its two convolutions told the groups
/// (`quantized_conv::set_groups`), so that each group is quantized with its
/// own range and runs its own integer products at its widths; the outputs
/// are put back in the original order. The meter counts each group at its
/// widths.
///
/// Gate (SPEC §3.2): `precision_gate<K>`, one shared LSTM over the blocks;
/// the gate of block i reads block i's input (the first one reads the stem's
/// output). The choice is the argmax of the softmax `pi` (deterministic, in
/// training and evaluation). The projection shortcuts run at full precision
/// (SPEC [impl]).
///
/// Cost (SPEC §3.2): a block of F multiply-accumulates per sample under
/// option k costs F c(k), c(k) = (a w + g w + a g) / 1024; the batch cost is
/// C = sum over samples and blocks, cp = 100 C / (n 3 sum_i F_i) (percent of
/// the FP32 cost of the three products), and the loss term is
/// s beta C / mean(F) with the sign rule of the options (DFQ's, or
/// FracTrain's with its `range`). Its gradient with respect to the one-hot
/// choice, s beta F_i c(k) / mean(F) for every k, is what the straight-
/// through estimator hands to pi.
///
/// **[decision]** The cross-entropy's share of the gate gradient,
/// dL/d onehot_k = <dL/dy, Block_k(x)>, needs the block's output under every
/// option; computing all K (what the paper's simulation does) would cost K
/// times the block and defeat the saving. frugal computes only the chosen
/// option and takes every alternative's output equal to the chosen one's; the
/// softmax then passes no gradient from the cross-entropy, and the gate
/// learns from the cost term, per input through its features.
///
/// Errors wider than 8 bits (the default set's (6, 12) option) run as two
/// 8-bit limbs through the same integer products (quantized_conv), so every
/// option of SPEC §3.3's set is computed at its own widths.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <string>
#include <vector>

#include "frugal/cost/meter.hpp"
#include "frugal/layers/block_stack.hpp"
#include "frugal/layers/gate.hpp"
#include "frugal/layers/layer.hpp"
#include "frugal/layers/quantized_conv.hpp"
#include "frugal/numeric/precision.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

/// SPEC §3.3's CIFAR options (b_a, b_g) = (3, 6), (4, 6), (4, 8), (6, 8),
/// (6, 12) with b_w = 4 (the 12-bit errors run as two 8-bit limbs).
using dfq_default_set = precision_set<precision<4, 3, 6>, precision<4, 4, 6>, precision<4, 4, 8>, precision<4, 6, 8>,
                                      precision<4, 6, 12>>;

/// Which sign rule the cost term uses (SPEC §3.2).
enum class dfq_sign_rule : std::uint8_t {
    dfq,       ///< -1 below target - relax, +1 at or above target + relax, +-0.1 in between
    fractrain, ///< -1 below target, +1 at or above target + range, 0 in between
};

struct dfq_options {
    float beta = 1e-3f;   ///< weight of the cost term
    float target = 3.0f;  ///< target cp, percent of the FP32 cost
    float relax = 0.0f;   ///< DFQ rule's band
    float range = 0.0f;   ///< FracTrain rule's band
    dfq_sign_rule rule = dfq_sign_rule::dfq;
    /// >= 0: every sample takes this option (tests, benchmarks); -1: the gate decides.
    int force = -1;
    /// Learning-rate multiplier of the gate's parameters.
    float gate_lr_scale = 1.0f;
    /// **[decision]** The cost term stops pushing (s = 0) in a direction where no choice of the
    /// batch can move: cheaper when every sample of every block already runs the cheapest option,
    /// dearer when every one runs the dearest. The gate learns from the cost term alone (see the
    /// file comment), so without this a target below the cheapest option's cp (FracTrain's 1.5%
    /// start under w = 4: the floor is 1.76%) drives the softmax into saturation, and when the
    /// target later rises the gate no longer follows it (measured: cp 1.76% for the whole run).
    /// With `force` on the cheapest or dearest option the hold applies too (cost_loss() is then 0
    /// whenever the sign points toward that option).
    bool hold_at_extremes = true;

    void validate(std::size_t options) const {
        auto bad = [](float v) { return !std::isfinite(v) || v < 0.0f; };
        if (bad(beta) || bad(target) || bad(relax) || bad(range) || bad(gate_lr_scale)) {
            throw error(detail::concat("frugal::dfq_options: beta (", beta, "), target (", target, "), relax (", relax,
                                       "), range (", range, ") and gate_lr_scale (", gate_lr_scale,
                                       ") must be finite and >= 0"));
        }
        if (force >= static_cast<int>(options) || force < -1) {
            throw error(detail::concat("frugal::dfq_options: force = ", force, " but the set has ", options,
                                       " options (-1: the gate decides)"));
        }
    }

    /// The sign s of the cost term for a batch cost percentage cp.
    [[nodiscard]] float sign(double cp) const noexcept {
        const double t = target;
        if (rule == dfq_sign_rule::fractrain) {
            return cp < t ? -1.0f : (cp >= t + range ? 1.0f : 0.0f);
        }
        if (cp < t - relax) {
            return -1.0f;
        }
        if (cp >= t + relax) {
            return 1.0f;
        }
        return cp >= t ? 0.1f : -0.1f;
    }
};

template <class Block, class Set = dfq_default_set>
class dynamic_precision
    : public detail::block_stack<Block, typename precision_gate<Set::size>::unit, precision_gate<Set::size>> {
    using base = detail::block_stack<Block, typename precision_gate<Set::size>::unit, precision_gate<Set::size>>;
    using base::blocks_;
    using base::gate_;
    using base::input_grad_;
    using base::name_;
    using base::units_;

public:
    static constexpr std::size_t options_count = Set::size;
    using gate_type = precision_gate<options_count>;
    using unit_type = typename gate_type::unit;
    static_assert(requires(Block& b, std::vector<precision_group> g) {
        b.conv1().set_groups(g);
        b.conv2().set_groups(g);
    }, "frugal::dynamic_precision<Block, Set>: the block's conv1() and conv2() must be quantized layers with "
       "set_groups (e.g. basic_block<quantized_conv_maker>)");

    /// The widths of option k.
    [[nodiscard]] static bit_widths widths(std::size_t k) {
        return visit<Set>(k, []<class P>(P) { return P::widths; });
    }
    /// c(k) = (a w + g w + a g) / 1024: the option's cost as a fraction of an FP32 MAC, per product.
    [[nodiscard]] static double option_cost(std::size_t k) {
        const bit_widths b = widths(k);
        return static_cast<double>(b.act * b.weight + b.error * b.weight + b.act * b.error) / 1024.0;
    }
    /// The option of lowest (highest) cost; the first of equals.
    [[nodiscard]] static std::size_t cheapest_option() {
        std::size_t best = 0;
        for (std::size_t k = 1; k < options_count; ++k) {
            best = option_cost(k) < option_cost(best) ? k : best;
        }
        return best;
    }
    [[nodiscard]] static std::size_t dearest_option() {
        std::size_t best = 0;
        for (std::size_t k = 1; k < options_count; ++k) {
            best = option_cost(k) > option_cost(best) ? k : best;
        }
        return best;
    }

    explicit dynamic_precision(std::vector<Block> blocks, dfq_options o = {}, gate_type gate = gate_type{})
        : base(std::move(gate)) {
        static_assert(check_set(), "frugal::dynamic_precision: every precision of the set needs the same weight "
                                   "width, activation and weight widths in [2, 8] and error widths in [2, 16] "
                                   "(what the integer kernels run)");
        if (blocks.empty()) {
            throw error("frugal::dynamic_precision: needs at least one block");
        }
        for (auto& b : blocks) {
            units_.push_back(gate_.make_unit(b.in_channels()));
            if (b.has_projection()) {
                if constexpr (requires { b.projection_conv().set_precision(bit_widths::full()); }) {
                    b.projection_conv().set_precision(bit_widths::full());
                }
            }
            blocks_.push_back(std::move(b));
        }
        const std::size_t nb = blocks_.size();
        choice_.resize(nb);
        order_.resize(nb);
        sorted_.assign(nb, false);
        xs_.resize(nb);
        out_.resize(nb);
        gs_.resize(nb);
        dx_.resize(nb);
        probs_.resize(nb);
        flops_.assign(nb, 0.0);
        eval_counts_.assign(nb, std::array<std::uint64_t, options_count>{});
        set_options(o);
        set_name("");
        set_input_grad(true);
    }

    [[nodiscard]] std::size_t size() const noexcept { return blocks_.size(); }
    [[nodiscard]] Block& operator[](std::size_t i) noexcept { return blocks_[i]; }
    [[nodiscard]] gate_type& gate() noexcept { return gate_; }
    [[nodiscard]] unit_type& unit(std::size_t i) noexcept { return units_[i]; }

    [[nodiscard]] const dfq_options& options() const noexcept { return opt_; }
    void set_options(const dfq_options& o) {
        o.validate(options_count);
        opt_ = o;
    }
    /// Changes the target cp (FracTrain raises it at each PFQ turning point).
    void set_target(float t) {
        dfq_options o = opt_;
        o.target = t;
        set_options(o);
    }

    /// The option each sample of the last forward took in block i.
    [[nodiscard]] const std::vector<std::uint8_t>& choices(std::size_t i) const noexcept { return choice_[i]; }
    /// pi of block i in the last forward [n x K].
    [[nodiscard]] const std::vector<float>& probabilities(std::size_t i) const noexcept { return probs_[i]; }
    /// cp of the last forward: percent of the FP32 cost of the three products of the gated blocks.
    [[nodiscard]] double cost_percent() const noexcept { return cp_; }
    /// The sign s of the cost term in the last training forward.
    [[nodiscard]] float cost_sign() const noexcept { return sign_; }
    /// The cost term s beta C / mean(F) of the last training forward.
    [[nodiscard]] double cost_loss() const noexcept { return cost_loss_; }
    /// F_i: multiply-accumulates per sample of block i's quantized convolutions (known after a forward).
    [[nodiscard]] const std::vector<double>& block_macs() const noexcept { return flops_; }

    /// Share of each option per block over the evaluation forwards since the last reset.
    [[nodiscard]] std::vector<std::array<double, options_count>> eval_option_fraction() const {
        std::vector<std::array<double, options_count>> f(blocks_.size());
        for (std::size_t i = 0; i < f.size(); ++i) {
            std::uint64_t total = 0;
            for (auto c : eval_counts_[i]) {
                total += c;
            }
            for (std::size_t k = 0; k < options_count; ++k) {
                f[i][k] = total ? static_cast<double>(eval_counts_[i][k]) / static_cast<double>(total) : 0.0;
            }
        }
        return f;
    }
    void reset_eval_report() {
        for (auto& c : eval_counts_) {
            c.fill(0);
        }
        eval_cost_sum_ = 0.0;
        eval_batches_ = 0;
    }
    /// Mean cp over the evaluation forwards since the last reset.
    [[nodiscard]] double eval_cost_percent() const noexcept {
        return eval_batches_ ? eval_cost_sum_ / static_cast<double>(eval_batches_) : 0.0;
    }

    using base::name;
    using base::output_shape;
    using base::reset_parameters;
    using base::set_input_grad;
    using base::set_name;

    const tensor4& forward(context& ctx, const tensor4& x) {
        const std::size_t n = x.shape()[0], nb = blocks_.size();
        gate_.begin(n);
        double cost = 0.0, full = 0.0;
        const tensor4* h = &x;
        for (std::size_t i = 0; i < nb; ++i) {
            Block& b = blocks_[i];
            const shape4 in = shape_of(*h);
            flops_[i] = block_macs(b, in);
            const std::vector<float>& p = gate_.step(ctx, units_[i].forward(ctx, *h));
            probs_[i] = p;
            // choices, and a stable counting sort of the samples by choice
            std::vector<std::uint8_t>& c = choice_[i];
            c.resize(n);
            std::array<std::size_t, options_count> count{};
            for (std::size_t s = 0; s < n; ++s) {
                std::size_t k = 0;
                if (opt_.force >= 0) {
                    k = static_cast<std::size_t>(opt_.force);
                } else {
                    const float* ps = p.data() + s * options_count;
                    k = static_cast<std::size_t>(std::max_element(ps, ps + options_count) - ps);
                }
                c[s] = static_cast<std::uint8_t>(k);
                ++count[k];
                cost += flops_[i] * option_cost(k);
            }
            full += 3.0 * flops_[i] * static_cast<double>(n);
            std::array<std::size_t, options_count> start{};
            for (std::size_t k = 1; k < options_count; ++k) {
                start[k] = start[k - 1] + count[k - 1];
            }
            std::vector<std::size_t>& order = order_[i]; // order[j] = original index of sorted position j
            order.resize(n);
            bool identity = true;
            for (std::size_t s = 0; s < n; ++s) {
                const std::size_t j = start[c[s]]++;
                order[j] = s;
                identity = identity && j == s;
            }
            sorted_[i] = !identity;
            std::vector<precision_group> groups;
            for (std::size_t k = 0; k < options_count; ++k) {
                groups.push_back({count[k], widths(k)});
            }
            b.conv1().set_groups(groups);
            b.conv2().set_groups(groups);
            if (!ctx.training()) {
                for (std::size_t k = 0; k < options_count; ++k) {
                    eval_counts_[i][k] += count[k];
                }
            }
            if (identity) {
                h = &b.forward(ctx, *h);
                continue;
            }
            gather(*h, order, xs_[i]);
            const tensor4& y = b.forward(ctx, xs_[i]);
            scatter(y, order, out_[i]);
            h = &out_[i];
        }
        cp_ = full > 0.0 ? 100.0 * cost / full : 0.0;
        if (ctx.training()) {
            sign_ = opt_.sign(cp_);
            if (opt_.hold_at_extremes && sign_ != 0.0f) {
                const std::size_t stuck = sign_ > 0.0f ? cheapest_option() : dearest_option();
                bool all = true;
                for (std::size_t i = 0; i < nb && all; ++i) {
                    all = std::all_of(choice_[i].begin(), choice_[i].end(),
                                      [&](std::uint8_t k) { return option_cost(k) == option_cost(stuck); });
                }
                if (all) {
                    sign_ = 0.0f;
                }
            }
            double mean_f = 0.0;
            for (double f : flops_) {
                mean_f += f / static_cast<double>(nb);
            }
            mean_f_ = mean_f;
            cost_loss_ = mean_f > 0.0 ? static_cast<double>(sign_ * opt_.beta) * cost / mean_f : 0.0;
        } else {
            eval_cost_sum_ += cp_;
            ++eval_batches_;
        }
        return *h;
    }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        gate_.begin_backward();
        const tensor4* g = &dy;
        std::vector<float> dp;
        for (std::size_t i = blocks_.size(); i-- > 0;) {
            tensor4* dx = nullptr; // block i's input gradient, into which its gate unit adds
            if (sorted_[i]) {
                gather(*g, order_[i], gs_[i]);
                const tensor4& d = blocks_[i].backward(ctx, gs_[i]);
                if (i > 0 || input_grad_) {
                    scatter(d, order_[i], dx_[i]);
                    dx = &dx_[i];
                }
            } else {
                const tensor4& d = blocks_[i].backward(ctx, *g);
                if (i > 0 || input_grad_) {
                    if constexpr (requires { blocks_[i].input_grad_buffer(); }) {
                        dx = &blocks_[i].input_grad_buffer(); // the block's own buffer (== d): no copy
                    }
                    if (dx != &d) {
                        dx_[i] = d;
                        dx = &dx_[i];
                    }
                }
            }
            // the cost term's gradient w.r.t. the one-hot, handed to pi (straight-through)
            const std::size_t n = choice_[i].size();
            dp.assign(n * options_count, 0.0f);
            if (mean_f_ > 0.0) {
                for (std::size_t k = 0; k < options_count; ++k) {
                    const auto v = static_cast<float>(static_cast<double>(sign_ * opt_.beta) * flops_[i] *
                                                      option_cost(k) / mean_f_);
                    for (std::size_t s = 0; s < n; ++s) {
                        dp[s * options_count + k] = v;
                    }
                }
            }
            const std::vector<float>& dfeat = gate_.step_backward(ctx, dp.data());
            units_[i].backward(ctx, dfeat.data(), dx);
            if (i == 0) {
                return dx != nullptr ? *dx : empty_;
            }
            g = dx;
        }
        return empty_; // not reached
    }

    void collect_parameters(std::vector<parameter>& ps) {
        for (auto& b : blocks_) {
            b.collect_parameters(ps);
        }
        const std::size_t first_gate = ps.size();
        for (auto& u : units_) {
            u.collect_parameters(ps);
        }
        gate_.collect_parameters(ps);
        for (std::size_t i = first_gate; i < ps.size(); ++i) {
            ps[i].lr_scale = opt_.gate_lr_scale;
        }
    }

    void save(archive_writer& a) const {
        a.tag("dynamic_precision/1");
        a.u64(blocks_.size());
        a.u64(options_count);
        a.f64(static_cast<double>(opt_.target));
        for (const auto& b : blocks_) {
            b.save(a);
        }
        for (const auto& u : units_) {
            u.save(a);
        }
        gate_.save(a);
    }
    void load(archive_reader& a) {
        a.expect("dynamic_precision/1");
        const std::size_t at = a.offset();
        const std::uint64_t n = a.u64(), k = a.u64();
        if (n != blocks_.size() || k != options_count) {
            a.fail(at, detail::concat(name_, ": the checkpoint holds ", n, " blocks with ", k,
                                      " precision options, the model has ", blocks_.size(), " with ", options_count));
        }
        const double target = a.f64();
        for (auto& b : blocks_) {
            b.load(a);
        }
        for (auto& u : units_) {
            u.load(a);
        }
        gate_.load(a);
        set_target(static_cast<float>(target));
    }

    /// Visits every leaf layer of the blocks (the gate network is not a leaf layer).
    template <class F>
    void for_each_layer(F&& f) {
        for (auto& b : blocks_) {
            b.for_each_layer(f);
        }
    }

private:
    static constexpr bool check_set() {
        bool ok = true;
        const int w = Set::template at<0>::weights;
        for_each_constexpr([&]<class P>(P) {
            ok = ok && P::weights == w && P::weights >= 2 && P::weights <= 8 && P::activations >= 2 &&
                 P::activations <= 8 && P::gradients >= 2 && P::gradients <= max_error_bits;
        });
        return ok;
    }
    template <class F>
    static constexpr void for_each_constexpr(F&& f) {
        [&]<std::size_t... I>(std::index_sequence<I...>) {
            (f(typename Set::template at<I>{}), ...);
        }(std::make_index_sequence<options_count>{});
    }

    /// Multiply-accumulates per sample of the block's two convolutions for an input of shape s.
    static double block_macs(const Block& b, const shape4& s) {
        const shape4 one{1, s.c, s.h, s.w};
        const shape4 y1 = b.conv1().output_shape(one);
        const double k1 = static_cast<double>(b.conv1().in_channels() * b.conv1().kernel() * b.conv1().kernel());
        const double k2 = static_cast<double>(b.conv2().in_channels() * b.conv2().kernel() * b.conv2().kernel());
        const shape4 y2 = b.conv2().output_shape(y1);
        return static_cast<double>(y1.size()) * k1 + static_cast<double>(y2.size()) * k2;
    }

    /// dst[j] = src[order[j]] (sample rows).
    static void gather(const tensor4& src, const std::vector<std::size_t>& order, tensor4& dst) {
        const shape4 s = shape_of(src);
        ensure_shape(dst, s);
        const std::size_t per = s.per_sample();
        parallel_for(s.n, [&](std::size_t j) {
            std::memcpy(dst.data() + j * per, src.data() + order[j] * per, per * sizeof(float));
        });
    }
    /// dst[order[j]] = src[j].
    static void scatter(const tensor4& src, const std::vector<std::size_t>& order, tensor4& dst) {
        const shape4 s = shape_of(src);
        ensure_shape(dst, s);
        const std::size_t per = s.per_sample();
        parallel_for(s.n, [&](std::size_t j) {
            std::memcpy(dst.data() + order[j] * per, src.data() + j * per, per * sizeof(float));
        });
    }

    dfq_options opt_;
    std::vector<std::vector<std::uint8_t>> choice_;
    std::vector<std::vector<std::size_t>> order_;
    std::vector<bool> sorted_;
    std::vector<tensor4> xs_, out_, gs_, dx_;
    std::vector<std::vector<float>> probs_;
    std::vector<double> flops_;
    std::vector<std::array<std::uint64_t, options_count>> eval_counts_;
    double cp_ = 0.0, cost_loss_ = 0.0, mean_f_ = 0.0, eval_cost_sum_ = 0.0;
    std::uint64_t eval_batches_ = 0;
    float sign_ = 0.0f;
    tensor4 empty_;
};

} // namespace frugal

#endif
