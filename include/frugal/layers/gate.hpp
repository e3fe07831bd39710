#ifndef FRUGAL_LAYERS_GATE_HPP
#define FRUGAL_LAYERS_GATE_HPP

/// @file
/// frugal::recurrent_gate: the gate network of E2-Train's selective layer
/// update (SPEC §1.2(b), SkipNet-style, one LSTM shared by all blocks), and
/// frugal::precision_gate<K>, the same structure with K softmax outputs that
/// FracTrain's dynamic fractional quantization uses (SPEC §3.2: pool, 1x1
/// C -> 32, ReLU, 1x1 32 -> 16, LSTM 16, linear 16 -> K, softmax). Both are
/// `basic_recurrent_gate<Features, Hidden, Outputs, Mid>`.
///
/// For the gate of block i, the block's input h (the output of block i - 1)
/// is average-pooled over its pixels and mapped by a per-block 1x1
/// convolution C -> 10 (`recurrent_gate::unit`); the 10 features are one time
/// step of a shared LSTM (hidden size 10) whose state is zeroed at the start
/// of every forward pass (`begin`); a shared linear 10 -> 1 and a sigmoid give
/// the execution probability p of each sample. With Mid > 0 the unit is two
/// 1x1 convolutions with a ReLU between (C -> Mid -> Features); with
/// Outputs > 1 the head is a linear Hidden -> Outputs and a softmax, and a
/// step returns n x Outputs probabilities.
///
/// Backward runs the steps in reverse order (back-propagation through time):
/// `begin_backward`, then `step_backward(dp)` once per step, last step
/// first; each returns the gradient of that step's input features, which the
/// caller passes to the unit that produced them (`unit::backward`, which
/// adds the gradient of the pooled input to a tensor). Parameter gradients
/// are overwritten by the first backward step and accumulated over the
/// steps, so after a whole backward they are the gradient of the pass.
///
/// Initialisation follows PyTorch's defaults (uniform in +-1/sqrt(fan in))
/// except the bias of the final linear layer, `initial_bias` (2 by default,
/// p ~ 0.88): **[decision]** a new network executes most blocks and the
/// regularizer brings the rate down to its target.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include "frugal/layers/layer.hpp"
#include "frugal/numeric/simd.hpp"
#include "frugal/tensor/kernels/elementwise.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

template <std::size_t Features, std::size_t Hidden, std::size_t Outputs = 1, std::size_t Mid = 0>
class basic_recurrent_gate {
public:
    static_assert(Features > 0 && Hidden > 0 && Outputs > 0, "frugal::basic_recurrent_gate: sizes must be positive");
    static constexpr std::size_t features = Features; ///< unit outputs = LSTM input size
    static constexpr std::size_t hidden = Hidden;     ///< LSTM hidden size
    static constexpr std::size_t outputs = Outputs;   ///< 1: sigmoid probability; more: softmax over them
    static constexpr std::size_t mid = Mid;           ///< width of the unit's hidden layer (0: none)
    static constexpr std::size_t gates = 4 * hidden;

    /// The per-block part: global average pool, then a 1x1 convolution C -> Features with bias
    /// (with Mid > 0: C -> Mid, ReLU, Mid -> Features).
    class unit {
    public:
        static constexpr std::size_t in_width(std::size_t c) noexcept { return Mid > 0 ? Mid : c; }
        explicit unit(std::size_t channels = 1)
            : c_(channels), w_(features * in_width(channels), 0.0f), b_(features, 0.0f), dw_(w_.size(), 0.0f),
              db_(features, 0.0f), w1_(Mid * channels, 0.0f), b1_(Mid, 0.0f), dw1_(w1_.size(), 0.0f),
              db1_(Mid, 0.0f) {}

        [[nodiscard]] std::size_t channels() const noexcept { return c_; }
        [[nodiscard]] std::vector<float>& weight() noexcept { return w_; }
        [[nodiscard]] std::vector<float>& bias() noexcept { return b_; }

        void set_name(const std::string& name) {
            name_ = name;
            slot_.rename(name);
        }
        void reset_parameters(rng& g) {
            if constexpr (Mid > 0) {
                uniform_fill(w1_, 1.0f / std::sqrt(static_cast<float>(c_)), g);
                uniform_fill(b1_, 1.0f / std::sqrt(static_cast<float>(c_)), g);
            }
            const auto k = static_cast<float>(in_width(c_));
            uniform_fill(w_, 1.0f / std::sqrt(k), g);
            uniform_fill(b_, 1.0f / std::sqrt(k), g);
        }

        /// Features [n x 10] of a batch h [n x C x H x W]. `plane_sums`: when the caller has the
        /// sums of h's planes (index n * C + c, each kernels::lane_sum of the plane, as the pass
        /// that wrote h can give them), the pool uses them instead of reading h again.
        const std::vector<float>& forward(context& ctx, const tensor4& h,
                                          const std::vector<float>* plane_sums = nullptr) {
            const shape4 s = shape_of(h);
            if (s.c != c_) {
                throw shape_error(detail::concat(name_, ": gate unit for ", c_, " channels got an input of shape ",
                                                 to_string(s)));
            }
            if (plane_sums != nullptr && plane_sums->size() != s.n * c_) {
                throw shape_error(detail::concat(name_, ": ", plane_sums->size(), " plane sums for an input of shape ",
                                                 to_string(s)));
            }
            shape_ = s;
            const std::size_t hw = s.h * s.w, iw = in_width(c_);
            pooled_.assign(s.n * c_, 0.0f);
            mid_.assign(s.n * Mid, 0.0f);
            out_.assign(s.n * features, 0.0f);
            const float inv = hw ? 1.0f / static_cast<float>(hw) : 0.0f;
            parallel_for(s.n, [&](std::size_t n) {
                for (std::size_t c = 0; c < c_; ++c) {
                    const std::size_t i = n * c_ + c;
                    const float sum = plane_sums != nullptr ? (*plane_sums)[i] : kernels::lane_sum(h.data() + i * hw, hw);
                    pooled_[i] = sum * inv;
                }
                const float* in = pooled_.data() + n * c_;
                if constexpr (Mid > 0) {
                    for (std::size_t j = 0; j < Mid; ++j) {
                        float acc = b1_[j];
                        for (std::size_t c = 0; c < c_; ++c) {
                            acc += w1_[j * c_ + c] * in[c];
                        }
                        mid_[n * Mid + j] = std::max(acc, 0.0f);
                    }
                    in = mid_.data() + n * Mid;
                }
                for (std::size_t f = 0; f < features; ++f) {
                    float acc = b_[f];
                    for (std::size_t c = 0; c < iw; ++c) {
                        acc += w_[f * iw + c] * in[c];
                    }
                    out_[n * features + f] = acc;
                }
            });
            if (cost_meter* m = slot_.bind(ctx.meter)) {
                m->unary(slot_.id(), phase::forward, op_kind::add, fp32, s.size() + s.n * (features + Mid));
                m->mac(slot_.id(), phase::forward, fp32, fp32, s.n * (c_ + Mid * c_ + features * iw));
            }
            return out_;
        }

        /// Gradients for d = dL/d(features) [n x 10]: overwrites the unit's
        /// parameter gradients and, when dh is not null, adds dL/dh to *dh
        /// (same shape as the last forward's input).
        void backward(context& ctx, const float* d, tensor4* dh) {
            const std::vector<float>& v = backward_planes(ctx, d, dh != nullptr);
            if (dh != nullptr) {
                const std::size_t hw = shape_.h * shape_.w;
                parallel_for(shape_.n, [&](std::size_t n) {
                    for (std::size_t c = 0; c < c_; ++c) {
                        float* p = dh->data() + (n * c_ + c) * hw;
                        kernels::add_scalar(p, nullptr, v[n * c_ + c], p, hw);
                    }
                });
            }
        }

        /// backward without touching dL/dh: returns what it adds to every pixel of plane
        /// n * C + c of dL/dh (the pool's gradient over the plane's pixels), for a caller that
        /// adds it in a pass of its own. `input_grad`: that caller will add it (counted here).
        const std::vector<float>& backward_planes(context& ctx, const float* d, bool input_grad = true) {
            for (auto* g : {&dw_, &db_, &dw1_, &db1_}) {
                std::fill(g->begin(), g->end(), 0.0f);
            }
            const std::size_t hw = shape_.h * shape_.w, iw = in_width(c_);
            const float inv = hw ? 1.0f / static_cast<float>(hw) : 0.0f;
            dpooled_.assign(shape_.n * c_, 0.0f);
            std::vector<float> dmid(Mid);
            for (std::size_t n = 0; n < shape_.n; ++n) {
                const float* dn = d + n * features;
                float* dp = dpooled_.data() + n * c_;
                const float* in = Mid > 0 ? mid_.data() + n * Mid : pooled_.data() + n * c_;
                float* din = Mid > 0 ? dmid.data() : dp;
                std::fill(dmid.begin(), dmid.end(), 0.0f);
                for (std::size_t f = 0; f < features; ++f) {
                    db_[f] += dn[f];
                    for (std::size_t c = 0; c < iw; ++c) {
                        dw_[f * iw + c] += dn[f] * in[c];
                        din[c] += dn[f] * w_[f * iw + c];
                    }
                }
                if constexpr (Mid > 0) {
                    for (std::size_t j = 0; j < Mid; ++j) {
                        const float dj = in[j] > 0.0f ? dmid[j] : 0.0f; // ReLU
                        db1_[j] += dj;
                        for (std::size_t c = 0; c < c_; ++c) {
                            dw1_[j * c_ + c] += dj * pooled_[n * c_ + c];
                            dp[c] += dj * w1_[j * c_ + c];
                        }
                    }
                }
            }
            for (float& v : dpooled_) {
                v *= inv;
            }
            if (cost_meter* m = slot_.bind(ctx.meter)) {
                m->mac(slot_.id(), phase::weight_gradient, fp32, fp32,
                       shape_.n * (features * (iw + 1) + Mid * (c_ + 1)));
                if (input_grad) {
                    m->mac(slot_.id(), phase::backward_input, fp32, fp32, shape_.n * (features * iw + Mid * c_));
                    m->unary(slot_.id(), phase::backward_input, op_kind::add, fp32, shape_.size());
                }
            }
            return dpooled_;
        }

        void collect_parameters(std::vector<parameter>& ps) {
            auto add = [&](const char* s, std::vector<float>& v, std::vector<float>& g) {
                ps.push_back(parameter{name_ + s, std::span<float>(v), std::span<float>(g), param_role::gate, true});
            };
            if constexpr (Mid > 0) {
                add(".fc1.weight", w1_, dw1_);
                add(".fc1.bias", b1_, db1_);
                add(".fc2.weight", w_, dw_);
                add(".fc2.bias", b_, db_);
            } else {
                add(".weight", w_, dw_);
                add(".bias", b_, db_);
            }
        }
        void save(archive_writer& a) const {
            a.tag(Mid > 0 ? "gate_unit/2" : "gate_unit/1");
            a.u64(c_);
            if constexpr (Mid > 0) {
                a.floats(w1_);
                a.floats(b1_);
            }
            a.floats(w_);
            a.floats(b_);
        }
        void load(archive_reader& a) {
            a.expect(Mid > 0 ? "gate_unit/2" : "gate_unit/1");
            const std::size_t at = a.offset();
            const std::uint64_t c = a.u64();
            if (c != c_) {
                a.fail(at, detail::concat(name_, ": the checkpoint holds a gate unit for ", c,
                                          " channels, the model's has ", c_));
            }
            if constexpr (Mid > 0) {
                a.floats(w1_, name_ + ".fc1.weight");
                a.floats(b1_, name_ + ".fc1.bias");
            }
            a.floats(w_, name_ + ".weight");
            a.floats(b_, name_ + ".bias");
        }

    private:

        std::size_t c_;
        std::vector<float> w_, b_, dw_, db_, w1_, b1_, dw1_, db1_;
        std::vector<float> pooled_, mid_, out_, dpooled_;
        shape4 shape_{};
        std::string name_ = "gate_unit";
        meter_slot slot_{"gate_unit"};
    };

    /// `initial_bias`: the head's bias at initialisation, for every output.
    explicit basic_recurrent_gate(float initial_bias = Outputs == 1 ? 2.0f : 0.0f)
        : initial_bias_(initial_bias), wx_(gates * features, 0.0f), wh_(gates * hidden, 0.0f), b_(gates, 0.0f),
          wl_(Outputs * hidden, 0.0f), bl_(Outputs, initial_bias), dwx_(wx_.size(), 0.0f), dwh_(wh_.size(), 0.0f),
          db_(gates, 0.0f), dwl_(wl_.size(), 0.0f), dbl_(Outputs, 0.0f) {}

    [[nodiscard]] unit make_unit(std::size_t channels) const { return unit(channels); }

    void set_name(const std::string& name) {
        name_ = name;
        slot_.rename(name);
    }
    void reset_parameters(rng& g) {
        const float k = 1.0f / std::sqrt(static_cast<float>(hidden));
        uniform_fill(wx_, k, g);
        uniform_fill(wh_, k, g);
        uniform_fill(b_, k, g);
        uniform_fill(wl_, k, g);
        std::fill(bl_.begin(), bl_.end(), initial_bias_);
    }

    /// Starts a forward pass over a batch of n samples: zero state, no steps.
    void begin(std::size_t n) {
        n_ = n;
        steps_ = 0;
        back_ = 0;
    }
    [[nodiscard]] std::size_t steps() const noexcept { return steps_; }

    /// One time step on features x [n x features]; returns p [n x outputs]
    /// (one sigmoid probability per sample, or a softmax row per sample).
    const std::vector<float>& step(context& ctx, const std::vector<float>& x) {
        if (x.size() != n_ * features) {
            throw shape_error(detail::concat(name_, ": gate step expects ", n_, " x ", features, " features, got ",
                                             x.size(), " values"));
        }
        if (tape_.size() <= steps_) {
            tape_.resize(steps_ + 1);
        }
        record& r = tape_[steps_];
        const std::vector<float>* hp = steps_ ? &tape_[steps_ - 1].h : nullptr;
        const std::vector<float>* cp = steps_ ? &tape_[steps_ - 1].c : nullptr;
        r.x = x;
        r.act.assign(n_ * gates, 0.0f);
        r.c.assign(n_ * hidden, 0.0f);
        r.h.assign(n_ * hidden, 0.0f);
        r.p.assign(n_ * Outputs, 0.0f);
        for (std::size_t n = 0; n < n_; ++n) {
            float* a = r.act.data() + n * gates;
            for (std::size_t j = 0; j < gates; ++j) {
                float z = b_[j];
                for (std::size_t f = 0; f < features; ++f) {
                    z += wx_[j * features + f] * x[n * features + f];
                }
                if (hp != nullptr) {
                    for (std::size_t q = 0; q < hidden; ++q) {
                        z += wh_[j * hidden + q] * (*hp)[n * hidden + q];
                    }
                }
                a[j] = (j / hidden == 2) ? std::tanh(z) : sigmoid(z); // order i, f, g, o
            }
            for (std::size_t q = 0; q < hidden; ++q) {
                const float cprev = cp != nullptr ? (*cp)[n * hidden + q] : 0.0f;
                const float c = a[hidden + q] * cprev + a[q] * a[2 * hidden + q];
                r.c[n * hidden + q] = c;
                r.h[n * hidden + q] = a[3 * hidden + q] * std::tanh(c);
            }
            float* p = r.p.data() + n * Outputs;
            for (std::size_t k = 0; k < Outputs; ++k) {
                float z = bl_[k];
                for (std::size_t q = 0; q < hidden; ++q) {
                    z += wl_[k * hidden + q] * r.h[n * hidden + q];
                }
                p[k] = z;
            }
            if constexpr (Outputs == 1) {
                p[0] = sigmoid(p[0]);
            } else { // softmax, shifted by the largest logit
                const float zmax = *std::max_element(p, p + Outputs);
                float sum = 0.0f;
                for (std::size_t k = 0; k < Outputs; ++k) {
                    p[k] = std::exp(p[k] - zmax);
                    sum += p[k];
                }
                for (std::size_t k = 0; k < Outputs; ++k) {
                    p[k] /= sum;
                }
            }
        }
        ++steps_;
        if (cost_meter* m = slot_.bind(ctx.meter)) {
            m->mac(slot_.id(), phase::forward, fp32, fp32,
                   n_ * (gates * (features + hidden) + 2 * hidden + Outputs * hidden));
        }
        return r.p;
    }

    /// Starts back-propagation through the steps of the last forward.
    void begin_backward() {
        back_ = steps_;
        dh_next_.assign(n_ * hidden, 0.0f);
        dc_next_.assign(n_ * hidden, 0.0f);
        for (auto* g : {&dwx_, &dwh_, &db_, &dwl_, &dbl_}) {
            std::fill(g->begin(), g->end(), 0.0f);
        }
    }

    /// Backward of the latest step not yet back-propagated, for dp = dL/dp
    /// [n x outputs]; returns dL/dx of that step [n x features].
    const std::vector<float>& step_backward(context& ctx, const float* dp) {
        if (back_ == 0) {
            throw error(detail::concat(name_, ": step_backward called more often than step"));
        }
        const record& r = tape_[--back_];
        const std::vector<float>* hp = back_ ? &tape_[back_ - 1].h : nullptr;
        const std::vector<float>* cp = back_ ? &tape_[back_ - 1].c : nullptr;
        dx_.assign(n_ * features, 0.0f);
        std::vector<float>& da = scratch_;
        da.assign(gates, 0.0f);
        float dz[Outputs];
        for (std::size_t n = 0; n < n_; ++n) {
            const float* a = r.act.data() + n * gates;
            const float* pv = r.p.data() + n * Outputs;
            const float* dpn = dp + n * Outputs;
            if constexpr (Outputs == 1) {
                dz[0] = dpn[0] * pv[0] * (1.0f - pv[0]);
            } else { // softmax: dz_k = p_k (dp_k - sum_j p_j dp_j)
                float dot = 0.0f;
                for (std::size_t k = 0; k < Outputs; ++k) {
                    dot += pv[k] * dpn[k];
                }
                for (std::size_t k = 0; k < Outputs; ++k) {
                    dz[k] = pv[k] * (dpn[k] - dot);
                }
            }
            for (std::size_t k = 0; k < Outputs; ++k) {
                dbl_[k] += dz[k];
            }
            for (std::size_t q = 0; q < hidden; ++q) {
                const std::size_t k = n * hidden + q;
                float dh = dh_next_[k];
                for (std::size_t o = 0; o < Outputs; ++o) {
                    dwl_[o * hidden + q] += dz[o] * r.h[k];
                    dh += dz[o] * wl_[o * hidden + q];
                }
                const float tc = std::tanh(r.c[k]);
                const float i = a[q], f = a[hidden + q], g = a[2 * hidden + q], o = a[3 * hidden + q];
                const float cprev = cp != nullptr ? (*cp)[k] : 0.0f;
                const float dc = dh * o * (1.0f - tc * tc) + dc_next_[k];
                da[q] = dc * g * i * (1.0f - i);
                da[hidden + q] = dc * cprev * f * (1.0f - f);
                da[2 * hidden + q] = dc * i * (1.0f - g * g);
                da[3 * hidden + q] = dh * tc * o * (1.0f - o);
                dc_next_[k] = dc * f;
            }
            for (std::size_t q = 0; q < hidden; ++q) {
                dh_next_[n * hidden + q] = 0.0f;
            }
            for (std::size_t j = 0; j < gates; ++j) {
                db_[j] += da[j];
                for (std::size_t f = 0; f < features; ++f) {
                    dwx_[j * features + f] += da[j] * r.x[n * features + f];
                    dx_[n * features + f] += da[j] * wx_[j * features + f];
                }
                for (std::size_t q = 0; q < hidden; ++q) {
                    if (hp != nullptr) {
                        dwh_[j * hidden + q] += da[j] * (*hp)[n * hidden + q];
                    }
                    dh_next_[n * hidden + q] += da[j] * wh_[j * hidden + q];
                }
            }
        }
        if (cost_meter* m = slot_.bind(ctx.meter)) {
            m->mac(slot_.id(), phase::weight_gradient, fp32, fp32,
                   n_ * (gates * (features + hidden) + Outputs * hidden));
            m->mac(slot_.id(), phase::backward_input, fp32, fp32,
                   n_ * (gates * (features + hidden) + (7 + Outputs) * hidden));
        }
        return dx_;
    }

    void collect_parameters(std::vector<parameter>& ps) {
        auto add = [&](const char* s, std::vector<float>& v, std::vector<float>& g, param_role role) {
            ps.push_back(parameter{name_ + "." + s, std::span<float>(v), std::span<float>(g), role, true});
        };
        add("lstm.weight_ih", wx_, dwx_, param_role::gate);
        add("lstm.weight_hh", wh_, dwh_, param_role::gate);
        add("lstm.bias", b_, db_, param_role::gate);
        add("linear.weight", wl_, dwl_, param_role::gate);
        add("linear.bias", bl_, dbl_, param_role::gate);
    }
    void save(archive_writer& a) const {
        a.tag("recurrent_gate/1");
        for (const auto* v : {&wx_, &wh_, &b_, &wl_, &bl_}) {
            a.floats(*v);
        }
    }
    void load(archive_reader& a) {
        a.expect("recurrent_gate/1");
        for (auto* v : {&wx_, &wh_, &b_, &wl_, &bl_}) {
            a.floats(*v, name_);
        }
    }

    static void uniform_fill(std::vector<float>& v, float k, rng& g) {
        for (auto& x : v) {
            x = (2.0f * g.uniform() - 1.0f) * k;
        }
    }
    [[nodiscard]] static float sigmoid(float z) noexcept { return 1.0f / (1.0f + std::exp(-z)); }

private:
    struct record {
        std::vector<float> x, act, c, h, p;
    };

    float initial_bias_;
    std::vector<float> wx_, wh_, b_, wl_, bl_;
    std::vector<float> dwx_, dwh_, db_, dwl_, dbl_;
    std::vector<record> tape_;
    std::vector<float> dh_next_, dc_next_, dx_, scratch_;
    std::size_t n_ = 0, steps_ = 0, back_ = 0;
    std::string name_ = "gate";
    meter_slot slot_{"gate"};
};

/// E2-Train's SLU gate: unit C -> 10, LSTM 10, linear 10 -> 1, sigmoid.
using recurrent_gate = basic_recurrent_gate<10, 10, 1, 0>;

/// FracTrain's DFQ gate over K precision options: unit C -> 32 -> 16 with a
/// ReLU, LSTM 16, linear 16 -> K, softmax (SPEC §3.2).
template <std::size_t K>
using precision_gate = basic_recurrent_gate<16, 16, K, 32>;

} // namespace frugal

#endif
