#ifndef FRUGAL_LAYERS_GATED_HPP
#define FRUGAL_LAYERS_GATED_HPP

/// @file
/// E2-Train's selective layer update (SLU, SPEC §1.2(b)): residual blocks
/// that each sample may skip, in forward and backward, for real.
///
/// - `gated_block<Block>`: one residual block with per-sample decisions m
///   (1 = run, 0 = skip): `y = m * Block(x) + (1 - m) * shortcut(x)`. The
///   shortcut always runs on the whole batch; the residual branch runs on the
///   sub-batch of executed samples only, in forward and backward (its first
///   convolution reads them in place where it can, `forward_body_deferred_rows`,
///   else they are gathered; results are scattered back), so a block that runs
///   for 40% of a batch costs about 40% of its time, and the cost meter records
///   only what ran. Its
///   backward also gives dL/dm per sample, `<dL/dy, Block(x) - shortcut(x)>`,
///   what the straight-through estimator passes to the gate.
/// - `gated<Block, Gate>`: the model-level owner of the gates: a run-time
///   number of residual blocks applied in order (it replaces `repeated<Block>`
///   in a ResNet) and the gate network shared by all of them (SkipNet-style,
///   `recurrent_gate`: one LSTM over the blocks). The first block always
///   runs; block i > 0 is gated from its input (the output of block i - 1).
///   Training draws `m = 1[p > u]`, u ~ U(0, 1) from the step's random source
///   (a Bernoulli sample); evaluation uses `m = 1[p > 0.5]`. Backward is
///   straight-through (the value m, the gradient of p) plus the
///   computation-aware regularizer `alpha * s * sum_i sum_batch m_i c_i`,
///   `s = -1` when the executed share of this batch's gated blocks is at or
///   below `target_exec` and `+1` above it.
///
/// Modes (SPEC §1.2(b), pitfall): `slu_mode::execute` (default) does not
/// compute skipped samples; the gate's gradient then comes from the executed
/// samples and the regularizer only. `slu_mode::simulate` computes every
/// sample and masks (the authors' code, for reproducing accuracy); its meter
/// counts are scaled to the executed share, so both modes report skipped
/// blocks as zero cost (simulate's wall time is the full block's).
///
/// Gradients are those of the full batch's mean loss in both modes (the
/// incoming dL/dy already holds the 1/N). In execute mode the batch
/// normalization inside a block sees only the executed samples: its batch
/// statistics are those of the sub-batch **[decision]**.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "frugal/cost/meter.hpp"
#include "frugal/layers/block_stack.hpp"
#include "frugal/layers/gate.hpp"
#include "frugal/layers/layer.hpp"
#include "frugal/numeric/simd.hpp"
#include "frugal/tensor/kernels/elementwise.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

/// How skipped samples are handled (see the file comment).
enum class slu_mode : std::uint8_t { execute, simulate };

/// Forces the gates (ablations, tests, benchmarks): none = the gate decides;
/// `random` runs each (gated block, sample) pair with probability
/// `slu_options::forced_rate`, drawn from the step's random source (the gate
/// network still runs, so its cost is part of the measurement).
enum class gate_override : std::uint8_t { none, all_on, all_off, random };

/// SLU's hyperparameters (data, not types).
struct slu_options {
    /// Weight of the computation-aware regularizer; 0 (the default) picks by
    /// mode: SPEC's 1e-5 [impl] in simulate mode, 1e-3 in execute mode, where
    /// only executed samples give the gate a gradient (a gradient that leans
    /// towards skipping) and 1e-5 lets every gate collapse to "skip"
    /// (measured: docs/e2train.md, "SLU: the regularizer weight in execute mode").
    float alpha = 0.0f;
    float target_exec = 0.6f;   ///< executed share to aim for (skip 20/40/60% => 0.8/0.6/0.4)
    float eval_threshold = 0.5f;
    slu_mode mode = slu_mode::execute;
    gate_override force = gate_override::none;
    float forced_rate = 1.0f; ///< with gate_override::random: the probability that a pair runs
    /// Learning-rate multiplier of the gate network's parameters (their
    /// `parameter::lr_scale`, read when the optimizer collects them): lets
    /// the gates learn at SGD's rate under a sign optimizer's small one.
    float gate_lr_scale = 1.0f;

    [[nodiscard]] float effective_alpha() const noexcept {
        return alpha > 0.0f ? alpha : (mode == slu_mode::simulate ? 1e-5f : 1e-3f);
    }

    /// Throws frugal::error naming the bad field unless every option is in range.
    void validate() const {
        auto bad = [](const char* what, float v, const char* range) {
            throw error(detail::concat("frugal::slu_options: ", what, " = ", v, " is out of range (", range, ")"));
        };
        if (!(alpha >= 0.0f) || !std::isfinite(alpha)) {
            bad("alpha", alpha, "finite, >= 0; 0 picks by mode");
        }
        if (!(target_exec > 0.0f && target_exec <= 1.0f)) {
            bad("target_exec", target_exec, "(0, 1]");
        }
        if (!(eval_threshold >= 0.0f && eval_threshold <= 1.0f)) {
            bad("eval_threshold", eval_threshold, "[0, 1]");
        }
        if (!(forced_rate >= 0.0f && forced_rate <= 1.0f)) {
            bad("forced_rate", forced_rate, "[0, 1]");
        }
        if (!(gate_lr_scale >= 0.0f) || !std::isfinite(gate_lr_scale)) {
            bad("gate_lr_scale", gate_lr_scale, "finite, >= 0");
        }
    }
};

/// A block that gating accepts: a residual block with a shortcut and the
/// body/shortcut passes exposed separately.
template <class B>
concept gatable_block = layer<B> && requires(B& b, context& ctx, const tensor4& t) {
    requires B::has_shortcut;
    { b.forward_body(ctx, t) } -> std::same_as<const tensor4&>;
    { b.forward_shortcut(ctx, t) } -> std::same_as<const tensor4&>;
    { b.backward_body(ctx, t) } -> std::same_as<const tensor4&>;
    { b.backward_shortcut(ctx, t) } -> std::same_as<const tensor4&>;
};

namespace detail {
template <class B>
constexpr bool has_shortcut_flag() {
    if constexpr (requires { B::has_shortcut; }) {
        return B::has_shortcut;
    } else {
        return false;
    }
}

/// Adds `from`'s counts, scaled by `share`, to `into` (time unscaled: it was spent).
inline void merge_scaled(cost_meter& into, const cost_meter& from, double share) {
    for (const auto& l : from.layers()) {
        const cost_meter::layer_id id = into.layer(l.name);
        for (std::size_t p = 0; p < phase_count; ++p) {
            const auto ph = static_cast<phase>(p);
            const phase_costs& c = l.phases[p];
            for (const auto& [k, v] : c.ops) {
                into.count(id, ph, k.kind, k.a, k.b,
                           static_cast<std::uint64_t>(std::llround(static_cast<double>(v) * share)));
            }
            if (c.bytes_read + c.bytes_written != 0) {
                into.bytes(id, ph, static_cast<std::uint64_t>(std::llround(static_cast<double>(c.bytes_read) * share)),
                           static_cast<std::uint64_t>(std::llround(static_cast<double>(c.bytes_written) * share)));
            }
            if (c.calls != 0) {
                into.time(id, ph, c.seconds);
            }
        }
    }
}
} // namespace detail

/// One residual block whose samples can each skip it (see the file comment).
/// Standing alone it runs with the decisions given by set_decisions (every
/// sample runs when none were given); inside gated<> the gates set them.
template <class Block>
class gated_block {
    static_assert(detail::has_shortcut_flag<Block>(),
                  "frugal::gated: only a residual block with a shortcut can be gated (Block::has_shortcut must be "
                  "true): a skipped sample must still get an output, and the shortcut is what it gets");
    static_assert(gatable_block<Block>, "frugal::gated: Block must model frugal::layer and provide forward_body, "
                                        "forward_shortcut, backward_body and backward_shortcut");

public:
    explicit gated_block(Block b) : block_(std::move(b)) { set_name(""); }

    [[nodiscard]] Block& block() noexcept { return block_; }
    [[nodiscard]] const Block& block() const noexcept { return block_; }

    /// Per-sample decisions of the next forward (1 = run); empty = all run.
    void set_decisions(std::span<const std::uint8_t> m) { decisions_.assign(m.begin(), m.end()); }
    [[nodiscard]] const std::vector<std::uint8_t>& decisions() const noexcept { return decisions_; }
    void set_mode(slu_mode m) noexcept { mode_ = m; }
    [[nodiscard]] slu_mode mode() const noexcept { return mode_; }
    /// Samples that ran the block in the last forward.
    [[nodiscard]] std::size_t executed() const noexcept { return executed_; }
    /// The input gradient of the last backward, writable: a caller may add to it in place (the
    /// block does not read it again); gated<> instead hands its gate unit's gradient to
    /// backward(ctx, dy, plane_grad), which adds it in the same pass.
    [[nodiscard]] tensor4& input_grad_buffer() noexcept { return dx_; }
    /// Whether forward also computes the kernels::lane_sum of every plane of its output while the
    /// plane is in cache (what the next block's gate unit pools; gated<> turns it on).
    void keep_plane_sums(bool on) noexcept { keep_sums_ = on; }
    /// The plane sums of the last forward's output (index n * C + c) when keep_plane_sums is on.
    [[nodiscard]] const std::vector<float>* plane_sums() const noexcept { return sums_ok_ ? &sums_ : nullptr; }
    /// dL/dm per sample from the last backward (0 for samples not computed).
    [[nodiscard]] const std::vector<float>& decision_grad() const noexcept { return dm_; }

    void set_name(std::string prefix) {
        name_ = prefix;
        block_.set_name(prefix);
        slot_.rename(prefix.empty() ? std::string("gated_block") : prefix + ".gate_mix");
    }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    void set_input_grad(bool on) {
        input_grad_ = on;
        block_.set_input_grad(on);
    }
    void reset_parameters(rng& g) { block_.reset_parameters(g); }
    [[nodiscard]] shape4 output_shape(const shape4& s) const { return block_.output_shape(s); }
    void collect_parameters(std::vector<parameter>& ps) { block_.collect_parameters(ps); }
    void save(archive_writer& a) const { block_.save(a); }
    void load(archive_reader& a) { block_.load(a); }
    template <class F>
    void for_each_layer(F&& f) {
        if constexpr (requires { block_.for_each_layer(f); }) {
            block_.for_each_layer(f);
        }
    }

    const tensor4& forward(context& ctx, const tensor4& x) {
        const shape4 xs = shape_of(x);
        if (!decisions_.empty() && decisions_.size() != xs.n) {
            throw shape_error(detail::concat(name_, ": ", decisions_.size(), " gate decisions for a batch of ", xs.n));
        }
        sums_ok_ = false; // until this forward succeeds
        const tensor4& s = block_.forward_shortcut(ctx, x);
        s_ = &s;
        ident_ = &s == &x; // an identity shortcut: its backward returns its input
        const shape4 ys = shape_of(s);
        const std::size_t per = ys.per_sample();
        pos_.assign(xs.n, npos);
        idx_.clear();
        executed_ = 0;
        for (std::size_t n = 0; n < xs.n; ++n) {
            const bool run = runs(n);
            executed_ += run ? 1 : 0;
            if (run || mode_ == slu_mode::simulate) {
                pos_[n] = idx_.size();
                idx_.push_back(n);
            }
        }
        const std::size_t k = idx_.size();
        ensure_shape(y_, ys);
        const tensor4* b = nullptr;
        if (k > 0) {
            if constexpr (body_takes_rows) {
                if (k < xs.n) { // the branch reads its samples in place
                    b = &block_.forward_body_deferred_rows(ctx, x, idx_);
                }
            }
            if (b == nullptr) {
                const tensor4* in = &x;
                if (k < xs.n) {
                    gather_rows(x, idx_, xsub_);
                    in = &xsub_;
                }
                b = &body_forward(ctx, *in);
            }
            if (executed_ < k) { // simulate mode: the outputs of computed-but-skipped samples, for dL/dm
                ensure_shape(f_, shape_of(*b));
            }
        }
        // y = relu(body + shortcut) for the samples that run, the shortcut for the others; a block
        // that defers its last batch norm (deferred_body) has its map applied here, in the same pass
        const std::size_t planes = ys.c, hw = ys.h * ys.w;
        if (keep_sums_) {
            sums_.resize(xs.n * planes);
        }
        parallel_for(xs.n, [&](std::size_t n) {
            const float* sp = s.data() + n * per;
            float* yp = y_.data() + n * per;
            float* sums = keep_sums_ ? sums_.data() + n * planes : nullptr;
            if (pos_[n] == npos) {
                std::memcpy(yp, sp, per * sizeof(float));
                if (sums != nullptr) {
                    for (std::size_t c = 0; c < planes; ++c) {
                        sums[c] = kernels::lane_sum(yp + c * hw, hw);
                    }
                }
                return;
            }
            const float* bp = b->data() + pos_[n] * per;
            float* out = runs(n) ? yp : f_.data() + pos_[n] * per;
            if constexpr (deferred_body) {
                const auto& a2 = block_.bn2().affine_scale();
                const auto& b2 = block_.bn2().affine_shift();
                for (std::size_t c = 0; c < planes; ++c) {
                    kernels::affine_add_relu(bp + c * hw, a2[c], b2[c], sp + c * hw, out + c * hw, hw);
                }
            } else {
                kernels::add_relu(bp, sp, out, per);
            }
            if (!runs(n)) {
                std::memcpy(yp, sp, per * sizeof(float));
            }
            if (sums != nullptr) { // each plane is still in cache
                for (std::size_t c = 0; c < planes; ++c) {
                    sums[c] = kernels::lane_sum(yp + c * hw, hw);
                }
            }
        });
        sums_ok_ = keep_sums_;
        if (cost_meter* m = slot_.bind(ctx.meter)) {
            m->unary(slot_.id(), phase::forward, op_kind::add, fp32, executed_ * per);
            m->unary(slot_.id(), phase::forward, op_kind::compare, fp32, executed_ * per);
        }
        return y_;
    }

    /// The backward. The residual branch gets the gated gradient of its samples only (its rows
    /// written once, in sub-batch order); with an identity shortcut the shortcut's gradient is
    /// read where it already is (dy for samples that skipped, the branch's rows for the others),
    /// so no full-batch copy of the gradient is made (docs/e2train.md, "SLU's realized share").
    const tensor4& backward(context& ctx, const tensor4& dy) {
        return backward(ctx, dy, [](const std::vector<float>&) -> const float* { return nullptr; });
    }

    /// backward, with `plane_grad(decision_grad)` called as soon as dL/dm is known (before the
    /// branch's backward): it may return per-plane values (index n * C + c of the input) that the
    /// input gradient's last pass adds to every pixel of their plane (the gate unit's pooled
    /// gradient, which gated<> adds so), or nullptr.
    template <class PlaneGrad>
    const tensor4& backward(context& ctx, const tensor4& dy, PlaneGrad&& plane_grad) {
        expect_shape(shape_of(dy), shape_of(y_), (name_ + ".backward").c_str());
        const shape4 ys = shape_of(dy);
        const std::size_t per = ys.per_sample(), k = idx_.size();
        dm_.assign(ys.n, 0.0f);
        const bool ident = ident_;
        // with every sample running and a projection, the branch's gradient is the shortcut's (ds_)
        const bool whole = k == ys.n && executed_ == k;
        const bool shared = whole && !ident;
        if (!ident) {
            ensure_shape(ds_, ys);
        }
        if (k > 0 && !shared) {
            ensure_shape(dsub_, {k, ys.c, ys.h, ys.w});
        }
        const float* s = s_->data();
        parallel_for(ys.n, [&](std::size_t n) {
            const float* d = dy.data() + n * per;
            float* dsn = ident ? nullptr : ds_.data() + n * per;
            if (pos_[n] == npos) {
                if (dsn != nullptr) {
                    std::memcpy(dsn, d, per * sizeof(float));
                }
                return;
            }
            const std::size_t j = pos_[n];
            const bool run = runs(n);
            const float* f = run ? y_.data() + n * per : f_.data() + j * per;
            dm_[n] = dot_diff(d, f, s + n * per, per);
            float* db = shared ? dsn : dsub_.data() + j * per;
            if (run) {
                kernels::relu_gate(f, d, db, per);
                if (dsn != nullptr && !shared) {
                    std::memcpy(dsn, db, per * sizeof(float));
                }
            } else { // simulate mode: computed, skipped: no gradient through the branch
                std::fill(db, db + per, 0.0f);
                if (dsn != nullptr) {
                    std::memcpy(dsn, d, per * sizeof(float));
                }
            }
        });
        if (cost_meter* m = slot_.bind(ctx.meter)) {
            m->unary(slot_.id(), phase::backward_input, op_kind::compare, fp32, executed_ * per);
        }
        const float* extra = plane_grad(dm_);
        if (k == 0) {
            // the body did not run: its gradients are zero (the shortcut's are rewritten below)
            std::vector<parameter> ps;
            block_.collect_parameters(ps);
            for (auto& p : ps) {
                std::fill(p.grad.begin(), p.grad.end(), 0.0f);
            }
        }
        const tensor4* dxs = ident ? nullptr : &block_.backward_shortcut(ctx, ds_);
        const tensor4& dbody = shared ? ds_ : dsub_;
        const tensor4* dxb = k > 0 ? &body_backward(ctx, dbody) : nullptr;
        if (!input_grad_) {
            return empty_;
        }
        const shape4 xs = ident ? ys : shape_of(*dxs);
        const std::size_t per_in = xs.per_sample(), hw_in = xs.h * xs.w;
        ensure_shape(dx_, xs);
        parallel_for(xs.n, [&](std::size_t n) {
            float* dst = dx_.data() + n * per_in;
            const std::size_t j = pos_[n];
            // the shortcut's gradient of sample n: with an identity shortcut dy (skipped) or the
            // branch's row (ran: the same gated gradient)
            const float* a = !ident                     ? dxs->data() + n * per_in
                             : j == npos || !runs(n) ? dy.data() + n * per_in
                                                     : dbody.data() + j * per_in;
            const float* bsum = dxb == nullptr || j == npos ? nullptr : dxb->data() + j * per_in;
            if (extra != nullptr) {
                for (std::size_t c = 0; c < xs.c; ++c) {
                    const std::size_t o = c * hw_in;
                    kernels::add_scalar(a + o, bsum == nullptr ? nullptr : bsum + o, extra[n * xs.c + c], dst + o,
                                        hw_in);
                }
            } else if (bsum == nullptr) {
                std::memcpy(dst, a, per_in * sizeof(float));
            } else {
                kernels::add(a, bsum, dst, per_in);
            }
        });
        if (dxb != nullptr) {
            if (cost_meter* m = slot_.bind(ctx.meter)) {
                m->unary(slot_.id(), phase::backward_input, op_kind::add, fp32, executed_ * per_in);
            }
        }
        return dx_;
    }

private:
    static constexpr std::size_t npos = static_cast<std::size_t>(-1);

    [[nodiscard]] bool runs(std::size_t n) const noexcept { return decisions_.empty() || decisions_[n] != 0; }

    /// sum d * (f - s), in float lanes (two accumulators) summed in double.
    static float dot_diff(const float* d, const float* f, const float* s, std::size_t n) noexcept {
        using simd::fbatch;
        fbatch a0(0.0f), a1(0.0f);
        std::size_t i = 0;
        for (; i + 2 * simd::width <= n; i += 2 * simd::width) {
            a0 = simd::fma(fbatch::load_unaligned(d + i), fbatch::load_unaligned(f + i) - fbatch::load_unaligned(s + i),
                            a0);
            const std::size_t h = i + simd::width;
            a1 = simd::fma(fbatch::load_unaligned(d + h), fbatch::load_unaligned(f + h) - fbatch::load_unaligned(s + h),
                            a1);
        }
        alignas(64) float lanes[simd::width];
        (a0 + a1).store_aligned(lanes);
        double acc = 0.0;
        for (float v : lanes) {
            acc += static_cast<double>(v);
        }
        for (; i < n; ++i) {
            acc += static_cast<double>(d[i]) * static_cast<double>(f[i] - s[i]);
        }
        return static_cast<float>(acc);
    }

    /// Whether the block can leave its last batch norm's map to the pass that adds the shortcut
    /// (basic_block::forward_body_deferred): the body's output is then never written.
    static constexpr bool deferred_body = requires(Block& b, context& ctx, const tensor4& t) {
        { b.forward_body_deferred(ctx, t) } -> std::same_as<const tensor4&>;
        b.bn2().affine_scale();
        b.bn2().affine_shift();
    };

    /// Whether the branch can run on the executed samples where they are (no gathered copy):
    /// basic_block::forward_body_deferred_rows. Used in execute mode, where k < n means the
    /// samples that run are exactly the ones computed (simulate mode computes every sample).
    static constexpr bool body_takes_rows =
        deferred_body && requires(Block& b, context& ctx, const tensor4& t, std::span<const std::size_t> r) {
            { b.forward_body_deferred_rows(ctx, t, r) } -> std::same_as<const tensor4&>;
        };

    /// The residual branch (deferred_body: up to its last batch norm's map); in simulate mode its
    /// meter counts are scaled to the executed share.
    const tensor4& body_forward(context& ctx, const tensor4& x) {
        const auto run = [&](context& c) -> const tensor4& {
            if constexpr (deferred_body) {
                return block_.forward_body_deferred(c, x);
            } else {
                return block_.forward_body(c, x);
            }
        };
        if (mode_ != slu_mode::simulate || ctx.meter == nullptr) {
            return run(ctx);
        }
        return scaled(ctx, run);
    }
    const tensor4& body_backward(context& ctx, const tensor4& d) {
        if (mode_ != slu_mode::simulate || ctx.meter == nullptr) {
            return block_.backward_body(ctx, d);
        }
        return scaled(ctx, [&](context& c) -> const tensor4& { return block_.backward_body(c, d); });
    }
    template <class F>
    const tensor4& scaled(context& ctx, F&& f) {
        cost_meter* real = ctx.meter;
        scratch_.reset();
        ctx.meter = &scratch_;
        const tensor4* r = nullptr;
        try {
            r = &f(ctx);
        } catch (...) {
            ctx.meter = real;
            throw;
        }
        ctx.meter = real;
        const std::size_t n = pos_.size();
        detail::merge_scaled(*real, scratch_, n ? static_cast<double>(executed_) / static_cast<double>(n) : 0.0);
        return *r;
    }

    Block block_;
    std::vector<std::uint8_t> decisions_;
    slu_mode mode_ = slu_mode::execute;
    std::vector<std::size_t> idx_, pos_;
    std::size_t executed_ = 0;
    const tensor4* s_ = nullptr;
    tensor4 xsub_, f_, y_, ds_, dsub_, dx_, empty_;
    std::vector<float> dm_, sums_;
    bool keep_sums_ = false, sums_ok_ = false, ident_ = false;
    cost_meter scratch_;
    meter_slot slot_{"gated_block"};
    std::string name_;
    bool input_grad_ = true;
};

/// Residual blocks run in order, each sample gated per block by a gate
/// network shared by all blocks (see the file comment).
template <class Block, class Gate = recurrent_gate>
class gated : public detail::block_stack<gated_block<Block>, typename Gate::unit, Gate> {
    using base = detail::block_stack<gated_block<Block>, typename Gate::unit, Gate>;
    using base::blocks_;
    using base::gate_;
    using base::input_grad_;
    using base::name_;
    using base::units_;

public:
    using block_type = gated_block<Block>;
    using unit_type = typename Gate::unit;

    /// @param blocks  the residual blocks, in order (at least one)
    explicit gated(std::vector<Block> blocks, slu_options o = {}, Gate gate = Gate{})
        : base(std::move(gate)), opt_(o) {
        if (blocks.empty()) {
            throw error("frugal::gated: needs at least one block");
        }
        blocks_.reserve(blocks.size());
        for (auto& b : blocks) {
            units_.push_back(gate_.make_unit(b.in_channels()));
            blocks_.emplace_back(std::move(b));
        }
        for (std::size_t i = 0; i + 1 < blocks_.size(); ++i) {
            blocks_[i].keep_plane_sums(true); // what the next block's gate unit pools
        }
        cost_.assign(blocks_.size(), 1.0f);
        eval_seen_.assign(blocks_.size(), 0);
        eval_run_.assign(blocks_.size(), 0);
        set_options(o);
        set_name("");
        set_input_grad(true);
    }

    [[nodiscard]] std::size_t size() const noexcept { return blocks_.size(); }
    [[nodiscard]] block_type& operator[](std::size_t i) noexcept { return blocks_[i]; }
    [[nodiscard]] const block_type& operator[](std::size_t i) const noexcept { return blocks_[i]; }
    [[nodiscard]] Gate& gate() noexcept { return gate_; }
    /// The gate unit of block i (i >= 1; block 0 has none that is used).
    [[nodiscard]] unit_type& unit(std::size_t i) noexcept { return units_[i]; }

    [[nodiscard]] const slu_options& options() const noexcept { return opt_; }
    void set_options(const slu_options& o) {
        o.validate();
        opt_ = o;
        for (auto& b : blocks_) {
            b.set_mode(o.mode);
        }
    }
    /// c_i of the regularizer, one per block (1 by default, as the authors use).
    void set_block_costs(std::vector<float> c) {
        if (c.size() != blocks_.size()) {
            throw error(detail::concat("frugal::gated: ", c.size(), " block costs for ", blocks_.size(), " blocks"));
        }
        cost_ = std::move(c);
    }

    /// Execution probabilities of block i in the last forward (empty for block 0).
    [[nodiscard]] const std::vector<float>& probabilities(std::size_t i) const noexcept { return probs_[i]; }
    /// dL/dp of block i in the last backward: the straight-through gradient plus the regularizer's.
    [[nodiscard]] const std::vector<float>& probability_grad(std::size_t i) const noexcept { return dprobs_[i]; }
    /// Share of (gated block, sample) pairs that executed in the last forward (blocks 1.. only).
    [[nodiscard]] double executed_share() const noexcept { return share_; }
    /// The regularizer's sign of the last training forward (-1 or +1).
    [[nodiscard]] float regularizer_sign() const noexcept { return sign_; }
    /// The regularizer's value alpha * s * sum_i sum_batch m_i c_i of the last training forward.
    [[nodiscard]] double regularizer_loss() const noexcept { return reg_loss_; }

    /// Executed fraction of each block over the evaluation forwards since the last reset.
    [[nodiscard]] std::vector<double> eval_executed_fraction() const {
        std::vector<double> f(blocks_.size(), 0.0);
        for (std::size_t i = 0; i < f.size(); ++i) {
            f[i] = eval_seen_[i] ? static_cast<double>(eval_run_[i]) / static_cast<double>(eval_seen_[i]) : 0.0;
        }
        return f;
    }
    void reset_eval_report() {
        std::fill(eval_seen_.begin(), eval_seen_.end(), 0);
        std::fill(eval_run_.begin(), eval_run_.end(), 0);
    }

    using base::name;
    using base::output_shape;
    using base::reset_parameters;
    using base::set_input_grad;
    using base::set_name;

    const tensor4& forward(context& ctx, const tensor4& x) {
        const std::size_t n = x.shape()[0], nb = blocks_.size();
        probs_.resize(nb);
        dprobs_.resize(nb);
        gate_.begin(n);
        m_.assign(n, 1);
        std::size_t gated_run = 0;
        const tensor4* h = &x;
        for (std::size_t i = 0; i < nb; ++i) {
            if (i == 0) {
                probs_[0].clear();
                std::fill(m_.begin(), m_.end(), std::uint8_t{1});
            } else {
                const std::vector<float>& p = gate_.step(ctx, units_[i].forward(ctx, *h, blocks_[i - 1].plane_sums()));
                probs_[i] = p;
                for (std::size_t s = 0; s < n; ++s) {
                    bool run = false;
                    if (opt_.force == gate_override::all_on) {
                        run = true;
                    } else if (opt_.force == gate_override::all_off) {
                        run = false;
                    } else if (opt_.force == gate_override::random) {
                        run = opt_.forced_rate > ctx.random.uniform();
                    } else if (ctx.training()) {
                        run = p[s] > ctx.random.uniform();
                    } else {
                        run = p[s] > opt_.eval_threshold;
                    }
                    m_[s] = run ? 1 : 0;
                    gated_run += run ? 1 : 0;
                }
            }
            blocks_[i].set_decisions(m_);
            h = &blocks_[i].forward(ctx, *h);
            if (!ctx.training()) {
                eval_seen_[i] += n;
                eval_run_[i] += blocks_[i].executed();
            }
        }
        const std::size_t pairs = (nb - 1) * n;
        share_ = pairs ? static_cast<double>(gated_run) / static_cast<double>(pairs) : 1.0;
        if (ctx.training()) {
            sign_ = share_ <= static_cast<double>(opt_.target_exec) ? -1.0f : 1.0f;
            double c = 0.0;
            for (std::size_t i = 1; i < nb; ++i) {
                c += static_cast<double>(cost_[i]) * static_cast<double>(blocks_[i].executed());
            }
            reg_loss_ = static_cast<double>(opt_.effective_alpha()) * sign_ * c;
        }
        return *h;
    }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        gate_.begin_backward();
        const tensor4* g = &dy;
        for (std::size_t i = blocks_.size(); i-- > 0;) {
            if (i == 0) {
                return blocks_[0].backward(ctx, *g);
            }
            // as soon as block i has dL/dm: the straight-through dL/dp = dL/dm, plus the
            // regularizer's alpha * s * c_i, through the gate's step and unit; the unit's gradient
            // of the pooled input is added in the block's last pass over its input gradient
            // (blocks i > 0 always give one)
            g = &blocks_[i].backward(ctx, *g, [&](const std::vector<float>& dm) -> const float* {
                std::vector<float>& dp = dprobs_[i];
                dp.resize(dm.size());
                const float r = opt_.effective_alpha() * sign_ * cost_[i];
                for (std::size_t s = 0; s < dm.size(); ++s) {
                    dp[s] = dm[s] + r;
                }
                const std::vector<float>& dfeat = gate_.step_backward(ctx, dp.data());
                return units_[i].backward_planes(ctx, dfeat.data()).data();
            });
        }
        return *g; // not reached
    }

    void collect_parameters(std::vector<parameter>& ps) {
        for (auto& b : blocks_) {
            b.collect_parameters(ps);
        }
        const std::size_t first_gate = ps.size();
        for (std::size_t i = 1; i < units_.size(); ++i) {
            units_[i].collect_parameters(ps);
        }
        gate_.collect_parameters(ps);
        for (std::size_t i = first_gate; i < ps.size(); ++i) {
            ps[i].lr_scale = opt_.gate_lr_scale;
        }
    }

    void save(archive_writer& a) const {
        a.tag("gated/1");
        a.u64(blocks_.size());
        for (const auto& b : blocks_) {
            b.save(a);
        }
        for (std::size_t i = 1; i < units_.size(); ++i) {
            units_[i].save(a);
        }
        gate_.save(a);
    }
    void load(archive_reader& a) {
        a.expect("gated/1");
        const std::size_t at = a.offset();
        const std::uint64_t n = a.u64();
        if (n != blocks_.size()) {
            a.fail(at, detail::concat(name_, ": the checkpoint holds ", n, " gated blocks but the model has ",
                                      blocks_.size()));
        }
        for (auto& b : blocks_) {
            b.load(a);
        }
        for (std::size_t i = 1; i < units_.size(); ++i) {
            units_[i].load(a);
        }
        gate_.load(a);
    }

    /// Visits every leaf layer of the blocks (the gate network is not a leaf layer).
    template <class F>
    void for_each_layer(F&& f) {
        for (auto& b : blocks_) {
            b.for_each_layer(f);
        }
    }

private:
    // (units_[0] exists for uniform indexing and is never used)
    slu_options opt_;
    std::vector<float> cost_;
    std::vector<std::vector<float>> probs_, dprobs_;
    std::vector<std::uint8_t> m_;
    std::vector<std::uint64_t> eval_seen_, eval_run_;
    double share_ = 1.0, reg_loss_ = 0.0;
    float sign_ = 1.0f;
};

} // namespace frugal

#endif
