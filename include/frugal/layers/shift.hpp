#ifndef FRUGAL_LAYERS_SHIFT_HPP
#define FRUGAL_LAYERS_SHIFT_HPP

/// @file
/// ShiftAddNet's bit-shift layers, `shift_conv2d` and `shift_dense`
/// (DeepShift "PS" parameterization, SPEC 4.2).
///
/// Two trainable tensors of the weight's shape: the shift P and the sign S.
/// The effective weight is `W = sign(S) * 2^round(P)` with P clamped in place
/// to [-(2^(b-1) - 2), 0] (b = weight_bits, 5 by default: [-14, 0]) and a
/// ternary sign in {-1, 0, +1}: `sign(round(S))` (round half to even, so
/// |S| <= 0.5 gives a zero weight), or the thresholded sign (-1 below -t,
/// +1 above t, else 0).
///
/// Forward: by default the inputs are rounded to fixed point, 16 integer and
/// 16 fractional bits, and the product runs in integers: each nonzero weight
/// is one left shift and one addition (or subtraction) into an int64
/// accumulator, which holds the exact sum (zero weights are skipped). The
/// kernel groups a row's weights by exponent: when the inputs are small
/// enough for every group's sum to fit in 32 bits (the layer checks; else it
/// takes the plain int64 kernel), the group is summed in int32 lanes and
/// shifted once, the same exact integer. The float path multiplies by the
/// exact power of two instead.
///
/// Backward (every rounding, sign and clamp is straight-through):
/// dL/dW = dY X^T (float), dL/dS = dL/dW (unscaled),
/// dL/dP = dL/dW * sign * 2^round(P) * ln 2, and dX = W^T dY. Both products
/// run on conv2d's float kernels (the weights are exact powers of two, so
/// this is the float path's arithmetic); a layer with frozen shifts computes
/// dX alone on the float shift kernel, skipping zero weights. P and S have
/// no weight decay. `freeze_sign` keeps S fixed (not a parameter);
/// `freeze_shift` keeps both fixed (the "fixed shift" ShiftAddNet: no
/// weight-gradient work at all).
///
/// Cost meter (counts of executed operations, per call): forward, per
/// nonzero weight and output pixel, one shift and one add, at int32 / int64
/// (fixed point: the 32-bit input is shifted, the sum is kept in 64 bits) or
/// fp32 (float path): the hardware model's count (SPEC 5.2), whatever
/// grouping the CPU kernel uses; backward to inputs the same in fp32 (float path on dY);
/// weight gradient fp32 multiply-accumulates, plus the dP/dS mapping.

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <string>
#include <vector>

#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/fixed_backward.hpp"
#include "frugal/layers/layer.hpp"
#include "frugal/tensor/im2col.hpp"
#include "frugal/tensor/kernels/gemm.hpp"
#include "frugal/tensor/kernels/shift.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

/// How the ternary sign is read from S.
enum class sign_rule : std::uint8_t {
    round,    ///< sign(round(S)): zero for |S| <= 0.5
    threshold ///< -1 if S < -t, +1 if S > t, else 0
};

/// Arithmetic of the shift layer's forward product.
enum class shift_arithmetic : std::uint8_t {
    fixed,   ///< inputs rounded to fixed point, integer shifts and adds (exact)
    floating ///< float inputs times exact powers of two
};

/// Options of a shift layer.
struct shift_options {
    std::size_t stride = 1;
    std::size_t padding = 0;
    /// Bits of a shift weight: P in [-(2^(b-1) - 2), 0] (5: [-14, 0]).
    int weight_bits = 5;
    sign_rule sign = sign_rule::round;
    float threshold = 0.3f; ///< t of sign_rule::threshold
    bool freeze_sign = false;
    bool freeze_shift = false;
    shift_arithmetic arithmetic = shift_arithmetic::fixed;
    int input_int_bits = 16;  ///< fixed point of the inputs (sign included)
    int input_frac_bits = 16;
    /// Backward arithmetic: 0 runs it in float (as described above); 2..8
    /// runs it in fixed point: dY rounded stochastically to that many bits
    /// on a per-batch grid, dX = W^T dY as integer shifts and adds (exact),
    /// dW = dY X^T as an exact int8 product with X rounded to 8-bit codes.
    int error_bits = 0;
};

namespace detail {
/// Images per group of a column product: enough for >= 256 columns.
[[nodiscard]] inline std::size_t column_group(std::size_t cols, std::size_t n) noexcept {
    return std::max<std::size_t>(1, std::min(n, (256 + cols - 1) / cols));
}
/// dst[o][s*p + j] = src[s][o][j] for cnt images of out x p (NCHW to a group matrix).
inline void gather_outputs(const float* src, std::size_t cnt, std::size_t out, std::size_t p, float* dst,
                           std::size_t ld) noexcept {
    for (std::size_t s = 0; s < cnt; ++s) {
        for (std::size_t o = 0; o < out; ++o) {
            std::copy(src + (s * out + o) * p, src + (s * out + o + 1) * p, dst + o * ld + s * p);
        }
    }
}
/// Column gradients of `cnt` images (a group matrix, leading dimension ld,
/// p columns per image) summed back into their images' input gradients.
inline void scatter_input_grads(const float* dcol, const conv_geometry& g, std::size_t ld, std::size_t cnt,
                                std::size_t p, float* dx) {
    const std::size_t xstride = g.c * g.h * g.w;
    for (std::size_t s = 0; s < cnt; ++s) {
        float* dxs = dx + s * xstride;
        std::fill(dxs, dxs + xstride, 0.0f);
        col2im(dcol + s * p, g, ld, dxs);
    }
}
/// Wall time of a backward split between its weight-gradient and
/// input-gradient parts, as measured by thread 0 (for the cost meter).
struct backward_split {
    double wgrad = 0.0, dx = 0.0;
    void add(int thread, std::chrono::steady_clock::time_point t0, std::chrono::steady_clock::time_point t1) {
        if (thread == 0) {
            wgrad += std::chrono::duration<double>(t1 - t0).count();
            dx += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
        }
    }
    [[nodiscard]] double share() const noexcept { return wgrad + dx > 0.0 ? wgrad / (wgrad + dx) : 1.0; }
};
/// The inverse of gather_outputs.
inline void scatter_outputs(const float* src, std::size_t ld, std::size_t cnt, std::size_t out, std::size_t p,
                            float* dst) noexcept {
    for (std::size_t s = 0; s < cnt; ++s) {
        for (std::size_t o = 0; o < out; ++o) {
            std::copy(src + o * ld + s * p, src + o * ld + (s + 1) * p, dst + (s * out + o) * p);
        }
    }
}
} // namespace detail

class shift_conv2d : public layer_base {
public:
    /// @param in, out  channels; @param kernel  square kernel size
    shift_conv2d(std::size_t in, std::size_t out, std::size_t kernel, shift_options o = {})
        : shift_conv2d(in, out, kernel, o, "shift_conv2d") {}

    /// A layer of another kind name (shift_dense builds on this one).
    shift_conv2d(std::size_t in, std::size_t out, std::size_t kernel, shift_options o, std::string kind)
        : layer_base(std::move(kind)), in_(in), out_(out), k_(kernel), opt_(o),
          p_(tensor4::from_shape({out, in, kernel, kernel})), s_(tensor4::from_shape({out, in, kernel, kernel})),
          dp_(tensor4::from_shape({out, in, kernel, kernel})), ds_(tensor4::from_shape({out, in, kernel, kernel})),
          w_(tensor4::from_shape({out, in, kernel, kernel})), engine_(in, out, kernel, conv_options{o.stride, o.padding, false}) {
        if (in == 0 || out == 0 || kernel == 0 || o.stride == 0) {
            throw error(detail::concat("frugal::shift_conv2d: channels, kernel and stride must be positive (in ", in,
                                       ", out ", out, ", kernel ", kernel, ", stride ", o.stride, ")"));
        }
        if (o.weight_bits < 2 || o.weight_bits > 6) {
            throw error(detail::concat("frugal::shift_conv2d: weight_bits must be in [2, 6], not ", o.weight_bits));
        }
        detail::check_error_bits(o.error_bits, "frugal::shift_conv2d");
        if (o.input_frac_bits < 0 || o.input_int_bits < 1 || o.input_int_bits + o.input_frac_bits > 32) {
            throw error(detail::concat("frugal::shift_conv2d: the input format fixed<", o.input_int_bits, ", ",
                                       o.input_frac_bits, "> must have 1 to 32 bits"));
        }
        // exactness of the int64 accumulator: input bits + shift range + log2(terms) <= 63
        const std::size_t terms = in * kernel * kernel;
        int log_terms = 0;
        while ((std::size_t{1} << log_terms) < terms) {
            ++log_terms;
        }
        if (o.input_int_bits + o.input_frac_bits + max_shift() + log_terms > 63) {
            throw error(detail::concat("frugal::shift_conv2d: ", terms, " terms of ",
                                       o.input_int_bits + o.input_frac_bits, "-bit inputs shifted by up to ", max_shift(),
                                       " bits may overflow the 64-bit accumulator"));
        }
        p_.fill(0.0f);
        s_.fill(1.0f);
        dp_.fill(0.0f);
        ds_.fill(0.0f);
        refresh_weights();
    }

    [[nodiscard]] std::size_t in_channels() const noexcept { return in_; }
    [[nodiscard]] std::size_t out_channels() const noexcept { return out_; }
    [[nodiscard]] std::size_t kernel() const noexcept { return k_; }
    [[nodiscard]] const shift_options& options() const noexcept { return opt_; }
    /// Largest right shift: 2^(b-1) - 2 (14 for 5 bits).
    [[nodiscard]] int max_shift() const noexcept { return (1 << (opt_.weight_bits - 1)) - 2; }
    /// Latent shift P and sign S (the trainable tensors) and their gradients.
    [[nodiscard]] tensor4& shift() noexcept { return p_; }
    [[nodiscard]] tensor4& sign() noexcept { return s_; }
    [[nodiscard]] const tensor4& shift() const noexcept { return p_; }
    [[nodiscard]] const tensor4& sign() const noexcept { return s_; }
    [[nodiscard]] const tensor4& shift_grad() const noexcept { return dp_; }
    [[nodiscard]] const tensor4& sign_grad() const noexcept { return ds_; }
    /// dL/dW of the last backward (before the mapping to P and S).
    [[nodiscard]] const std::vector<float>& weight_grad() const noexcept { return dw_; }
    /// The effective weights sign * 2^round(P) of the last forward (or of
    /// refresh_weights()).
    [[nodiscard]] const tensor4& weight() const noexcept { return w_; }
    /// Number of nonzero effective weights.
    [[nodiscard]] std::size_t nonzeros() const noexcept { return packed_.nonzeros(); }

    /// Clamps P in place and recomputes the effective weights and the packed
    /// kernels' matrices (forward does this itself).
    void refresh_weights() {
        const float lo = static_cast<float>(-max_shift());
        const std::size_t n = p_.size(), kk = in_ * k_ * k_;
        sign_code_.resize(n);
        exp_code_.resize(n);
        for (std::size_t i = 0; i < n; ++i) {
            float& p = p_.data()[i];
            p = std::clamp(p, lo, 0.0f);
            const float e = std::nearbyint(p);
            const float s = s_.data()[i];
            std::int8_t sg = 0;
            if (opt_.sign == sign_rule::round) {
                const float r = std::nearbyint(s);
                sg = r > 0.0f ? 1 : (r < 0.0f ? -1 : 0);
            } else {
                sg = s > opt_.threshold ? 1 : (s < -opt_.threshold ? -1 : 0);
            }
            sign_code_[i] = sg;
            exp_code_[i] = static_cast<std::int8_t>(e);
            w_.data()[i] = static_cast<float>(sg) * std::ldexp(1.0f, static_cast<int>(e));
        }
        std::copy(w_.begin(), w_.end(), engine_.weight().begin());
        packed_.pack(out_, kk, sign_code_.data(), exp_code_.data(), kk);
        packed_t_.pack(out_, kk, sign_code_.data(), exp_code_.data(), kk, true);
    }

    /// P ~ U(-max_shift, 0), S ~ U(-1, 1) (SPEC 4.2).
    void reset_parameters(rng& g) {
        const float range = static_cast<float>(max_shift());
        for (auto& v : p_) {
            v = -range * g.uniform();
        }
        for (auto& v : s_) {
            v = 2.0f * g.uniform() - 1.0f;
        }
        refresh_weights();
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
        refresh_weights();
        ensure_shape(y_, {xs.n, out_, g.out_h(), g.out_w()});
        x_ = &x;
        const std::size_t p = g.cols(), kk = g.rows(), group = detail::column_group(p, xs.n);
        const std::size_t groups = (xs.n + group - 1) / group, xstride = g.c * g.h * g.w;
        const bool fixed = opt_.arithmetic == shift_arithmetic::fixed;
        const int frac = opt_.input_frac_bits, bits = opt_.input_int_bits + opt_.input_frac_bits;
        std::atomic<bool> finite{true};
        parallel_chunks(groups, [&](std::size_t gb, std::size_t ge, int) {
            thread_local std::vector<float> col, out;
            thread_local std::vector<std::int64_t> raw, acc;
            thread_local std::vector<std::int32_t> raw32;
            col.resize(kk * group * p);
            out.resize(out_ * group * p);
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const std::size_t n0 = gi * group, cnt = std::min(group, xs.n - n0), ld = cnt * p;
                for (std::size_t s = 0; s < cnt; ++s) {
                    im2col(x.data() + (n0 + s) * xstride, g, col.data() + s * p, ld);
                }
                if (fixed) {
                    raw32.resize(kk * ld);
                    acc.resize(out_ * ld);
                    const std::int64_t most = kernels::to_fixed_raw32(col.data(), kk * ld, frac, bits, raw32.data());
                    if (most < 0) {
                        finite.store(false, std::memory_order_relaxed);
                    } else if (static_cast<double>(most) * static_cast<double>(packed_.max_run) < 0x1.0p31) {
                        // every run's sum fits in int32: the same exact integers, fewer instructions
                        kernels::shift_fixed32(packed_, -max_shift(), ld, raw32.data(), ld, acc.data(), ld);
                    } else {
                        raw.resize(kk * ld);
                        (void)kernels::to_fixed_raw(col.data(), kk * ld, frac, bits, raw.data());
                        kernels::shift_fixed(packed_, -max_shift(), ld, raw.data(), ld, acc.data(), ld);
                    }
                    kernels::from_fixed_raw(acc.data(), out_ * ld, frac + max_shift(), out.data());
                } else {
                    kernels::shift_float(packed_, ld, col.data(), ld, out.data(), ld);
                }
                detail::scatter_outputs(out.data(), ld, cnt, out_, p, y_.data() + n0 * out_ * p);
            }
        });
        if (!finite.load()) {
            throw numeric_error(detail::concat(name(), ": the input holds a NaN (fixed-point inputs cannot)"));
        }
        if (m != nullptr) {
            const std::uint64_t ops = static_cast<std::uint64_t>(xs.n) * p * packed_.nonzeros();
            const op_format in = fixed ? op_format::integer(bits) : fp32;
            const op_format acc = fixed ? op_format::integer(64) : fp32;
            m->unary(id(), phase::forward, op_kind::shift, in, ops);
            m->unary(id(), phase::forward, op_kind::add, acc, ops);
            m->bytes(id(), phase::forward, 4 * x.size() + 2 * p_.size(), 4 * y_.size());
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
        const bool need_dw = !opt_.freeze_shift;
        if (need_dx && (opt_.error_bits > 0 || !need_dw)) { // the float path with weights returns the engine's
            ensure_shape(dx_, xs);
        }
        if (opt_.error_bits > 0) {
            backward_fixed(ctx, dy, x, g, start);
            return need_dx ? dx_ : empty_;
        }
        const std::size_t p = g.cols(), kk = g.rows(), wsize = out_ * kk;
        if (!need_dw) {
            // frozen shifts: no weight gradient, dX = W^T dY on the float shift kernel (zeros skipped)
            const std::size_t group = detail::column_group(p, xs.n);
            const std::size_t groups = (xs.n + group - 1) / group, xstride = g.c * g.h * g.w;
            if (need_dx) {
                parallel_chunks(groups, [&](std::size_t gb, std::size_t ge, int) {
                    thread_local std::vector<float> dyg, dcol;
                    for (std::size_t gi = gb; gi < ge; ++gi) {
                        const std::size_t n0 = gi * group, cnt = std::min(group, xs.n - n0), ld = cnt * p;
                        dyg.resize(out_ * ld);
                        detail::gather_outputs(dy.data() + n0 * out_ * p, cnt, out_, p, dyg.data(), ld);
                        dcol.resize(kk * ld);
                        kernels::shift_float(packed_t_, ld, dyg.data(), ld, dcol.data(), ld);
                        detail::scatter_input_grads(dcol.data(), g, ld, cnt, p, dx_.data() + n0 * xstride);
                    }
                });
            }
            if (m != nullptr && need_dx) {
                const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
                record_backward_input(m, xs, p, dy.size(), wall);
            }
            return need_dx ? dx_ : empty_;
        }
        // dW = dY X^T and dX = W^T dY on the convolution's kernels, X as the forward multiplied it
        const tensor4* xin = &x;
        if (opt_.arithmetic == shift_arithmetic::fixed) {
            ensure_shape(xr_, xs);
            kernels::round_to_fixed(x.data(), x.size(), opt_.input_frac_bits, opt_.input_int_bits + opt_.input_frac_bits,
                                    xr_.data());
            xin = &xr_;
        }
        engine_.set_input_grad(need_dx);
        engine_.assume_input(*xin);
        cost_meter own; // the engine's phase times, to split this layer's wall time
        context ec = ctx;
        ec.meter = m != nullptr ? &own : nullptr;
        const tensor4& dx = engine_.backward(ec, dy);
        dw_.assign(engine_.weight_grad().begin(), engine_.weight_grad().end());
        map_weight_grad();
        if (m != nullptr) {
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            double tw = 0.0, tx = 0.0;
            for (const auto& l : own.layers()) {
                tw += l[phase::weight_gradient].seconds;
                tx += l[phase::backward_input].seconds;
            }
            const double share = tw + tx > 0.0 ? tw / (tw + tx) : 1.0;
            m->mac(id(), phase::weight_gradient, fp32, fp32, static_cast<std::uint64_t>(xs.n) * out_ * kk * p);
            m->unary(id(), phase::weight_gradient, op_kind::multiply, fp32, 2 * wsize);
            m->bytes(id(), phase::weight_gradient, 4 * (x.size() + dy.size()), 4 * 2 * wsize);
            m->time(id(), phase::weight_gradient, wall * share);
            if (need_dx) {
                record_backward_input(m, xs, p, dy.size(), wall * (1.0 - share));
            }
        }
        return need_dx ? dx : empty_;
    }

    void collect_parameters(std::vector<parameter>& ps) {
        if (opt_.freeze_shift) {
            return;
        }
        add_parameter(ps, "shift", span_of(p_), span_of(dp_), param_role::other, false);
        if (!opt_.freeze_sign) {
            add_parameter(ps, "sign", span_of(s_), span_of(ds_), param_role::other, false);
        }
    }

    void save(archive_writer& a) const {
        a.tag("shift_conv2d/1");
        a.u64(in_);
        a.u64(out_);
        a.u64(k_);
        a.u64(opt_.stride);
        a.u64(opt_.padding);
        a.u32(static_cast<std::uint32_t>(opt_.weight_bits));
        a.tensor(p_);
        a.tensor(s_);
    }
    void load(archive_reader& a) {
        a.expect("shift_conv2d/1");
        const std::size_t at = a.offset();
        const std::uint64_t in = a.u64(), out = a.u64(), k = a.u64(), s = a.u64(), pad = a.u64();
        const std::uint32_t bits = a.u32();
        if (in != in_ || out != out_ || k != k_ || s != opt_.stride || pad != opt_.padding ||
            bits != static_cast<std::uint32_t>(opt_.weight_bits)) {
            a.fail(at, detail::concat(name(), ": the checkpoint holds shift_conv2d(", in, "->", out, ", k", k,
                                      ", stride ", s, ", pad ", pad, ", ", bits, " bits) but the model has shift_conv2d(",
                                      in_, "->", out_, ", k", k_, ", stride ", opt_.stride, ", pad ", opt_.padding, ", ",
                                      opt_.weight_bits, " bits)"));
        }
        a.tensor(p_, name() + ".shift");
        a.tensor(s_, name() + ".sign");
        refresh_weights();
    }

private:
    /// The meter's record of the float backward to the inputs: per nonzero weight and input-gradient
    /// pixel one shift and one add in fp32 (the hardware model's count, SPEC 5.2).
    void record_backward_input(cost_meter* m, const shape4& xs, std::size_t p, std::size_t dy_size, double seconds) {
        const std::uint64_t ops = static_cast<std::uint64_t>(xs.n) * p * packed_t_.nonzeros();
        m->unary(id(), phase::backward_input, op_kind::shift, fp32, ops);
        m->unary(id(), phase::backward_input, op_kind::add, fp32, ops);
        m->bytes(id(), phase::backward_input, 4 * dy_size + 2 * p_.size(), 4 * xs.size());
        m->time(id(), phase::backward_input, seconds);
    }

    /// Straight-through: dS = dW, dP = dW * sign * 2^round(P) * ln 2 = dW * W * ln 2.
    void map_weight_grad() {
        constexpr float ln2 = 0.693147180559945309f;
        for (std::size_t i = 0; i < dw_.size(); ++i) {
            ds_.data()[i] = opt_.freeze_sign ? 0.0f : dw_[i];
            dp_.data()[i] = dw_[i] * w_.data()[i] * ln2;
        }
    }

    /// The fixed-point backward (error_bits > 0). e: dY's codes on the grid
    /// se, a power of two (stochastic rounding). dX = se * 2^-max_shift * (W^T e as integer
    /// shifts and adds, exact in int64). dW = se * sx * sum_j e * (u - z),
    /// u the inputs' 8-bit codes: unsigned on [0, max x] (z = 0) when no
    /// input is negative, else symmetric (+-127, stored as code + 128, z =
    /// 128), nearest rounding; the exact int8 product, int64 over groups.
    void backward_fixed(context& ctx, const tensor4& dy, const tensor4& x, const conv_geometry& g,
                        std::chrono::steady_clock::time_point start) {
        cost_meter* m = meter(ctx);
        const shape4 xs = shape_of(x);
        const bool need_dx = input_grad();
        const bool need_dw = !opt_.freeze_shift;
        if (!need_dx && !need_dw) { // a frozen first layer: nothing to compute
            return;
        }
        const int bits = opt_.error_bits;
        const float emax = detail::max_abs_finite(dy.data(), dy.size(), name() + ".backward", "the gradient dY");
        const float se = detail::error_step(emax, bits); // a power of two
        const detail::grid eg = detail::error_code_grid(se, bits);
        float xlo = 0.0f, xhi = 0.0f;
        if (need_dw) {
            const float xmax = detail::max_abs_finite(x.data(), x.size(), name() + ".backward", "the input X");
            xlo = *std::min_element(x.begin(), x.end());
            xhi = xmax;
        }
        const bool unsigned_x = xlo >= 0.0f;
        const std::int32_t z = unsigned_x ? 0 : 128;
        const float xq = unsigned_x ? 255.0f : 127.0f;
        const float sx = xhi > 0.0f ? xhi / xq : 1.0f, xinv = xhi > 0.0f ? xq / xhi : 0.0f;
        const std::size_t p = g.cols(), kk = g.rows(), group = detail::column_group(p, xs.n);
        const std::size_t groups = (xs.n + group - 1) / group, xstride = g.c * g.h * g.w;
        const int threads = num_threads();
        const std::size_t wsize = out_ * kk;
        if (need_dw) {
            acc_.assign(static_cast<std::size_t>(threads) * wsize, 0);
        }
        const std::uint64_t seed = ctx.random();
        detail::backward_split split;
        parallel_chunks(groups, [&](std::size_t gb, std::size_t ge, int thread) {
            thread_local std::vector<float> col, dyg, ef, dcol;
            thread_local std::vector<std::int64_t> raw, acc;
            thread_local std::vector<std::int32_t> raw32;
            thread_local std::vector<std::uint8_t> u;
            thread_local std::vector<std::int8_t> et;
            thread_local detail::int8_wgrad_scratch scratch;
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const auto t0 = std::chrono::steady_clock::now();
                const std::size_t n0 = gi * group, cnt = std::min(group, xs.n - n0), ld = cnt * p;
                dyg.resize(out_ * ld);
                ef.resize(out_ * ld);
                et.resize(out_ * ld);
                detail::gather_outputs(dy.data() + n0 * out_ * p, cnt, out_, p, dyg.data(), ld);
                rng r(seed, gi);
                detail::error_codes(dyg.data(), out_, ld, eg, r, ef.data(), et.data());
                if (need_dw) {
                    col.resize(kk * ld);
                    u.resize(kk * ld);
                    for (std::size_t s = 0; s < cnt; ++s) {
                        im2col(x.data() + (n0 + s) * xstride, g, col.data() + s * p, ld);
                    }
                    for (std::size_t i = 0; i < kk * ld; ++i) {
                        u[i] = static_cast<std::uint8_t>(std::nearbyint(std::clamp(col[i] * xinv, -xq, xq)) + z);
                    }
                    detail::int8_weight_grad(out_, kk, ld, et.data(), u.data(), z, nullptr,
                                             acc_.data() + static_cast<std::size_t>(thread) * wsize, scratch);
                }
                const auto t1 = std::chrono::steady_clock::now();
                if (need_dx) {
                    acc.resize(kk * ld);
                    dcol.resize(kk * ld);
                    // error codes of at most 8 bits: every exponent run's sum fits in int32
                    if (static_cast<double>(std::int64_t{1} << (bits - 1)) * static_cast<double>(packed_t_.max_run) <
                        0x1.0p31) {
                        raw32.resize(out_ * ld);
                        for (std::size_t i = 0; i < out_ * ld; ++i) {
                            raw32[i] = static_cast<std::int32_t>(ef[i]);
                        }
                        kernels::shift_fixed32(packed_t_, -max_shift(), ld, raw32.data(), ld, acc.data(), ld);
                    } else {
                        raw.resize(out_ * ld);
                        for (std::size_t i = 0; i < out_ * ld; ++i) {
                            raw[i] = static_cast<std::int64_t>(ef[i]);
                        }
                        kernels::shift_fixed(packed_t_, -max_shift(), ld, raw.data(), ld, acc.data(), ld);
                    }
                    kernels::from_fixed_raw(acc.data(), kk * ld, max_shift(), dcol.data());
                    for (auto& v : dcol) {
                        v *= se;
                    }
                    detail::scatter_input_grads(dcol.data(), g, ld, cnt, p, dx_.data() + n0 * xstride);
                }
                split.add(thread, t0, t1);
            }
        });
        if (need_dw) {
            dw_.assign(wsize, 0.0f);
            const double wscale = static_cast<double>(se) * sx;
            for (std::size_t i = 0; i < wsize; ++i) {
                std::int64_t v = 0;
                for (int t = 0; t < threads; ++t) {
                    v += acc_[static_cast<std::size_t>(t) * wsize + i];
                }
                dw_[i] = static_cast<float>(static_cast<double>(v) * wscale);
            }
            map_weight_grad();
        }
        if (m != nullptr) {
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            const double share = split.share();
            const op_format ef = op_format::integer(bits);
            if (need_dw) {
                m->mac(id(), phase::weight_gradient, op_format::integer(8), ef,
                       static_cast<std::uint64_t>(xs.n) * out_ * kk * p);
                // the scale se * sx (sx is not a power of two) and the dP / dS mapping
                m->unary(id(), phase::weight_gradient, op_kind::multiply, fp32, 3 * wsize);
                m->bytes(id(), phase::weight_gradient, x.size() + dy.size(), 4 * 2 * wsize);
                m->time(id(), phase::weight_gradient, wall * share);
            }
            if (need_dx) {
                // the sum of `bits`-bit codes shifted by up to max_shift over `out_` terms per row
                int log_terms = 0;
                while ((std::size_t{1} << log_terms) < out_ * k_ * k_) {
                    ++log_terms;
                }
                const int acc_bits = bits + max_shift() + log_terms <= 32 ? 32 : 64;
                const std::uint64_t ops = static_cast<std::uint64_t>(xs.n) * p * packed_t_.nonzeros();
                m->unary(id(), phase::backward_input, op_kind::shift, ef, ops);
                m->unary(id(), phase::backward_input, op_kind::add, op_format::integer(acc_bits), ops);
                m->bytes(id(), phase::backward_input, dy.size() + p_.size(), 4 * dx_.size());
                m->time(id(), phase::backward_input, wall * (1.0 - share));
            }
        }
    }

    std::size_t in_, out_, k_;
    shift_options opt_;
    tensor4 p_, s_, dp_, ds_, w_;
    std::vector<std::int8_t> sign_code_, exp_code_;
    kernels::shift_matrix packed_, packed_t_;
    tensor4 y_, dx_, empty_;
    const tensor4* x_ = nullptr;
    /// The float backward's products: a convolution holding W (exact powers
    /// of two), its input the forward's (rounded to fixed point for the
    /// integer forward, the straight-through input), so dW = dY X^T and
    /// dX = W^T dY run on the convolution's kernels.
    conv2d engine_;
    tensor4 xr_;
    std::vector<float> dw_;
    std::vector<std::int64_t> acc_;
};

static_assert(layer<shift_conv2d>);

/// A fully connected shift layer, y = W x with W = sign * 2^round(P) of shape
/// [out, in]: a 1x1 shift convolution of the flattened input. Accepts any
/// N x C x H x W input with C*H*W == in, produces N x out x 1 x 1.
class shift_dense {
public:
    shift_dense(std::size_t in, std::size_t out, shift_options o = {})
        : in_(in), out_(out), conv_(in, out, 1, with_unit_window(o), "shift_dense") {}

    [[nodiscard]] std::size_t in_features() const noexcept { return in_; }
    [[nodiscard]] std::size_t out_features() const noexcept { return out_; }
    /// The underlying 1x1 shift convolution (its P, S and weights are [out, in, 1, 1]).
    [[nodiscard]] shift_conv2d& core() noexcept { return conv_; }
    [[nodiscard]] const shift_conv2d& core() const noexcept { return conv_; }
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
    static shift_options with_unit_window(shift_options o) {
        o.stride = 1;
        o.padding = 0;
        return o;
    }
    void check(const shape4& x) const {
        if (x.c * x.h * x.w != in_) {
            throw shape_error(detail::concat(conv_.name(), ": shift_dense(", in_, "->", out_, ") needs ", in_,
                                             " features per sample, got an input of shape ", to_string(x)));
        }
    }

    std::size_t in_, out_;
    shift_conv2d conv_;
    tensor4 flat_, dx_;
    shape4 in_shape_;
};

static_assert(layer<shift_dense>);

} // namespace frugal

#endif
