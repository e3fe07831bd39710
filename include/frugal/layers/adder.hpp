#ifndef FRUGAL_LAYERS_ADDER_HPP
#define FRUGAL_LAYERS_ADDER_HPP

/// @file
/// AdderNet's adder layers, `adder_conv2d` and `adder_dense` (SPEC 4.2):
/// the output is the negative L1 distance between each input patch and each
/// filter, `Y[n,o,h,w] = -sum_{c,i,j} |X[n,c,h*s+i,w*s+j] - W[o,c,i,j]|`
/// (zero padding is an input value 0, no bias), computed with additions and
/// absolute values only.
///
/// Backward (AdderNet's rules, the default):
/// - weights: the full difference, dW = sum dY * (X - W) (not its sign),
///   computed as dY X^T - W * sum dY, whose first term is a convolution's
///   weight gradient (conv2d's kernels run it);
/// - inputs: the HardTanh-clipped difference, dX = sum dY * clamp(W - X, -1, 1);
/// - adaptive learning-rate scaling of the layer's weight gradient before the
///   optimizer sees it: dW <- eta * sqrt(k) / ||dW||_2 * dW, k = elements of
///   W, eta = 0.2 (no scaling when ||dW|| = 0 or eta = 0).
/// `kernels::l1_weight_rule::sign` / `l1_input_rule::sign` give the true
/// derivatives instead (what a finite difference measures).
///
/// Precision: FP32, or FIX8: inputs and weights rounded to 8-bit codes on one
/// shared power-of-two grid, `scale = 2^ceil(log2(max(max|x|, max|w|) / 127))`
/// (max|x| of the batch in training, a running estimate in evaluation), and
/// the distance computed on the integer codes; the backward uses the
/// quantized values in float (straight-through).
///
/// A batch normalization must follow an adder layer (its outputs are large
/// negative numbers); the ShiftAddNet zoo does that.
///
/// Cost meter, per call (F = N * out * Ho * Wo * in * k * k):
/// forward FP32: 2F fp32 adds (difference, accumulation) and F fp32 absolute
/// values; FIX8: F int8 adds (difference of 8-bit codes), F int8 absolute
/// values, F int32 adds (accumulation). Weight gradient: F fp32 adds and F
/// fp32 multiply-accumulates (+2F fp32 compares with the sign rule), plus
/// k multiply-accumulates and k multiplies for the scaling; input gradient:
/// F fp32 adds, 2F fp32 compares (the clamp) and F fp32 multiply-accumulates.
/// These are the hardware model's counts (SPEC 5.2), whatever factoring the
/// CPU kernels use.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/fixed_backward.hpp"
#include "frugal/layers/layer.hpp"
#include "frugal/layers/shift.hpp" // the column-group helpers shared with the shift layers
#include "frugal/tensor/im2col.hpp"
#include "frugal/tensor/kernels/adder.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

/// Number format of an adder layer's forward.
enum class adder_precision : std::uint8_t { fp32, fix8 };

/// Options of an adder layer.
struct adder_options {
    std::size_t stride = 1;
    std::size_t padding = 0;
    /// Adaptive learning-rate scaling eta (0: off).
    float eta = 0.2f;
    adder_precision precision = adder_precision::fp32;
    kernels::l1_weight_rule weight_rule = kernels::l1_weight_rule::difference;
    kernels::l1_input_rule input_rule = kernels::l1_input_rule::hardtanh;
    /// FIX8: running max|x| update in training, run = m * run + (1 - m) * batch (SPEC 0).
    float range_momentum = 0.1f;
    /// FIX8 backward: 0 runs the backward in float on the quantized values
    /// (straight-through); 2..8 rounds dY stochastically to that many bits
    /// (SPEC 4.2 `sbm`) and runs both backward products on integer codes.
    int error_bits = 0;
};

class adder_conv2d : public layer_base {
public:
    /// @param in, out  channels; @param kernel  square kernel size
    adder_conv2d(std::size_t in, std::size_t out, std::size_t kernel, adder_options o = {})
        : adder_conv2d(in, out, kernel, o, "adder_conv2d") {}

    /// A layer of another kind name (adder_dense builds on this one).
    adder_conv2d(std::size_t in, std::size_t out, std::size_t kernel, adder_options o, std::string kind)
        : layer_base(std::move(kind)), in_(in), out_(out), k_(kernel), opt_(o),
          w_(tensor4::from_shape({out, in, kernel, kernel})), dw_(tensor4::from_shape({out, in, kernel, kernel})),
          engine_(in, out, kernel, conv_options{o.stride, o.padding, false}) {
        if (in == 0 || out == 0 || kernel == 0 || o.stride == 0) {
            throw error(detail::concat("frugal::adder_conv2d: channels, kernel and stride must be positive (in ", in,
                                       ", out ", out, ", kernel ", kernel, ", stride ", o.stride, ")"));
        }
        if (!(o.eta >= 0.0f)) {
            throw error(detail::concat("frugal::adder_conv2d: eta must be >= 0, not ", o.eta));
        }
        detail::check_error_bits(o.error_bits, "frugal::adder_conv2d");
        if (o.error_bits != 0 && o.precision != adder_precision::fix8) {
            throw error("frugal::adder_conv2d: error_bits needs the FIX8 forward (precision fix8)");
        }
        w_.fill(0.0f);
        dw_.fill(0.0f);
    }

    [[nodiscard]] std::size_t in_channels() const noexcept { return in_; }
    [[nodiscard]] std::size_t out_channels() const noexcept { return out_; }
    [[nodiscard]] std::size_t kernel() const noexcept { return k_; }
    [[nodiscard]] const adder_options& options() const noexcept { return opt_; }
    [[nodiscard]] tensor4& weight() noexcept { return w_; }
    [[nodiscard]] const tensor4& weight() const noexcept { return w_; }
    /// The weight gradient as the optimizer sees it (after the scaling).
    [[nodiscard]] const tensor4& weight_grad() const noexcept { return dw_; }
    /// ||dW||_2 before the adaptive scaling, of the last backward.
    [[nodiscard]] double raw_grad_norm() const noexcept { return raw_norm_; }
    /// FIX8: the grid step of the last forward, and the running max|x|.
    [[nodiscard]] float fix8_scale() const noexcept { return scale_; }
    [[nodiscard]] float running_range() const noexcept { return run_range_; }

    /// W ~ N(0, 1) (SPEC 4.2).
    void reset_parameters(rng& g) {
        he_normal(w_, 2, g); // sd = sqrt(2 / 2) = 1
        run_range_ = 0.0f;
    }

    [[nodiscard]] conv_geometry geometry(const shape4& x) const {
        conv_geometry g{x.c, x.h, x.w, k_, opt_.stride, opt_.padding};
        if (x.c != in_ || !g.valid()) {
            throw shape_error(detail::concat(name(), ": ", kind(), "(", in_, "->", out_, ", k", k_, ", stride ",
                                             opt_.stride, ", pad ", opt_.padding, ") cannot take an input of shape ",
                                             to_string(x)));
        }
        return g;
    }

    [[nodiscard]] shape4 output_shape(const shape4& x) const {
        const conv_geometry g = geometry(x);
        return {x.n, out_, g.out_h(), g.out_w()};
    }

    const tensor4& forward(context& ctx, const tensor4& x) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        const shape4 xs = shape_of(x);
        const conv_geometry g = geometry(xs);
        ensure_shape(y_, {xs.n, out_, g.out_h(), g.out_w()});
        x_ = &x;
        const bool fix8 = opt_.precision == adder_precision::fix8;
        const float* xin = x.data();
        const float* win = w_.data();
        if (fix8) {
            quantize(ctx, x);
            xin = xq_.data();
            win = wq_.data();
        }
        const std::size_t p = g.cols(), kk = g.rows(), group = detail::column_group(p, xs.n);
        const std::size_t groups = (xs.n + group - 1) / group, xstride = g.c * g.h * g.w;
        const float inv = fix8 ? 1.0f / scale_ : 1.0f;
        parallel_chunks(groups, [&](std::size_t gb, std::size_t ge, int) {
            thread_local std::vector<float> col, out;
            thread_local std::vector<std::int32_t> codes, acc;
            col.resize(kk * group * p);
            out.resize(out_ * group * p);
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const std::size_t n0 = gi * group, cnt = std::min(group, xs.n - n0), ld = cnt * p;
                for (std::size_t s = 0; s < cnt; ++s) {
                    im2col(xin + (n0 + s) * xstride, g, col.data() + s * p, ld);
                }
                if (fix8) {
                    codes.resize(kk * ld);
                    acc.resize(out_ * ld);
                    for (std::size_t i = 0; i < kk * ld; ++i) {
                        codes[i] = static_cast<std::int32_t>(col[i] * inv); // exact: col holds code * scale
                    }
                    kernels::l1_distance<std::int32_t>(out_, ld, kk, wcode_.data(), kk, codes.data(), ld, acc.data(),
                                                       ld);
                    for (std::size_t i = 0; i < out_ * ld; ++i) {
                        out[i] = static_cast<float>(acc[i]) * scale_;
                    }
                } else {
                    kernels::l1_distance<float>(out_, ld, kk, win, kk, col.data(), ld, out.data(), ld);
                }
                detail::scatter_outputs(out.data(), ld, cnt, out_, p, y_.data() + n0 * out_ * p);
            }
        });
        if (m != nullptr) {
            const std::uint64_t f = static_cast<std::uint64_t>(xs.n) * out_ * p * kk;
            if (fix8) {
                m->unary(id(), phase::forward, op_kind::add, op_format::integer(8), f);
                m->unary(id(), phase::forward, op_kind::abs, op_format::integer(8), f);
                m->unary(id(), phase::forward, op_kind::add, op_format::integer(32), f);
                m->bytes(id(), phase::forward, x.size() + w_.size(), 4 * y_.size());
            } else {
                m->unary(id(), phase::forward, op_kind::add, fp32, 2 * f);
                m->unary(id(), phase::forward, op_kind::abs, fp32, f);
                m->bytes(id(), phase::forward, 4 * (x.size() + w_.size()), 4 * y_.size());
            }
        }
        return y_;
    }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        cost_meter* m = meter(ctx);
        const auto start = std::chrono::steady_clock::now();
        if (x_ == nullptr) {
            throw error(detail::concat(name(), ": backward called before forward"));
        }
        const tensor4& x = *x_;
        const shape4 xs = shape_of(x);
        const conv_geometry g = geometry(xs);
        expect_shape(shape_of(dy), shape_of(y_), (name() + ".backward").c_str());
        const bool need_dx = input_grad();
        if (need_dx) {
            ensure_shape(dx_, xs);
        }
        const bool fix8 = opt_.precision == adder_precision::fix8;
        if (fix8 && opt_.error_bits > 0) {
            backward_fixed(ctx, dy, x, g, start);
            return need_dx ? dx_ : empty_;
        }
        const float* xin = fix8 ? xq_.data() : x.data();
        const float* win = fix8 ? wq_.data() : w_.data();
        const std::size_t p = g.cols(), kk = g.rows(), group = detail::column_group(p, xs.n);
        const std::size_t groups = (xs.n + group - 1) / group, xstride = g.c * g.h * g.w;
        const std::size_t wsize = w_.size();
        const int threads = num_threads();
        // The full-difference rule is linear in B: dW = sum_j dY (B - W) = dY B^T - W * (sum_j dY),
        // and dY B^T is a convolution's weight gradient, run on conv2d's kernels.
        const bool by_conv = opt_.weight_rule == kernels::l1_weight_rule::difference;
        double conv_seconds = 0.0;
        if (by_conv) {
            const auto c0 = std::chrono::steady_clock::now();
            engine_.set_input_grad(false);
            engine_.assume_input(fix8 ? xq_ : x);
            context ec = ctx;
            ec.meter = nullptr;
            (void)engine_.backward(ec, dy);
            const std::size_t plane = p;
            channel_sums_.assign(out_, 0.0);
            for (std::size_t n = 0; n < xs.n; ++n) {
                for (std::size_t o = 0; o < out_; ++o) {
                    const float* d = dy.data() + (n * out_ + o) * plane;
                    double sum = 0.0;
                    for (std::size_t j = 0; j < plane; ++j) {
                        sum += d[j];
                    }
                    channel_sums_[o] += sum;
                }
            }
            const float* cg = engine_.weight_grad().data();
            for (std::size_t o = 0; o < out_; ++o) {
                const float so = static_cast<float>(channel_sums_[o]);
                for (std::size_t q = 0; q < kk; ++q) {
                    dw_.data()[o * kk + q] = cg[o * kk + q] - win[o * kk + q] * so;
                }
            }
            conv_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - c0).count();
        } else {
            partial_.assign(static_cast<std::size_t>(threads) * wsize, 0.0f);
        }
        detail::backward_split split;
        if (!by_conv || need_dx) {
            parallel_chunks(groups, [&](std::size_t gb, std::size_t ge, int thread) {
                thread_local std::vector<float> col, dyg, dcol;
                for (std::size_t gi = gb; gi < ge; ++gi) {
                    const auto t0 = std::chrono::steady_clock::now();
                    const std::size_t n0 = gi * group, cnt = std::min(group, xs.n - n0), ld = cnt * p;
                    col.resize(kk * ld);
                    dyg.resize(out_ * ld);
                    for (std::size_t s = 0; s < cnt; ++s) {
                        im2col(xin + (n0 + s) * xstride, g, col.data() + s * p, ld);
                    }
                    detail::gather_outputs(dy.data() + n0 * out_ * p, cnt, out_, p, dyg.data(), ld);
                    if (!by_conv) {
                        kernels::l1_weight_grad(out_, kk, ld, dyg.data(), ld, win, kk, col.data(), ld,
                                                partial_.data() + static_cast<std::size_t>(thread) * wsize, kk,
                                                opt_.weight_rule);
                    }
                    const auto t1 = std::chrono::steady_clock::now();
                    if (need_dx) {
                        dcol.resize(kk * ld);
                        kernels::l1_input_grad(kk, ld, out_, dyg.data(), ld, win, kk, col.data(), ld, dcol.data(),
                                               ld, opt_.input_rule);
                        detail::scatter_input_grads(dcol.data(), g, ld, cnt, p, dx_.data() + n0 * xstride);
                    }
                    split.add(thread, t0, t1); // (by_conv: the share comes from conv_seconds)
                }
            });
        }
        if (!by_conv) {
            std::fill(dw_.begin(), dw_.end(), 0.0f);
            for (int t = 0; t < threads; ++t) {
                const float* part = partial_.data() + static_cast<std::size_t>(t) * wsize;
                for (std::size_t i = 0; i < wsize; ++i) {
                    dw_.data()[i] += part[i];
                }
            }
        }
        adaptive_scaling();
        if (m != nullptr) {
            const std::uint64_t f = static_cast<std::uint64_t>(xs.n) * out_ * p * kk;
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            // by_conv: the convolution and the channel sums are the weight gradient's, the rest dX's
            const double share = by_conv ? std::min(1.0, conv_seconds / std::max(wall, 1e-12)) : split.share();
            m->unary(id(), phase::weight_gradient, op_kind::add, fp32, f);
            m->mac(id(), phase::weight_gradient, fp32, fp32, f + wsize);
            if (opt_.weight_rule == kernels::l1_weight_rule::sign) {
                m->unary(id(), phase::weight_gradient, op_kind::compare, fp32, 2 * f);
            }
            if (opt_.eta > 0.0f && raw_norm_ > 0.0) {
                m->unary(id(), phase::weight_gradient, op_kind::multiply, fp32, wsize);
            }
            m->bytes(id(), phase::weight_gradient, 4 * (x.size() + dy.size() + wsize), 4 * wsize);
            m->time(id(), phase::weight_gradient, wall * share);
            if (need_dx) {
                m->unary(id(), phase::backward_input, op_kind::add, fp32, f);
                m->unary(id(), phase::backward_input, op_kind::compare, fp32, 2 * f);
                m->mac(id(), phase::backward_input, fp32, fp32, f);
                m->bytes(id(), phase::backward_input, 4 * (x.size() + dy.size() + wsize), 4 * dx_.size());
                m->time(id(), phase::backward_input, wall * (1.0 - share));
            }
        }
        return need_dx ? dx_ : empty_;
    }

    void collect_parameters(std::vector<parameter>& ps) {
        add_parameter(ps, "weight", span_of(w_), span_of(dw_), param_role::weight, true);
    }

    void save(archive_writer& a) const {
        a.tag("adder_conv2d/1");
        a.u64(in_);
        a.u64(out_);
        a.u64(k_);
        a.u64(opt_.stride);
        a.u64(opt_.padding);
        a.u32(static_cast<std::uint32_t>(opt_.precision));
        a.tensor(w_);
        a.f32(run_range_);
    }
    void load(archive_reader& a) {
        a.expect("adder_conv2d/1");
        const std::size_t at = a.offset();
        const std::uint64_t in = a.u64(), out = a.u64(), k = a.u64(), s = a.u64(), pad = a.u64();
        const std::uint32_t prec = a.u32();
        if (in != in_ || out != out_ || k != k_ || s != opt_.stride || pad != opt_.padding ||
            prec != static_cast<std::uint32_t>(opt_.precision)) {
            a.fail(at, detail::concat(name(), ": the checkpoint holds adder_conv2d(", in, "->", out, ", k", k,
                                      ", stride ", s, ", pad ", pad, prec != 0 ? ", fix8" : ", fp32",
                                      ") but the model has adder_conv2d(", in_, "->", out_, ", k", k_, ", stride ",
                                      opt_.stride, ", pad ", opt_.padding,
                                      opt_.precision == adder_precision::fix8 ? ", fix8)" : ", fp32)"));
        }
        a.tensor(w_, name() + ".weight");
        run_range_ = a.f32();
    }

private:
    /// Adaptive learning-rate scaling of dW (before the optimizer's momentum and decay).
    void adaptive_scaling() {
        double sq = 0.0;
        for (const float v : dw_) {
            sq += static_cast<double>(v) * v;
        }
        raw_norm_ = std::sqrt(sq);
        if (opt_.eta > 0.0f && raw_norm_ > 0.0) {
            const auto factor = static_cast<float>(static_cast<double>(opt_.eta) *
                                                   std::sqrt(static_cast<double>(w_.size())) / raw_norm_);
            for (auto& v : dw_) {
                v *= factor;
            }
        }
    }

    /// FIX8 backward on integer codes (error_bits > 0). With e the error
    /// codes (grid se), x and w the forward's codes (grid s):
    /// - dW = se * s * sum_j e * (x - w), run as the int8 product
    ///   sum_j e * (x + 128) - (128 + w) * sum_j e (exact, int64 over groups);
    /// - dX = se * unit * sum_o e * g, g = clamp(w - x, -c, c) in codes with
    ///   c = 1 / s and unit = s when s <= 1 (HardTanh at +-1.0), or g =
    ///   sign(w - x) and unit = 1 when s > 1 (every nonzero difference is
    ///   then beyond +-1) or with the sign rule. The sums run in float lanes
    ///   on integer values, in row chunks that keep every partial sum below
    ///   2^24, so they are exact too.
    void backward_fixed(context& ctx, const tensor4& dy, const tensor4& x, const conv_geometry& g,
                        std::chrono::steady_clock::time_point start) {
        cost_meter* m = meter(ctx);
        const shape4 xs = shape_of(x);
        const bool need_dx = input_grad();
        const int bits = opt_.error_bits;
        const float emax = detail::max_abs_finite(dy.data(), dy.size(), name() + ".backward", "the gradient dY");
        const float se = detail::error_step(emax, bits); // a power of two
        const detail::grid eg = detail::error_code_grid(se, bits);
        const bool sign_g = opt_.input_rule == kernels::l1_input_rule::sign || scale_ > 1.0f;
        const float clip = sign_g ? 1.0f : 1.0f / scale_; // a power of two: scale_ is one
        const float unit = sign_g ? 1.0f : scale_;
        const kernels::l1_input_rule rule = sign_g ? kernels::l1_input_rule::sign : kernels::l1_input_rule::hardtanh;
        const float gmax = sign_g ? 1.0f : std::min(clip, 254.0f);
        // rows per call whose sums stay below 2^24: rows * qmax * gmax < 2^24
        const auto chunk = std::max<std::size_t>(
            1, static_cast<std::size_t>(16777215.0f / (detail::symmetric_qmax(bits) * gmax)));
        const std::size_t p = g.cols(), kk = g.rows(), group = detail::column_group(p, xs.n);
        const std::size_t groups = (xs.n + group - 1) / group, xstride = g.c * g.h * g.w;
        const std::size_t wsize = w_.size();
        const int threads = num_threads();
        acc_.assign(static_cast<std::size_t>(threads) * wsize, 0);
        wcode_f_.resize(wsize);
        for (std::size_t i = 0; i < wsize; ++i) {
            wcode_f_[i] = static_cast<float>(wcode_[i]);
        }
        const float inv = 1.0f / scale_;
        const std::uint64_t seed = ctx.random();
        detail::backward_split split;
        parallel_chunks(groups, [&](std::size_t gb, std::size_t ge, int thread) {
            thread_local std::vector<float> col, dyg, ef, dcol;
            thread_local std::vector<double> dsum;
            thread_local std::vector<std::uint8_t> u;
            thread_local std::vector<std::int8_t> et;
            thread_local detail::int8_wgrad_scratch scratch;
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const auto t0 = std::chrono::steady_clock::now();
                const std::size_t n0 = gi * group, cnt = std::min(group, xs.n - n0), ld = cnt * p;
                col.resize(kk * ld);
                dyg.resize(out_ * ld);
                ef.resize(out_ * ld);
                et.resize(out_ * ld);
                u.resize(kk * ld);
                for (std::size_t s = 0; s < cnt; ++s) {
                    im2col(xq_.data() + (n0 + s) * xstride, g, col.data() + s * p, ld);
                }
                for (std::size_t i = 0; i < kk * ld; ++i) {
                    col[i] *= inv; // the codes, exactly (scale_ is a power of two)
                    u[i] = static_cast<std::uint8_t>(static_cast<std::int32_t>(col[i]) + 128);
                }
                detail::gather_outputs(dy.data() + n0 * out_ * p, cnt, out_, p, dyg.data(), ld);
                rng r(seed, gi);
                detail::error_codes(dyg.data(), out_, ld, eg, r, ef.data(), et.data());
                detail::int8_weight_grad(out_, kk, ld, et.data(), u.data(), 128, wcode_.data(),
                                         acc_.data() + static_cast<std::size_t>(thread) * wsize, scratch);
                const auto t1 = std::chrono::steady_clock::now();
                if (need_dx) {
                    dcol.resize(kk * ld);
                    if (chunk >= out_) {
                        kernels::l1_input_grad(kk, ld, out_, ef.data(), ld, wcode_f_.data(), kk, col.data(), ld,
                                               dcol.data(), ld, rule, clip);
                        for (auto& v : dcol) {
                            v *= se * unit;
                        }
                    } else {
                        dsum.assign(kk * ld, 0.0);
                        for (std::size_t o0 = 0; o0 < out_; o0 += chunk) {
                            const std::size_t rows = std::min(chunk, out_ - o0);
                            kernels::l1_input_grad(kk, ld, rows, ef.data() + o0 * ld, ld, wcode_f_.data() + o0 * kk,
                                                   kk, col.data(), ld, dcol.data(), ld, rule, clip);
                            for (std::size_t i = 0; i < kk * ld; ++i) {
                                dsum[i] += dcol[i];
                            }
                        }
                        for (std::size_t i = 0; i < kk * ld; ++i) {
                            dcol[i] = static_cast<float>(dsum[i] * static_cast<double>(se * unit));
                        }
                    }
                    detail::scatter_input_grads(dcol.data(), g, ld, cnt, p, dx_.data() + n0 * xstride);
                }
                split.add(thread, t0, t1);
            }
        });
        const double wscale = static_cast<double>(se) * scale_;
        for (std::size_t i = 0; i < wsize; ++i) {
            std::int64_t v = 0;
            for (int t = 0; t < threads; ++t) {
                v += acc_[static_cast<std::size_t>(t) * wsize + i];
            }
            dw_.data()[i] = static_cast<float>(static_cast<double>(v) * wscale);
        }
        adaptive_scaling();
        if (m != nullptr) {
            const std::uint64_t f = static_cast<std::uint64_t>(xs.n) * out_ * p * kk;
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            const double share = split.share();
            const op_format ef = op_format::integer(bits), i8 = op_format::integer(8), i32 = op_format::integer(32);
            // e * x (x an 8-bit code), then the weight term (w + 128) * sum e once per weight; the
            // scales se, s and se * unit are powers of two: applying them is an exponent adjustment
            // of the integer result's conversion to float (not counted, like the forward's)
            m->mac(id(), phase::weight_gradient, ef, i8, f);
            m->unary(id(), phase::weight_gradient, op_kind::multiply, i32, wsize);
            if (opt_.eta > 0.0f && raw_norm_ > 0.0) {
                m->mac(id(), phase::weight_gradient, fp32, fp32, wsize);
                m->unary(id(), phase::weight_gradient, op_kind::multiply, fp32, wsize);
            }
            m->bytes(id(), phase::weight_gradient, x.size() + dy.size() + wsize, 4 * wsize);
            m->time(id(), phase::weight_gradient, wall * share);
            if (need_dx) {
                // per term: the difference of two 8-bit codes, the clamp (two compares), e * g
                const op_format gf =
                    op_format::integer(sign_g ? 2 : detail::signed_bits(static_cast<std::int64_t>(gmax)));
                m->unary(id(), phase::backward_input, op_kind::add, i8, f);
                m->unary(id(), phase::backward_input, op_kind::compare, op_format::integer(9), 2 * f);
                m->mac(id(), phase::backward_input, ef, gf, f);
                m->bytes(id(), phase::backward_input, x.size() + dy.size() + wsize, 4 * dx_.size());
                m->time(id(), phase::backward_input, wall * (1.0 - share));
            }
        }
    }

    /// FIX8: the shared grid, and x and W rounded to it (xq_, wq_ as float
    /// values code * scale, wcode_ as int32 codes).
    void quantize(context& ctx, const tensor4& x) {
        float xmax = 0.0f, wmax = 0.0f;
        bool finite = true;
        for (const float v : x) {
            finite = finite && std::isfinite(v);
            xmax = std::max(xmax, std::fabs(v));
        }
        for (const float v : w_) {
            finite = finite && std::isfinite(v);
            wmax = std::max(wmax, std::fabs(v));
        }
        if (!finite) {
            throw numeric_error(detail::concat(name(), ": FIX8 adder input or weight is not finite"));
        }
        if (ctx.training() || run_range_ == 0.0f) {
            run_range_ = run_range_ == 0.0f ? xmax
                                            : opt_.range_momentum * run_range_ + (1.0f - opt_.range_momentum) * xmax;
        }
        const float xr = ctx.training() ? xmax : run_range_;
        const float range = std::max({xr, wmax, 1e-30f});
        scale_ = std::ldexp(1.0f, static_cast<int>(std::ceil(std::log2(range / 127.0f))));
        const float inv = 1.0f / scale_;
        auto code = [&](float v) { return std::clamp(std::nearbyint(v * inv), -127.0f, 127.0f); };
        ensure_shape(xq_, shape_of(x));
        for (std::size_t i = 0; i < x.size(); ++i) {
            xq_.data()[i] = code(x.data()[i]) * scale_;
        }
        if (wq_.shape() != w_.shape()) {
            wq_ = tensor4::from_shape({out_, in_, k_, k_});
        }
        wcode_.resize(w_.size());
        for (std::size_t i = 0; i < w_.size(); ++i) {
            const float c = code(w_.data()[i]);
            wcode_[i] = static_cast<std::int32_t>(c);
            wq_.data()[i] = c * scale_;
        }
    }

    std::size_t in_, out_, k_;
    adder_options opt_;
    tensor4 w_, dw_;
    tensor4 y_, dx_, empty_, xq_, wq_;
    std::vector<std::int32_t> wcode_;
    std::vector<float> wcode_f_;
    std::vector<std::int64_t> acc_;
    const tensor4* x_ = nullptr;
    std::vector<float> partial_;
    /// The full-difference weight gradient's dY B^T: a convolution's weight gradient.
    conv2d engine_;
    std::vector<double> channel_sums_;
    double raw_norm_ = 0.0;
    float scale_ = 1.0f, run_range_ = 0.0f;
};

static_assert(layer<adder_conv2d>);

/// A fully connected adder layer, y[n][o] = -sum_i |x[n][i] - W[o][i]|: a 1x1
/// adder convolution of the flattened input. Accepts any N x C x H x W input
/// with C*H*W == in, produces N x out x 1 x 1.
class adder_dense {
public:
    adder_dense(std::size_t in, std::size_t out, adder_options o = {})
        : in_(in), out_(out), conv_(in, out, 1, with_unit_window(o), "adder_dense") {}

    [[nodiscard]] std::size_t in_features() const noexcept { return in_; }
    [[nodiscard]] std::size_t out_features() const noexcept { return out_; }
    /// The underlying 1x1 adder convolution (weights [out, in, 1, 1]).
    [[nodiscard]] adder_conv2d& core() noexcept { return conv_; }
    [[nodiscard]] const adder_conv2d& core() const noexcept { return conv_; }
    [[nodiscard]] const std::string& kind() const noexcept { return conv_.kind(); }
    [[nodiscard]] const std::string& name() const noexcept { return conv_.name(); }
    void set_name(std::string n) { conv_.set_name(std::move(n)); }
    void set_input_grad(bool on) { conv_.set_input_grad(on); }
    void reset_parameters(rng& g) { conv_.reset_parameters(g); }

    [[nodiscard]] shape4 output_shape(const shape4& x) const {
        check(x);
        return {x.n, out_, 1, 1};
    }
    const tensor4& forward(context& ctx, const tensor4& x) {
        const shape4 xs = shape_of(x);
        check(xs);
        in_shape_ = xs;
        ensure_shape(flat_, {xs.n, in_, 1, 1});
        std::copy(x.begin(), x.end(), flat_.begin());
        return conv_.forward(ctx, flat_);
    }
    const tensor4& backward(context& ctx, const tensor4& dy) {
        const tensor4& d = conv_.backward(ctx, dy);
        if (d.size() == 0) {
            return d;
        }
        ensure_shape(dx_, in_shape_);
        std::copy(d.begin(), d.end(), dx_.begin());
        return dx_;
    }
    void collect_parameters(std::vector<parameter>& ps) { conv_.collect_parameters(ps); }
    void save(archive_writer& a) const { conv_.save(a); }
    void load(archive_reader& a) { conv_.load(a); }

private:
    static adder_options with_unit_window(adder_options o) {
        o.stride = 1;
        o.padding = 0;
        return o;
    }
    void check(const shape4& x) const {
        if (x.c * x.h * x.w != in_) {
            throw shape_error(detail::concat(conv_.name(), ": adder_dense(", in_, "->", out_, ") needs ", in_,
                                             " features per sample, got an input of shape ", to_string(x)));
        }
    }

    std::size_t in_, out_;
    adder_conv2d conv_;
    tensor4 flat_, dx_;
    shape4 in_shape_;
};

static_assert(layer<adder_dense>);

} // namespace frugal

#endif
