#ifndef FRUGAL_LAYERS_RESIDUAL_HPP
#define FRUGAL_LAYERS_RESIDUAL_HPP

/// @file
/// frugal::basic_block: the CIFAR-style residual basic block,
/// `y = relu(bn2(conv2(relu(bn1(conv1(x))))) + shortcut(x))`, with 3x3
/// convolutions and either an identity shortcut or a projection shortcut
/// (1x1 convolution with the block's stride, then batch normalization) when
/// the block changes the channel count or the resolution.
///
/// The convolution type is a template parameter so that other methods can
/// substitute their own (quantized, shift + adder) without another block.
/// The body and the shortcut are also exposed separately
/// (forward_body/forward_shortcut and their backward passes), which is what
/// a gate that skips the block per sample needs.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <optional>
#include <span>
#include <utility>
#include <vector>

#include "frugal/layers/activation.hpp"
#include "frugal/layers/batchnorm.hpp"
#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/layer.hpp"
#include "frugal/numeric/quantizer.hpp"
#include "frugal/numeric/simd.hpp"
#include "frugal/tensor/kernels/elementwise.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

template <class ConvMaker = plain_conv>
class basic_block {
public:
    using conv_type = typename ConvMaker::type;
    static_assert(layer<conv_type>, "frugal::basic_block<ConvMaker>: ConvMaker::type must model frugal::layer");

    /// Marks the type as a block with a shortcut (what gating requires).
    static constexpr bool has_shortcut = true;
    /// Whether the convolutions take the plane ranges of their input and output gradient from the
    /// caller and give the plane sums of their output (quantized_conv): the batch norms next to
    /// them then keep those ranges in the passes that write the tensors and take the sums as their
    /// statistics, and each side skips a pass of its own; and hand each plane of their input
    /// gradient to a hook as they write it (bn1's first backward pass rides on conv2's).
    static constexpr bool conv_takes_ranges =
        requires(conv_type& c, context& ctx, const tensor4& t, const std::vector<value_range>* r) {
            c.forward(ctx, t, r);
            c.backward(ctx, t, r);
            c.backward(ctx, t, r, [](std::size_t, float*) {});
            c.input_grad_buffer();
            c.input_ranges();
            c.keep_output_sums(true);
            c.output_sums();
            c.keep_output_ranges(true);
            c.output_ranges();
            c.integer_forward();
        };

    /// Whether the convolutions give the plane sums of their output (keep_output_sums,
    /// output_sums: conv2d, quantized_conv): the batch norms after them take those as their
    /// statistics instead of a pass of their own.
    static constexpr bool conv_gives_sums = requires(conv_type& c) {
        c.keep_output_sums(true);
        c.output_sums();
    };

    /// @param in, out  channels; @param stride  1, or 2 to halve the resolution
    basic_block(std::size_t in, std::size_t out, std::size_t stride = 1) : basic_block(in, out, out, stride) {}

    /// A block whose inner width (conv1's outputs, bn1, conv2's inputs) is
    /// `mid` instead of `out`: what channel pruning leaves of a block.
    basic_block(std::size_t in, std::size_t mid, std::size_t out, std::size_t stride)
        : in_(in), mid_(mid), out_(out), stride_(stride),
          conv1_(ConvMaker::make(in, mid, 3, {stride, 1, false})), bn1_(mid, 0.1f, 1e-5f, true),
          conv2_(ConvMaker::make(mid, out, 3, {1, 1, false})), bn2_(out) {
        if (stride != 1 || in != out) {
            proj_.emplace(ConvMaker::make(in, out, 1, {stride, 0, false}), batchnorm(out));
        }
        if constexpr (conv_gives_sums) {
            conv1_.keep_output_sums(true);
            conv2_.keep_output_sums(true);
            if (proj_) {
                proj_->first.keep_output_sums(true);
            }
        }
        if constexpr (conv_takes_ranges) { // bn1's output is conv2's input; each bn's dx a conv's dy
            bn1_.keep_ranges(true, true);
            bn2_.keep_ranges(false, true);
            conv1_.keep_output_ranges(true); // bn1's output ranges follow from them (forward_to_conv2)
            if (proj_) {
                proj_->second.keep_ranges(false, true);
            }
        }
        set_name("");
    }

    [[nodiscard]] std::size_t in_channels() const noexcept { return in_; }
    [[nodiscard]] std::size_t out_channels() const noexcept { return out_; }
    /// Inner width: out_channels() unless the block was pruned.
    [[nodiscard]] std::size_t mid_channels() const noexcept { return mid_; }
    [[nodiscard]] std::size_t stride() const noexcept { return stride_; }
    [[nodiscard]] bool has_projection() const noexcept { return proj_.has_value(); }
    [[nodiscard]] conv_type& conv1() noexcept { return conv1_; }
    [[nodiscard]] conv_type& conv2() noexcept { return conv2_; }
    [[nodiscard]] batchnorm& bn1() noexcept { return bn1_; }
    [[nodiscard]] batchnorm& bn2() noexcept { return bn2_; }
    [[nodiscard]] conv_type& projection_conv() { return proj_->first; }
    [[nodiscard]] batchnorm& projection_bn() { return proj_->second; }
    [[nodiscard]] const conv_type& conv1() const noexcept { return conv1_; }
    [[nodiscard]] const conv_type& conv2() const noexcept { return conv2_; }
    [[nodiscard]] const batchnorm& bn1() const noexcept { return bn1_; }
    [[nodiscard]] const batchnorm& bn2() const noexcept { return bn2_; }
    [[nodiscard]] const conv_type& projection_conv() const { return proj_->first; }
    [[nodiscard]] const batchnorm& projection_bn() const { return proj_->second; }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }

    void set_name(std::string prefix) {
        name_ = prefix;
        slot_.rename(prefix.empty() ? std::string("basic_block") : prefix);
        conv1_.set_name(child_name(prefix, "conv1"));
        bn1_.set_name(child_name(prefix, "bn1"));
        conv2_.set_name(child_name(prefix, "conv2"));
        bn2_.set_name(child_name(prefix, "bn2"));
        if (proj_) {
            proj_->first.set_name(child_name(prefix, "shortcut.conv"));
            proj_->second.set_name(child_name(prefix, "shortcut.bn"));
        }
    }
    void set_input_grad(bool on) {
        input_grad_ = on;
        conv1_.set_input_grad(on);
        if (proj_) {
            proj_->first.set_input_grad(on);
        }
    }

    void reset_parameters(rng& g) {
        conv1_.reset_parameters(g);
        bn1_.reset_parameters(g);
        conv2_.reset_parameters(g);
        bn2_.reset_parameters(g);
        if (proj_) {
            proj_->first.reset_parameters(g);
            proj_->second.reset_parameters(g);
        }
    }

    [[nodiscard]] shape4 output_shape(const shape4& x) const {
        return bn2_.output_shape(conv2_.output_shape(conv1_.output_shape(x)));
    }

    /// The residual branch: bn2(conv2(relu(bn1(conv1(x))))) (bn1 applies the ReLU in its own pass).
    /// `x_ranges`: x's plane ranges when known (only used by convolutions that take them).
    const tensor4& forward_body(context& ctx, const tensor4& x, const std::vector<value_range>* x_ranges = nullptr) {
        const tensor4& c2 = forward_to_conv2(ctx, x, x_ranges);
        return bn2_.forward(ctx, c2, sums_of(conv2_)); // each conv's sums are read after its forward ran
    }
    /// forward_body without writing bn2's output: returns conv2's output c2, with bn2's statistics
    /// and map computed (batchnorm::forward_deferred); the body's output is
    /// bn2().affine_scale()[c] c2 + bn2().affine_shift()[c], value for value what forward_body
    /// writes. backward_body works after it as after forward_body. What a caller that adds the
    /// shortcut in a pass of its own uses (gated_block).
    const tensor4& forward_body_deferred(context& ctx, const tensor4& x,
                                         const std::vector<value_range>* x_ranges = nullptr) {
        const tensor4& c2 = forward_to_conv2(ctx, x, x_ranges);
        bn2_.forward_deferred(ctx, c2, sums_of(conv2_));
        return c2;
    }

    /// Whether the convolutions can run on chosen samples of a batch in place (conv2d::forward_rows,
    /// quantized_conv::forward_rows).
    static constexpr bool conv_takes_rows = requires(conv_type& c, context& ctx, const tensor4& t,
                                                     std::span<const std::size_t> r) {
        { c.forward_rows(ctx, t, r) } -> std::same_as<const tensor4&>;
    };
    /// forward_body_deferred of the samples `rows` of x, in that order, without gathering them:
    /// conv1 reads them in place (conv2d::forward_rows); backward_body then gives their input
    /// gradient in that order. x must stay alive and unchanged until then. What a gated block
    /// runs its sub-batch with.
    const tensor4& forward_body_deferred_rows(context& ctx, const tensor4& x, std::span<const std::size_t> rows)
        requires conv_takes_rows
    {
        const tensor4& c2 = forward_to_conv2(ctx, x, nullptr, &rows);
        bn2_.forward_deferred(ctx, c2, sums_of(conv2_));
        return c2;
    }

    /// The shortcut: x itself, or bn(conv1x1(x)). `x_ranges`: x's plane ranges when known (only
    /// used by convolutions that take them).
    const tensor4& forward_shortcut(context& ctx, const tensor4& x,
                                    const std::vector<value_range>* x_ranges = nullptr) {
        if (proj_) {
            if constexpr (conv_takes_ranges) {
                const tensor4& c = proj_->first.forward(ctx, x, x_ranges);
                return proj_->second.forward(ctx, c, proj_->first.output_sums());
            } else {
                (void)x_ranges;
                const tensor4& c = proj_->first.forward(ctx, x);
                return proj_->second.forward(ctx, c, sums_of(proj_->first));
            }
        }
        return x;
    }
    /// dx of the residual branch for its output gradient d.
    const tensor4& backward_body(context& ctx, const tensor4& d) { return backward_below_bn2(ctx, bn2_.backward(ctx, d)); }
    /// dx of the shortcut for its output gradient d.
    const tensor4& backward_shortcut(context& ctx, const tensor4& d) {
        if (proj_) {
            return backward_projection_conv(ctx, proj_->second.backward(ctx, d));
        }
        return d;
    }

    /// relu(body(x) + shortcut(x)): bn2's map (and the projection's batch norm's) applied in the
    /// residual pass, with the sum and the ReLU (batchnorm::forward_deferred): the batch norms'
    /// outputs are never written. Value for value what forward_body and forward_shortcut give.
    /// @param x_ranges  the [min, max] of every (sample, channel) plane of x when the caller has
    ///                  them exactly (the previous block's output_ranges()); only read by
    ///                  convolutions that take ranges. When the convolutions take them, a training
    ///                  forward keeps the output's plane ranges, found in the residual pass.
    const tensor4& forward(context& ctx, const tensor4& x, const std::vector<value_range>* x_ranges = nullptr) {
        out_ok_ = flags_ok_ = false; // until this forward succeeds
        const tensor4& c2 = forward_to_conv2(ctx, x, x_ranges);
        bn2_.forward_deferred(ctx, c2, sums_of(conv2_));
        const tensor4* sc = &x; // the shortcut's input to the residual pass: x, or the projection's output
        if (proj_) {
            if constexpr (conv_takes_ranges) {
                const tensor4& c = proj_->first.forward(ctx, x, conv1_input_ranges());
                proj_->second.forward_deferred(ctx, c, proj_->first.output_sums());
                sc = &c;
            } else {
                const tensor4& c = proj_->first.forward(ctx, x);
                proj_->second.forward_deferred(ctx, c, sums_of(proj_->first));
                sc = &c;
            }
        }
        ensure_shape(y_, shape_of(c2));
        const shape4 ys = shape_of(y_);
        residual_terms t{c2.data(), bn2_.affine_scale().data(), bn2_.affine_shift().data(), sc->data(),
                         proj_ ? proj_->second.affine_scale().data() : nullptr,
                         proj_ ? proj_->second.affine_shift().data() : nullptr};
        bool track = false;
        if constexpr (conv_takes_ranges) {
            track = ctx.training();
        }
        if (ctx.training()) {
            flags_.resize(y_.size());
        }
        const bool ok = residual_pass(t, y_.data(), ys.n * ys.c, ys.c, ys.h * ys.w, track ? &out_ranges_ : nullptr,
                                      ctx.training() ? flags_.data() : nullptr);
        if (track) {
            out_ok_ = ok;
            if (!ok) { // the ReLU would hide a NaN from the next layer
                throw numeric_error(detail::concat(name_.empty() ? std::string("basic_block") : name_,
                                                   ": the residual sum contains NaN or infinity"));
            }
        }
        flags_ok_ = ctx.training();
        if (cost_meter* m = slot_.bind(ctx.meter)) {
            m->unary(slot_.id(), phase::forward, op_kind::add, fp32, y_.size());
            m->unary(slot_.id(), phase::forward, op_kind::compare, fp32, y_.size());
        }
        return y_;
    }

    /// The backward of forward(): after a training forward, the residual ReLU's gate is read from
    /// the flags that forward kept (one byte per value) inside the batch norms' passes and the final
    /// sum, so no pass writes the gated gradient; otherwise it is computed from the output first.
    const tensor4& backward(context& ctx, const tensor4& dy) {
        expect_shape(shape_of(dy), shape_of(y_), (name_ + ".backward").c_str());
        if (cost_meter* m = slot_.bind(ctx.meter)) {
            m->unary(slot_.id(), phase::backward_input, op_kind::compare, fp32, dy.size());
        }
        if (!flags_ok_) {
            ensure_shape(dsum_, shape_of(dy));
            relu::gate(y_.data(), dy.data(), dsum_.data(), dy.size());
            const tensor4& db = backward_body(ctx, dsum_);
            if (!input_grad_) {
                if (proj_) {
                    (void)backward_shortcut(ctx, dsum_);
                }
                return db;
            }
            const tensor4& ds = backward_shortcut(ctx, dsum_);
            ensure_shape(dx_, shape_of(db));
            add(db.data(), ds.data(), dx_.data(), db.size());
            count_sum(ctx, db.size());
            dx_in_conv1_ = false;
            return dx_;
        }
        if constexpr (conv_takes_ranges) {
            if (input_grad_ && !proj_) {
                // identity shortcut: the gated output gradient is added into each plane of conv1's
                // input gradient as conv1 writes it, which is then the block's (no pass of its own)
                const std::size_t hw = dy.shape()[2] * dy.shape()[3];
                (void)backward_below_bn2(ctx, bn2_.backward_gated(ctx, dy, flags_.data()),
                                         [&](std::size_t plane, float* v) {
                                             const std::size_t at = plane * hw;
                                             add_gated_run(v, dy.data() + at, flags_.data() + at, v, hw);
                                         });
                dx_in_conv1_ = true;
                tensor4& dx = conv1_.input_grad_buffer();
                count_sum(ctx, dx.size());
                return dx;
            }
        }
        const tensor4& db = backward_below_bn2(ctx, bn2_.backward_gated(ctx, dy, flags_.data()));
        const tensor4* ds = nullptr; // the projection's input gradient, or (nullptr) dy gated by the flags
        if (proj_) {
            ds = &backward_projection_conv(ctx, proj_->second.backward_gated(ctx, dy, flags_.data()));
        }
        if (!input_grad_) {
            return db;
        }
        ensure_shape(dx_, shape_of(db));
        if (ds != nullptr) {
            add(db.data(), ds->data(), dx_.data(), db.size());
        } else {
            add_gated(db.data(), dy.data(), flags_.data(), dx_.data(), db.size());
        }
        count_sum(ctx, db.size());
        dx_in_conv1_ = false;
        return dx_;
    }

    /// The tensor the last backward returned when the block's input needs a gradient: a caller may
    /// add into it (a gate's gradient) before the next backward, instead of copying it.
    [[nodiscard]] tensor4& input_grad_buffer() noexcept {
        if constexpr (conv_takes_ranges) {
            if (dx_in_conv1_) {
                return conv1_.input_grad_buffer();
            }
        }
        return dx_;
    }

    void collect_parameters(std::vector<parameter>& ps) {
        conv1_.collect_parameters(ps);
        bn1_.collect_parameters(ps);
        conv2_.collect_parameters(ps);
        bn2_.collect_parameters(ps);
        if (proj_) {
            proj_->first.collect_parameters(ps);
            proj_->second.collect_parameters(ps);
        }
    }

    void save(archive_writer& a) const {
        a.tag("basic_block/1");
        a.u64(in_);
        a.u64(out_);
        a.u64(stride_);
        conv1_.save(a);
        bn1_.save(a);
        conv2_.save(a);
        bn2_.save(a);
        if (proj_) {
            proj_->first.save(a);
            proj_->second.save(a);
        }
    }
    void load(archive_reader& a) {
        a.expect("basic_block/1");
        const std::size_t at = a.offset();
        const std::uint64_t in = a.u64(), out = a.u64(), stride = a.u64();
        if (in != in_ || out != out_ || stride != stride_) {
            a.fail(at, detail::concat(name_, ": the checkpoint holds basic_block(", in, "->", out, ", stride ", stride,
                                      ") but the model has basic_block(", in_, "->", out_, ", stride ", stride_, ")"));
        }
        conv1_.load(a);
        bn1_.load(a);
        conv2_.load(a);
        bn2_.load(a);
        if (proj_) {
            proj_->first.load(a);
            proj_->second.load(a);
        }
    }

    /// Visits every leaf layer.
    template <class F>
    void for_each_layer(F&& f) {
        f(conv1_);
        f(bn1_);
        f(conv2_);
        f(bn2_);
        if (proj_) {
            f(proj_->first);
            f(proj_->second);
        }
    }

    /// What conv1 found of the block input's plane ranges in forward_body (the projection reads the
    /// same tensor), or nullptr.
    [[nodiscard]] const std::vector<value_range>* conv1_input_ranges() const noexcept {
        if constexpr (conv_takes_ranges) {
            return conv1_.input_ranges();
        } else {
            return nullptr;
        }
    }

    /// The [min, max] of every (sample, channel) plane of the last training forward's output
    /// (index n * C + c), or nullptr: after an evaluation forward or when the convolutions do not
    /// take ranges. (A training forward whose residual sum is not finite throws
    /// frugal::numeric_error instead of letting the ReLU hide it.)
    [[nodiscard]] const std::vector<value_range>* output_ranges() const noexcept {
        return out_ok_ ? &out_ranges_ : nullptr;
    }

    /// The operands of the residual pass: y = max(a2[c] c2 + b2[c] + s', 0) with s' = s (identity
    /// shortcut, as = nullptr) or as[c] s + bs[c] (the projection's batch norm).
    struct residual_terms {
        const float *c2, *a2, *b2, *s, *as, *bs;
    };
    /// The residual pass over `planes` planes of `hw` floats (plane p in channel p % channels);
    /// with `ranges`, keeps every output plane's [min, max] and returns false when a sum was NaN
    /// or infinite (the ReLU would hide it); with `flags`, one byte per value: 1 where the output
    /// is > 0 (what the ReLU's backward passes). The batch norms' maps are computed as their own
    /// forward computes them (fused lanes, simd::fma1 in tails): the result is bit for bit that
    /// of the materialized outputs summed.
    static bool residual_pass(const residual_terms& t, float* out, std::size_t planes, std::size_t channels,
                              std::size_t hw, std::vector<value_range>* ranges, std::uint8_t* flags = nullptr) {
        if (ranges != nullptr) {
            ranges->resize(planes);
        }
        std::vector<unsigned char> ok(static_cast<std::size_t>(num_threads()), 1);
        const std::size_t span = std::max<std::size_t>(1, 16384 / std::max<std::size_t>(hw, 1)); // planes per item
        const auto run = [&](auto proj, auto track) {
            constexpr bool Proj = decltype(proj)::value, Track = decltype(track)::value;
            parallel_dynamic((planes + span - 1) / span, [&](std::size_t item, int th) {
                const std::size_t lo = item * span, hi = std::min(planes, lo + span);
                using simd::fbatch;
                const fbatch zero(0.0f);
                fbatch bad(0.0f);
                float tail_bad = 0.0f;
                for (std::size_t p = lo; p < hi; ++p) {
                    const std::size_t at = p * hw, c = p % channels;
                    const float *pa = t.c2 + at, *pb = t.s + at;
                    float* pc = out + at;
                    const float a2 = t.a2[c], b2 = t.b2[c], as = Proj ? t.as[c] : 0.0f, bs = Proj ? t.bs[c] : 0.0f;
                    const fbatch va2(a2), vb2(b2), vas(as), vbs(bs);
                    fbatch vlo(std::numeric_limits<float>::max()), vhi(std::numeric_limits<float>::lowest());
                    std::size_t i = 0;
                    for (; i + simd::width <= hw; i += simd::width) {
                        const fbatch sv = fbatch::load_unaligned(pb + i);
                        const fbatch v =
                            simd::fma(fbatch::load_unaligned(pa + i), va2, vb2) + (Proj ? simd::fma(sv, vas, vbs) : sv);
                        const fbatch r = xsimd::max(v, zero);
                        r.store_unaligned(pc + i);
                        if (flags != nullptr) {
                            simd::store_flags(r > zero, flags + at + i);
                        }
                        if constexpr (Track) {
                            bad += v - v;
                            vlo = xsimd::min(vlo, r);
                            vhi = xsimd::max(vhi, r);
                        }
                    }
                    value_range r{};
                    if constexpr (Track) {
                        r = {simd::hmin(vlo), simd::hmax(vhi)};
                    }
                    for (; i < hw; ++i) {
                        const float v = simd::fma1(pa[i], a2, b2) + (Proj ? simd::fma1(pb[i], as, bs) : pb[i]);
                        tail_bad += v - v;
                        const float y = v > 0.0f ? v : 0.0f;
                        pc[i] = y;
                        if (flags != nullptr) {
                            flags[at + i] = y > 0.0f ? 1 : 0;
                        }
                        r.lo = std::min(r.lo, y);
                        r.hi = std::max(r.hi, y);
                    }
                    if constexpr (Track) {
                        (*ranges)[p] = r;
                    }
                }
                if (Track && (xsimd::hadd(bad) != 0.0f || tail_bad != 0.0f)) {
                    ok[static_cast<std::size_t>(th)] = 0;
                }
            });
        };
        const bool proj = t.as != nullptr, track = ranges != nullptr;
        if (proj) {
            track ? run(std::true_type{}, std::true_type{}) : run(std::true_type{}, std::false_type{});
        } else {
            track ? run(std::false_type{}, std::true_type{}) : run(std::false_type{}, std::false_type{});
        }
        return std::find(ok.begin(), ok.end(), 0) == ok.end();
    }

    /// c = a + (flags ? b : 0), vectorized and spread over the threads.
    static void add_gated(const float* a, const float* b, const std::uint8_t* flags, float* c, std::size_t n) {
        parallel_spans(n, 16384, [&](std::size_t lo, std::size_t hi) {
            add_gated_run(a + lo, b + lo, flags + lo, c + lo, hi - lo);
        });
    }
    /// add_gated over one run, on the calling thread (c may be a).
    static void add_gated_run(const float* a, const float* b, const std::uint8_t* flags, float* c,
                              std::size_t n) noexcept {
        using simd::fbatch;
        std::size_t i = 0;
        for (; i + simd::width <= n; i += simd::width) {
            const fbatch bv = xsimd::select(simd::load_flags(flags + i), fbatch::load_unaligned(b + i), fbatch(0.0f));
            (fbatch::load_unaligned(a + i) + bv).store_unaligned(c + i);
        }
        for (; i < n; ++i) {
            c[i] = a[i] + (flags[i] != 0 ? b[i] : 0.0f);
        }
    }

    /// c = a + b, vectorized and spread over the threads.
    static void add(const float* a, const float* b, float* c, std::size_t n) {
        parallel_spans(n, 16384, [&](std::size_t lo, std::size_t hi) { kernels::add(a + lo, b + lo, c + lo, hi - lo); });
    }

private:
    void count_sum(context& ctx, std::size_t n) {
        if (cost_meter* m = slot_.bind(ctx.meter)) {
            m->unary(slot_.id(), phase::backward_input, op_kind::add, fp32, n);
        }
    }
    /// conv1's input gradient from bn2's: conv2, bn1, conv1. A quantized conv2 hands bn1 each plane
    /// of its input gradient as it writes it (bn1's first backward pass, batchnorm::plane_sums), and
    /// conv1 hands each plane of its input gradient to `hook1` (which may change it in place).
    template <class Hook1 = detail::no_plane_hook>
    const tensor4& backward_below_bn2(context& ctx, const tensor4& d2, Hook1&& hook1 = {}) {
        if constexpr (conv_takes_ranges) {
            bn1_.begin_plane_sums();
            const tensor4& g = conv2_.backward(ctx, d2, bn2_.input_grad_ranges(),
                                               [this](std::size_t plane, const float* v) { bn1_.plane_sums(plane, v); });
            const tensor4& d1 = bn1_.backward_from_plane_sums(ctx, g);
            return conv1_.backward(ctx, d1, bn1_.input_grad_ranges(), hook1);
        } else {
            return conv1_.backward(ctx, bn1_.backward(ctx, conv2_.backward(ctx, d2)));
        }
    }
    /// The projection convolution's backward from its batch norm's input gradient.
    const tensor4& backward_projection_conv(context& ctx, const tensor4& dp) {
        if constexpr (conv_takes_ranges) {
            return proj_->first.backward(ctx, dp, proj_->second.input_grad_ranges());
        } else {
            return proj_->first.backward(ctx, dp);
        }
    }
    /// conv1 of x, or of its samples `rows` (conv_takes_rows).
    const tensor4& first_conv(context& ctx, const tensor4& x, const std::vector<value_range>* x_ranges,
                              const std::span<const std::size_t>* rows) {
        if constexpr (conv_takes_rows) {
            if (rows != nullptr) {
                return conv1_.forward_rows(ctx, x, *rows);
            }
        }
        (void)rows;
        if constexpr (conv_takes_ranges) {
            return conv1_.forward(ctx, x, x_ranges);
        } else {
            (void)x_ranges;
            return conv1_.forward(ctx, x);
        }
    }
    /// conv2(relu(bn1(conv1(x)))): the body up to bn2 (of the samples `rows` of x when given).
    const tensor4& forward_to_conv2(context& ctx, const tensor4& x, const std::vector<value_range>* x_ranges,
                                    const std::span<const std::size_t>* rows = nullptr) {
        if constexpr (conv_takes_ranges) { // each conv's sums are read after its forward ran
            const tensor4& c1 = first_conv(ctx, x, x_ranges, rows);
            if (ctx.training() && conv2_.integer_forward() && conv1_.output_ranges() != nullptr) {
                // bn1's output is never written: conv2 quantizes each plane as bn1 computes it,
                // with the planes' ranges derived from conv1's output ranges
                bn1_.forward_deferred(ctx, c1, conv1_.output_sums(), conv1_.output_ranges());
                if (const std::vector<value_range>* r = bn1_.output_ranges()) {
                    return conv2_.forward_planes(ctx, shape_of(c1), *r, [&](std::size_t i, float* buf) {
                        bn1_.apply_plane(i, buf);
                        return static_cast<const float*>(buf);
                    });
                }
                // a value that is not finite: conv2 measures (and reports) it itself
                return conv2_.forward(ctx, bn1_.materialize(), nullptr);
            }
            const tensor4& a = bn1_.forward(ctx, c1, conv1_.output_sums());
            return conv2_.forward(ctx, a, bn1_.output_ranges());
        } else {
            const tensor4& c1 = first_conv(ctx, x, x_ranges, rows);
            return conv2_.forward(ctx, bn1_.forward(ctx, c1, sums_of(conv1_)));
        }
    }
    /// A convolution's output sums when it gives them (conv_gives_sums), else nullptr.
    [[nodiscard]] static const std::vector<std::pair<float, float>>* sums_of(const conv_type& c) noexcept {
        if constexpr (conv_gives_sums) {
            return c.output_sums();
        } else {
            (void)c;
            return nullptr;
        }
    }

    std::size_t in_, mid_, out_, stride_;
    conv_type conv1_;
    batchnorm bn1_; // with its ReLU
    conv_type conv2_;
    batchnorm bn2_;
    std::optional<std::pair<conv_type, batchnorm>> proj_;
    tensor4 y_, dsum_, dx_;
    bool dx_in_conv1_ = false; // the last backward returned conv1's input gradient (input_grad_buffer; after a
                               // backward that threw, either buffer, as its contents)
    std::vector<value_range> out_ranges_; // the output's plane ranges (conv_takes_ranges, training)
    bool out_ok_ = false;
    std::vector<std::uint8_t> flags_; // the residual ReLU's gate (output > 0), kept by a training forward
    bool flags_ok_ = false;
    meter_slot slot_{"basic_block"};
    std::string name_;
    bool input_grad_ = true;
};

static_assert(layer<basic_block<>>);

} // namespace frugal

#endif
