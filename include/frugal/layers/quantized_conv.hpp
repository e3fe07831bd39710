#ifndef FRUGAL_LAYERS_QUANTIZED_CONV_HPP
#define FRUGAL_LAYERS_QUANTIZED_CONV_HPP

/// @file
/// frugal::quantized_conv: a convolution whose three products run on 8-bit
/// integer kernels (FracTrain's quantized layer, SPEC §3.2 with the
/// quantizers of §0), for real, not simulated:
///
/// - forward  `y = conv(Q_a(x), Q_w(w))`: int8 weight codes x uint8
///   activation codes, int32 sums (kernels::igemm_s8u8_offsets);
/// - backward `dx = conv^T(Q_g(s_w dy), codes(w))` and `dW = Q_g(dy) (x) Q_a(x)`,
///   from the error quantized at the error width, also on the integer kernel;
/// - the straight-through estimator: dx and dW are handed on as the
///   gradients of the float input and the float master weights.
///
/// Bit widths (`bit_widths`) are data that can change between steps (a PFQ
/// schedule raises them); activations and weights 2..8 bits (stored and
/// computed in 8 bits, counted at their own width by the cost meter), errors
/// 2..16 bits: up to 8 stored in 8 bits like the others, 9..16 as uint16 codes
/// cut into two 8-bit limbs (code = 256 hi + lo) that run through the same
/// 8-bit products, the two integer results combined exactly (dW in its int64
/// sums, dx in double before the final scaling; twice the error products'
/// work, counted at the true width); and
/// `bit_widths::full()` (all 0) runs the plain float convolution. Every product is exact: the float
/// result equals the convolution of the dequantized operands up to the
/// rounding of the final scaling (tests/fractrain compare against a 64-bit
/// reference).
///
/// Quantizers and decisions:
/// - activations: SPEC §0's range grid over the batch (min of mins, max of
///   maxes), nearest rounding, running range (EMA, m = 0.1) for evaluation;
///   **[decision]** the range is widened to contain 0 and shifted by less
///   than half a step so that 0.0 is a code (zero point `z`, as integer
///   inference kernels do): zero padding is then exact in integers;
/// - errors: the same nudged range grid per tensor, stochastic rounding
///   (the step's random source);
/// - weights: **[decision]** symmetric per output channel (SPEC §0's default
///   is the min/max grid): the integer kernel then needs no weight offset.
///   For dx the sum runs over output channels, across which a per-channel
///   scale cannot be factored out of the weights, so it is folded into the
///   error instead: dx = sum_o q[o, j] e[o, p] with e[o, p] = s_w[o] g[o, p]
///   quantized like the error (its own nudged range grid, stochastic
///   rounding, at the error width). The weights then carry only the
///   forward's rounding (a per-tensor re-quantization of the weights, the
///   first design, doubled dx's error at 3 bits: 0.51 vs 0.33 relative).
/// - the bias (if any) stays float; its gradient is the sum of the quantized
///   error.
///
/// Integer identities (z zero points, K the inner length): the forward and dx
/// products take the signed weight codes w as A and the
/// unsigned codes b as they are as B (kernels::igemm_s8u8_offsets):
///   sum w (b - z) = sum w b - z sum w,
/// one igemm plus the weights' row sums. dW (both operands unsigned) takes
/// A = the activation codes x as they are (uint8) and B = the error codes
/// g - 128 (int8):
///   sum (x - zx)(g - zg) = sum x (g - 128) + (128 - zg) sum x - zx sum (g - 128) - zx (128 - zg) K
/// one igemm plus row and column sums (dw_correct).
///
/// Layout (what makes the step faster than FP32; docs/fractrain.md, "How the
/// layer feeds the kernel"): codes are stored padded; the forward and dx
/// products read channel quads over "wide" pixels (integer_conv_quads; a
/// stride s cuts the input into its phase planes, min(s, k)^2 of them, each
/// tap a stride-1 view of one), made for each sample right before its product (with its
/// codes, or its error roundings) so that they are read from cache; dx is the
/// forward correlation of the spread error with the flipped kernel, and dW
/// takes an implicit im2col as row pointers.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <limits>
#include <utility>
#include <span>
#include <vector>

#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/layer.hpp"
#include "frugal/numeric/precision.hpp"
#include "frugal/numeric/quantizer.hpp"
#include "frugal/tensor/im2col.hpp"
#include "frugal/tensor/kernels/elementwise.hpp"
#include "frugal/tensor/kernels/igemm.hpp"
#include "frugal/tensor/parallel.hpp"
#include "frugal/tensor/serialize.hpp"

namespace frugal {

/// `count` consecutive samples of a batch at `widths` (quantized_conv::set_groups).
struct precision_group {
    std::size_t count = 0;
    bit_widths widths;
};

namespace detail {
/// A range grid whose zero is a code: [lo, hi] widened to contain 0, then
/// offset = -z * scale with integer z.
struct zero_point_grid {
    grid g;
    int zero = 0;
};
/// Where a forward keeps its output planes' (sum, sum of squares) and [min, max] (ranges only with
/// sums).
struct plane_sinks {
    std::pair<float, float>* sums = nullptr;
    value_range* ranges = nullptr;
};
/// memcpy for the short runs of this layer (an image row: 7 to 30 bytes, or floats): moves of 32,
/// 16, 8 and 4 bytes with constant sizes, which the compiler emits inline; a library call per row
/// cost more than the copy (3% of the 8-bit training step).
inline void copy_short(void* __restrict dst, const void* __restrict src, std::size_t n) noexcept {
    auto* d = static_cast<unsigned char*>(dst);
    const auto* s = static_cast<const unsigned char*>(src);
    for (; n >= 32; n -= 32, d += 32, s += 32) {
        std::memcpy(d, s, 32);
    }
    if (n >= 16) {
        std::memcpy(d, s, 16);
        n -= 16, d += 16, s += 16;
    }
    if (n >= 8) {
        std::memcpy(d, s, 8);
        n -= 8, d += 8, s += 8;
    }
    if (n >= 4) {
        std::memcpy(d, s, 4);
        n -= 4, d += 4, s += 4;
    }
    if (n >= 2) {
        std::memcpy(d, s, 2);
        n -= 2, d += 2, s += 2;
    }
    if (n == 1) {
        *d = *s;
    }
}
[[nodiscard]] inline zero_point_grid nudged_range_grid(value_range r, int bits) noexcept {
    const float lo = std::min(r.lo, 0.0f), hi = std::max(r.hi, 0.0f);
    const float levels = static_cast<float>((1 << bits) - 1);
    const float s = std::max(hi - lo, 1e-8f) / levels;
    const float z = std::clamp(std::nearbyint(-lo / s), 0.0f, levels);
    return {{s, 1.0f / s, -z * s, 0.0f, levels}, static_cast<int>(z)};
}
} // namespace detail

/// A convolution on 8-bit integer kernels (see the file comment).
class quantized_conv : public layer_base {
public:
    quantized_conv(std::size_t in, std::size_t out, std::size_t kernel, conv_options o = {}, bit_widths p = {})
        : layer_base("quantized_conv2d"), float_(in, out, kernel, o), prec_(p) {
        check_kernel_widths(p, "frugal::quantized_conv");
    }

    [[nodiscard]] std::size_t in_channels() const noexcept { return float_.in_channels(); }
    [[nodiscard]] std::size_t out_channels() const noexcept { return float_.out_channels(); }
    [[nodiscard]] std::size_t kernel() const noexcept { return float_.kernel(); }
    [[nodiscard]] const conv_options& options() const noexcept { return float_.options(); }
    [[nodiscard]] tensor4& weight() noexcept { return float_.weight(); }
    [[nodiscard]] const tensor4& weight() const noexcept { return float_.weight(); }
    [[nodiscard]] tensor1& bias() noexcept { return float_.bias(); }
    [[nodiscard]] const tensor4& weight_grad() const noexcept { return dw_; }
    /// The float master convolution (its weights and bias are this layer's; e.g. for shrink).
    [[nodiscard]] const conv2d& float_conv() const noexcept { return float_; }

    /// The bit widths of the next steps (checked: activations and weights 2..8, errors 2..16, or
    /// all 0).
    void set_precision(const bit_widths& p) {
        check_kernel_widths(p, name());
        prec_ = p;
    }
    [[nodiscard]] const bit_widths& get_precision() const noexcept { return prec_; }
    /// The plane ranges of the last forward's input (what `forward` was given or measured), until
    /// the next backward; nullptr when that forward did not measure (evaluation with a running
    /// range) or threw. What a block hands to another convolution reading the same input.
    [[nodiscard]] const std::vector<value_range>* input_ranges() const noexcept {
        return input_ranges_ok_ ? &ranges_ : nullptr;
    }
    /// Whether a training forward also computes the (sum, sum of squares) of every plane of its
    /// output while the plane is in cache (kernels::sum_and_squares): what a batch norm after
    /// this layer reads instead of a statistics pass of its own. Off by default.
    void keep_output_sums(bool on) noexcept { keep_sums_ = on; }
    /// With keep_output_sums: also the [min, max] of every output plane (output_ranges()), in the
    /// same pass. Off by default.
    void keep_output_ranges(bool on) noexcept { keep_out_ranges_ = on; }
    /// The plane sums of the last forward's output (index n * out + o) when keep_output_sums is on
    /// and that forward was an integer training forward; else nullptr.
    [[nodiscard]] const std::vector<std::pair<float, float>>* output_sums() const noexcept {
        return sums_ok_ ? &out_sums_ : nullptr;
    }
    /// The [min, max] of every plane of the last forward's output, kept with output_sums() when
    /// keep_output_ranges is on too; else nullptr.
    [[nodiscard]] const std::vector<value_range>* output_ranges() const noexcept {
        return out_ranges_ok_ ? &out_ranges_ : nullptr;
    }
    /// Whether forward runs the integer products (false: bit_widths::full() without groups, the
    /// float convolution): what forward_planes needs.
    [[nodiscard]] bool integer_forward() const noexcept { return !(groups_.empty() && prec_.is_full()); }
    /// The running activation range used in evaluation.
    [[nodiscard]] value_range running_range() const noexcept { return running_; }

    void set_name(std::string n) {
        layer_base::set_name(n);
        float_.set_name(n + ".fp32");
    }
    void set_input_grad(bool on) {
        layer_base::set_input_grad(on);
        float_.set_input_grad(on);
    }
    void reset_parameters(rng& g) { float_.reset_parameters(g); }
    [[nodiscard]] shape4 output_shape(const shape4& x) const { return float_.output_shape(x); }

    /// Per-sample widths for the following forward passes (and their
    /// backward): the batch is cut into consecutive groups of `count` samples,
    /// each quantized with its own range and run through its own integer
    /// products at its widths (dynamic fractional quantization: the caller
    /// sorts the samples by their choice). Every group must have the same
    /// weight width (the weights are quantized once). Empty: the whole batch
    /// at get_precision().
    void set_groups(std::vector<precision_group> groups) {
        for (const auto& g : groups) {
            check_kernel_widths(g.widths, name() + " (group)");
            if (g.widths.is_full()) {
                throw error(detail::concat(name(), ": a precision group cannot be full precision"));
            }
            if (g.widths.weight != groups.front().widths.weight) {
                throw error(detail::concat(name(), ": precision groups need one weight width (",
                                           groups.front().widths.weight, " and ", g.widths.weight, ")"));
            }
        }
        groups_ = std::move(groups);
    }
    [[nodiscard]] const std::vector<precision_group>& groups() const noexcept { return groups_; }

    /// @param x_ranges  the [min, max] of every (sample, channel) plane of x (index n * C + c) when
    ///                  the caller already has them exactly (a batch norm that kept them:
    ///                  basic_block passes them); nullptr: measured here, in a pass over x
    const tensor4& forward(context& ctx, const tensor4& x, const std::vector<value_range>* x_ranges = nullptr) {
        float_mode_ = groups_.empty() && prec_.is_full();
        input_ranges_ok_ = false;
        sums_ok_ = out_ranges_ok_ = false;
        if (float_mode_) {
            return forward_float(ctx, x);
        }
        return forward_integer(ctx, shape_of(x), &x, x_ranges, [&](std::size_t i, float*) {
            const std::size_t hw = x.shape()[2] * x.shape()[3];
            return x.data() + i * hw;
        });
    }

    /// The forward of the samples `rows` of x, in that order: what forward(gathered) gives for a
    /// tensor `gathered` holding those samples (their ranges measured here), without that copy:
    /// the codes are made from each sample where it is. The following backward takes the output
    /// gradient of those samples and gives their input gradient (the codes are kept, x is not
    /// read again). What a gated block runs its sub-batch with.
    const tensor4& forward_rows(context& ctx, const tensor4& x, std::span<const std::size_t> rows) {
        const shape4 full = shape_of(x);
        check_rows(name(), rows, full.n);
        const shape4 xs{rows.size(), full.c, full.h, full.w};
        if (groups_.empty() && prec_.is_full()) { // the float path: on a gathered copy
            gather_rows(x, rows, xg_);
            return forward(ctx, xg_);
        }
        float_mode_ = false;
        input_ranges_ok_ = false;
        sums_ok_ = out_ranges_ok_ = false;
        const std::size_t hw = full.h * full.w, c = full.c;
        const auto at = [&](std::size_t i) { return x.data() + (rows[i / c] * c + i % c) * hw; };
        const bool measure = ctx.training() || !has_running_;
        if (measure) {
            plane_ranges_of(at, xs.n * c, hw, row_ranges_, "frugal::quantized_conv");
        }
        return forward_integer(ctx, xs, nullptr, measure ? &row_ranges_ : nullptr,
                               [&](std::size_t i, float*) { return at(i); });
    }

    /// A training forward whose input is not a tensor but computed plane by plane: `plane(i, buf)`
    /// returns plane i (index n * C + c, h * w floats of an input of shape `xs`), written into `buf`
    /// (room for h * w floats) or elsewhere; called once per plane, from any thread. `x_ranges`
    /// are the planes' exact ranges (required). What a batch norm before this layer uses to hand
    /// over its output without writing it (basic_block: batchnorm::apply_plane): the codes come
    /// from the values in cache. Needs integer_forward() and training.
    template <class PlaneSource>
    const tensor4& forward_planes(context& ctx, const shape4& xs, const std::vector<value_range>& x_ranges,
                                  PlaneSource&& plane) {
        if (!integer_forward() || !ctx.training()) {
            throw error(detail::concat(name(), ": forward_planes needs integer widths and training"));
        }
        if (x_ranges.size() != xs.n * xs.c) {
            throw shape_error(detail::concat(name(), ": forward_planes got ", x_ranges.size(), " plane ranges for input ",
                                             to_string(xs)));
        }
        for (std::size_t i = 0; i < x_ranges.size(); ++i) {
            if (!std::isfinite(x_ranges[i].lo) || !std::isfinite(x_ranges[i].hi)) {
                throw numeric_error(detail::concat(name(), ": forward_planes: plane ", i,
                                                   " of the input has a NaN or infinite range"));
            }
        }
        float_mode_ = false;
        input_ranges_ok_ = false;
        sums_ok_ = out_ranges_ok_ = false;
        return forward_integer(ctx, xs, nullptr, &x_ranges, plane);
    }

private:
    /// dW's exact sums of one product, zero points corrected, added to acc ([kk x out], row j =
    /// im2col row, contiguous in the output channels so the inner loop vectorizes): for each
    /// (j, o), acc += w (c[j, o] + zs rsx[j] - zx (cs[o] + zs k)), where c is the raw product
    /// (row stride ldc), rsx the rows' code sums, cs the error columns' code sums, zs the error
    /// operand's shift (128 - its zero point) and k the inner length.
    static void dw_correct(std::int64_t* acc, const std::int32_t* c, std::size_t ldc, const std::int64_t* cs,
                           const std::int64_t* rsx, std::size_t kk, std::size_t out, std::int64_t zs, std::int64_t zx,
                           std::int64_t k, std::int64_t w) {
        thread_local std::vector<std::int64_t> base;
        base.resize(out);
        for (std::size_t o = 0; o < out; ++o) {
            base[o] = -zx * (cs[o] + zs * k);
        }
        for (std::size_t j = 0; j < kk; ++j) {
            const std::int64_t rj = zs * rsx[j];
            const std::int32_t* cj = c + j * ldc;
            std::int64_t* aj = acc + j * out;
            if (w == 1) {
                for (std::size_t o = 0; o < out; ++o) {
                    aj[o] += static_cast<std::int64_t>(cj[o]) + rj + base[o];
                }
            } else {
                for (std::size_t o = 0; o < out; ++o) {
                    aj[o] += w * (static_cast<std::int64_t>(cj[o]) + rj + base[o]);
                }
            }
        }
    }

    /// forward's integer path; `x` (may be null with x_ranges given) is only read to measure the
    /// ranges and by the meter, the values come from `plane` (forward_planes).
    template <class PlaneSource>
    const tensor4& forward_integer(context& ctx, const shape4& xs, const tensor4* xp,
                                   const std::vector<value_range>* x_ranges, PlaneSource&& plane) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        const conv_geometry g = float_.geometry(xs);
        const std::size_t out = out_channels(), kk = g.rows(), p = g.cols();
        have_forward_ = false; // until this forward succeeds, backward refuses
        check_inner_lengths(g);
        std::vector<segment> segs;
        if (groups_.empty()) {
            segs.push_back({0, xs.n, prec_});
        } else {
            std::size_t at = 0;
            for (const auto& gr : groups_) {
                if (gr.count > 0) {
                    segs.push_back({at, gr.count, gr.widths});
                }
                at += gr.count;
            }
            if (at != xs.n) {
                throw shape_error(detail::concat(name(), ": precision groups cover ", at, " samples, the batch has ",
                                                 xs.n));
            }
        }

        // weights: symmetric per output channel; A = the signed codes (integer_conv_quads), with row sums
        const tensor4& w = float_.weight();
        const int wbits = segs.empty() ? prec_.weight : segs.front().widths.weight;
        quantize_symmetric<std::int8_t, per_channel, nearest_even>(w, wbits, qw_);
        const std::int8_t* wq = qw_.values.data();
        const std::vector<float>& sw = qw_.scale;
        const std::size_t in = in_channels(), k2 = g.k * g.k;
        // K in (tap, channel quad, channel in quad) order, missing channels 0
        weight_rows_quads(out, k2, in, awq_, raw_, [&](std::size_t o, std::size_t tap, std::size_t ch) {
            return wq[(o * in + ch) * k2 + tap];
        });

        // activations: nudged range grid over each group (training) or the running range;
        // the running range follows the whole batch
        value_range all = running_;
        const bool measure = ctx.training() || !has_running_;
        if (measure) { // [min, max] of every (sample, channel) plane, in parallel, unless known
            if (x_ranges != nullptr && x_ranges->size() == xs.n * xs.c) {
                ranges_.assign(x_ranges->begin(), x_ranges->end());
            } else {
                plane_ranges(xp->data(), xs.n * xs.c, xs.h * xs.w, ranges_, "frugal::quantized_conv");
            }
            all = range_of(ranges_, 0, xs.n * xs.c);
            input_ranges_ok_ = true; // until backward reuses ranges_
        }
        // the codes are stored padded (the code of 0.0 around each plane), so that the integer products
        // read them with the unpadded geometry gp
        const std::size_t pad = g.pad, hp = xs.h + 2 * pad, wp = xs.w + 2 * pad, per_xp = xs.c * hp * wp;
        qx_.resize(xs.n * per_xp + g.k + 4); // dW's implicit rows read up to k + 3 bytes past the last sample
        // the codes of planes [lo, hi) of a segment, each padded with the code of 0.0: a whole plane at
        // vector speed into a buffer, then its rows, and only the border set to the zero point
        const auto quantize_planes = [&](const segment& sg, const detail::grid& gq, std::size_t lo, std::size_t hi) {
            thread_local std::vector<std::uint8_t> codes;
            thread_local std::vector<float> values; // a plane the source computes
            codes.resize(xs.h * xs.w);
            values.resize(xs.h * xs.w);
            const auto z = static_cast<std::uint8_t>(sg.zx);
            for (std::size_t i = lo; i < hi; ++i) {
                const float* src = plane(sg.s0 * xs.c + i, values.data());
                std::uint8_t* dst = qx_.data() + sg.s0 * per_xp + i * hp * wp;
                if (pad == 0) {
                    detail::quantize_nearest(src, xs.h * xs.w, gq, dst);
                    continue;
                }
                detail::quantize_nearest(src, xs.h * xs.w, gq, codes.data());
                std::memset(dst, z, pad * wp + pad); // the top rows and the first row's left border
                for (std::size_t y = 0; y < xs.h; ++y) {
                    std::uint8_t* row = dst + (y + pad) * wp + pad;
                    detail::copy_short(row, codes.data() + y * xs.w, xs.w);
                    for (std::size_t b = 0; b < 2 * pad; ++b) { // its right border, the next row's left
                        row[xs.w + b] = z;
                    }
                }
                const std::size_t done = (xs.h + pad) * wp + pad;
                std::memset(dst + done, z, hp * wp - done); // the bottom rows
            }
        };
        std::vector<detail::grid> xgrids;
        for (auto& sg : segs) {
            const value_range r = ctx.training() && segs.size() > 1 ? range_of(ranges_, sg.s0 * xs.c, sg.n * xs.c) : all;
            const detail::zero_point_grid xg = detail::nudged_range_grid(r, sg.widths.act);
            sg.sx = xg.g.scale;
            sg.zx = xg.zero;
            xgrids.push_back(xg.g); // (each sample's codes are made right before its product, below)
        }
        if (ctx.training()) {
            running_ = has_running_ ? value_range{0.9f * running_.lo + 0.1f * all.lo, 0.9f * running_.hi + 0.1f * all.hi}
                                    : all;
            has_running_ = true;
        }

        // everything that can throw (non-finite input or weights) is behind us
        x_shape_ = xs;
        segs_ = segs;
        have_forward_ = true;
        wbits_ = wbits;
        ensure_shape(y_, {xs.n, out, g.out_h(), g.out_w()});
        const bool want_sums = keep_sums_ && ctx.training();
        if (want_sums) {
            out_sums_.resize(xs.n * out);
        }
        if (want_sums && keep_out_ranges_) {
            out_ranges_.resize(xs.n * out);
        }
        const detail::plane_sinks sums =
            want_sums ? detail::plane_sinks{out_sums_.data(), keep_out_ranges_ ? out_ranges_.data() : nullptr}
                      : detail::plane_sinks{};
        const tensor1& bias = float_.bias();
        for (std::size_t si = 0; si < segs_.size(); ++si) {
            const segment& sg = segs_[si];
            const auto scale = [&](std::size_t o) { return sg.sx * sw[o]; };
            // each sample's codes and quads made right before its product, in cache
            const conv_geometry gp = padded_geometry(g);
            const auto zx = static_cast<std::uint8_t>(sg.zx);
            integer_conv_quads(
                [&](std::size_t s, std::uint8_t* buf) {
                    const std::size_t i = s - sg.s0;
                    quantize_planes(sg, xgrids[si], i * xs.c, (i + 1) * xs.c);
                    quads_of_sample(qx_.data() + s * per_xp, gp, zx, buf);
                },
                gp, sg.zx, awq_.data(), raw_.data(), out, sg.s0, sg.n, scale, bias.size() ? bias.data() : nullptr,
                y_.data(), sums);
            if (m != nullptr) {
                const std::uint64_t macs = static_cast<std::uint64_t>(sg.n) * out * p * kk;
                m->mac(id(), phase::forward, op_format::integer(sg.widths.act), op_format::integer(sg.widths.weight),
                       macs);
            }
        }
        sums_ok_ = want_sums;
        out_ranges_ok_ = want_sums && keep_out_ranges_;
        if (m != nullptr) {
            m->bytes(id(), phase::forward, xs.size() * 4 + w.size() * 4, 4 * y_.size());
        }
        return y_;
    }

public:

    /// @param dy_ranges  the [min, max] of every (sample, channel) plane of dy when the caller has
    ///                   them exactly (as forward's x_ranges); nullptr: measured here
    const tensor4& backward(context& ctx, const tensor4& dy, const std::vector<value_range>* dy_ranges = nullptr) {
        return backward(ctx, dy, dy_ranges, detail::no_plane_hook{});
    }
    /// The input gradient the last backward returned, writable (a caller may change it in place
    /// before the next backward).
    [[nodiscard]] tensor4& input_grad_buffer() noexcept { return float_mode_ ? float_.input_grad_buffer() : dx_; }
    /// backward(ctx, dy, dy_ranges) that also calls hook(i, values) for every plane i (index
    /// n * C + c, values its h * w floats, float*) of the input gradient once it is written, while
    /// it is in cache (the integer paths: right after the plane's dequantization; the float path:
    /// after the whole gradient), from any thread, each plane once. The hook may change the plane:
    /// what it leaves is the returned gradient. What a batch norm before this layer takes its
    /// backward's first pass from (batchnorm::plane_sums), and what a block adds its shortcut's
    /// gradient in with. Not called without an input gradient (set_input_grad(false)).
    template <class Hook>
    const tensor4& backward(context& ctx, const tensor4& dy, const std::vector<value_range>* dy_ranges, Hook&& hook) {
        if (float_mode_) {
            const tensor4& returned = float_.backward(ctx, dy);
            tensor4& dx = float_.input_grad_buffer();
            if (input_grad()) {
                const std::size_t planes = dx.shape()[0] * dx.shape()[1], hw = dx.shape()[2] * dx.shape()[3];
                parallel_chunks(planes, [&](std::size_t lo, std::size_t hi, int) {
                    for (std::size_t i = lo; i < hi; ++i) {
                        hook(i, dx.data() + i * hw);
                    }
                });
            }
            std::copy(float_.weight_grad().begin(), float_.weight_grad().end(), dw_.begin());
            if (options().bias) {
                std::vector<parameter> ps;
                float_.collect_parameters(ps);
                if (bias_grad_.size() != out_channels()) {
                    bias_grad_.resize({out_channels()});
                }
                std::copy(ps.back().grad.begin(), ps.back().grad.end(), bias_grad_.begin());
            }
            return input_grad() ? dx : returned; // (without an input gradient, what conv2d returns: empty)
        }
        cost_meter* m = meter(ctx);
        if (!have_forward_) {
            throw error(detail::concat(name(), ": backward called before forward"));
        }
        const shape4 xs = x_shape_;
        const conv_geometry g = float_.geometry(xs);
        const std::size_t out = out_channels(), kk = g.rows(), p = g.cols(), per_y = out * p;
        const conv_geometry gp = padded_geometry(g); // the stored (padded) codes
        const std::size_t per_xp = gp.c * gp.h * gp.w;
        expect_shape(shape_of(dy), shape_of(y_), (name() + ".backward").c_str());
        const auto t0 = std::chrono::steady_clock::now();
        input_ranges_ok_ = false; // ranges_ holds dy's from here

        // errors: nudged range grid per group, stochastic rounding. One parallel pass keeps every
        // (sample, channel) plane's [min, max]: the range of dy, and that of dx's scaled error below.
        if (dy_ranges != nullptr && dy_ranges->size() == xs.n * out) {
            ranges_.assign(dy_ranges->begin(), dy_ranges->end());
        } else {
            plane_ranges(dy.data(), xs.n * out, p, ranges_, "frugal::quantized_conv (output gradient)");
        }
        // dx's error e = s_w[o] dy (below) is quantized in the same pass over dy. Errors wider than
        // 8 bits are quantized to uint16 codes q and cut into two 8-bit limbs, q = 256 hi + lo (the
        // zero point likewise): each limb runs through the 8-bit products below, and since
        // q - z = 256 (hi - z_hi) + (lo - z_lo), the two integer results combine exactly.
        const bool need_dx = input_grad();
        const std::vector<float>& sw = qw_.scale;
        const bool any_limbs = std::any_of(segs_.begin(), segs_.end(), [](const segment& sg) { return sg.limbs(); });
        qg_.resize(dy.size());
        if (need_dx && any_limbs) { // (8-bit e codes live per sample, in cache, below)
            qe_.resize(dy.size());
        }
        if (any_limbs) {
            qg16_.resize(dy.size());
            qgl_.resize(dy.size());
            if (need_dx) {
                qe16_.resize(dy.size());
                qel_.resize(dy.size());
            }
        }
        // per segment: the error grid and e's; for 8-bit errors with dx, the rounding of each sample
        // happens right before its dx product (below), from a seed of its own drawn here
        std::vector<std::pair<detail::grid, detail::grid>> err_grids(segs_.size());
        std::vector<std::vector<std::uint64_t>> sample_seeds(segs_.size());
        for (std::size_t si = 0; si < segs_.size(); ++si) {
            segment& sg = segs_[si];
            const detail::zero_point_grid eg =
                detail::nudged_range_grid(range_of(ranges_, sg.s0 * out, sg.n * out), sg.widths.error);
            sg.sg = eg.g.scale;
            sg.zg = eg.zero;
            const std::size_t first = sg.s0 * per_y, count = sg.n * per_y;
            const auto grid_of = [&](std::size_t) { return eg.g; };
            if (!need_dx) {
                if (sg.limbs()) {
                    stochastic_planes(dy.data() + first, sg.n * out, p, grid_of, qg16_.data() + first, ctx.random);
                    split_limbs(qg16_.data() + first, count, qg_.data() + first, qgl_.data() + first);
                } else {
                    stochastic_planes(dy.data() + first, sg.n * out, p, grid_of, qg_.data() + first, ctx.random);
                }
                continue;
            }
            // e = s_w[o] dy over the group: s_w >= 0, so its range follows from the planes' ranges,
            // and e's grid is a grid per channel for dy itself (no pass writes e)
            value_range r{std::numeric_limits<float>::max(), std::numeric_limits<float>::lowest()};
            for (std::size_t i = sg.s0 * out; i < (sg.s0 + sg.n) * out; ++i) {
                r.lo = std::min(r.lo, sw[i % out] * ranges_[i].lo);
                r.hi = std::max(r.hi, sw[i % out] * ranges_[i].hi);
            }
            const detail::zero_point_grid ee = detail::nudged_range_grid(r, sg.widths.error);
            sg.se = ee.g.scale;
            sg.ze = ee.zero;
            err_grids[si] = {eg.g, ee.g};
            const auto e_grid_of = [&](std::size_t i) { return e_grid(ee.g, sw[i % out]); };
            if (!sg.limbs()) {
                sample_seeds[si].resize(sg.n);
                for (auto& v : sample_seeds[si]) {
                    v = ctx.random();
                }
                continue;
            }
            {
                stochastic_planes_pair(dy.data() + first, sg.n * out, p, grid_of, qg16_.data() + first, e_grid_of,
                                       qe16_.data() + first, ctx.random);
                split_limbs(qg16_.data() + first, count, qg_.data() + first, qgl_.data() + first);
                split_limbs(qe16_.data() + first, count, qe_.data() + first, qel_.data() + first);
            }
        }
        // (the meter counts the pass above, both roundings, as the weight gradient's time; the
        // roundings made with the dx products count as dx's)
        const auto t1 = std::chrono::steady_clock::now();

        // dx = conv^T with the per-channel weight scales folded into the error:
        // dx[j, p] = sum_o sw[o] q[o, j] g[o, p] = sum_o q[o, j] e[o, p], e = sw[o] g[o, p],
        // e quantized like the error (nudged range grid per group, stochastic rounding) at the error
        // width. conv^T runs as a forward convolution (the same integer product, no col2im): the codes
        // of e are spread onto a (H + k - 1) x (W + k - 1) plane per channel, output (oy, ox) at
        // (oy s + k - 1 - pad, ox s + k - 1 - pad), every other position the code of 0.0 (so a stride
        // leaves zeros between them); the correlation of that plane with the flipped, transposed
        // kernel (in x out k k, unpadded, stride 1) is dx.
        const tensor4* dx = &empty_;
        if (need_dx) {
            const std::int8_t* wq = qw_.values.data();
            const std::size_t in = in_channels(), k = kernel(), k2 = k * k, cqo = (out + 3) / 4;
            // rows: input channels; K: (tap of the flipped kernel, output-channel quad, channel in quad);
            // tap t = ky k + kx of the flipped kernel is tap k2 - 1 - t of the forward one
            weight_rows_quads(in, k2, out, at_, rat_, [&](std::size_t c, std::size_t tap, std::size_t o) {
                return wq[(o * in + c) * k2 + (k2 - 1 - tap)];
            });
            const conv_geometry gt{out, xs.h + k - 1, xs.w + k - 1, k, 1, 0};
            const std::size_t hb = gt.h, wb = gt.w, ho = g.out_h(), wo = g.out_w();
            const auto lead = static_cast<std::ptrdiff_t>(k - 1) - static_cast<std::ptrdiff_t>(g.pad);
            const auto st = static_cast<std::ptrdiff_t>(g.stride);
            ensure_shape(dx_, xs);
            for (std::size_t si = 0; si < segs_.size(); ++si) {
                const segment& sg = segs_[si];
                const std::size_t per4 = cqo * hb * wb * 4;
                const auto zh = static_cast<std::uint8_t>(sg.limbs() ? sg.ze >> 8 : sg.ze),
                           zl = static_cast<std::uint8_t>(sg.ze & 255);
                if (!sg.limbs()) {
                    // each sample right before its product, in cache: dy's two stochastic roundings
                    // (its codes for dW, e's codes), then e's spread quads
                    const detail::grid gg = err_grids[si].first, ge = err_grids[si].second;
                    integer_conv_quads(
                        [&](std::size_t s, std::uint8_t* buf) {
                            thread_local std::vector<std::uint8_t> e;
                            e.resize(per_y);
                            rng r(sample_seeds[si][s - sg.s0]);
                            detail::quantize_stochastic_planes_pair(
                                dy.data() + s * per_y, out, p, [&](std::size_t) { return gg; }, qg_.data() + s * per_y,
                                [&](std::size_t o) { return e_grid(ge, sw[o]); }, e.data(), r);
                            spread_quads(e.data(), out, ho, wo, hb, wb, lead, st, zh, buf);
                        },
                        gt, sg.ze, at_.data(), rat_.data(), in, sg.s0, sg.n, [&](std::size_t) { return sg.se; },
                        nullptr, dx_.data(), {}, hook);
                    continue;
                }
                spread4_.resize(xs.n * per4 + 4 * k + 64); // see integer_conv_quads
                spread4l_.resize(spread4_.size());
                parallel_dynamic(sg.n, [&](std::size_t i, int) {
                    const std::size_t s = sg.s0 + i;
                    spread_quads(qe_.data() + s * per_y, out, ho, wo, hb, wb, lead, st, zh, spread4_.data() + s * per4);
                    spread_quads(qel_.data() + s * per_y, out, ho, wo, hb, wb, lead, st, zl, spread4l_.data() + s * per4);
                });
                integer_conv_quads_limbs(spread4_.data(), zh, spread4l_.data(), zl, gt, at_.data(), rat_.data(), in,
                                         sg.s0, sg.n, sg.se, dx_.data(), hook);
            }
            dx = &dx_;
        }
        const auto t2 = std::chrono::steady_clock::now();

        // dW[o, j] = sum over groups of sx sg sum_p (qx[j, p] - zx)(qg[o, p] - zg)
        const int threads = num_threads();
        const std::size_t entries = kk * out;
        dw_sum_.assign(entries, 0.0);
        // dW^T (kk x out) = im2col(Qx) (kk x pixels) x Qg^T, exact int64 sums per thread, reduced in a
        // fixed order, scaled per group. Stride 1: im2col is implicit: row j of one sample is the view of
        // its padded codes at j's (channel, ky, kx) offset over "wide" pixels (oy * padded width + ox,
        // junk for ox >= out width, where the error operand holds its zero point so that they add 0);
        // the products of a group of samples accumulate in int32 (total inner length <= igemm_max_k),
        // with one zero-point correction per group. Other strides: an explicit im2col per group.
        const std::size_t ho = g.out_h(), wo = g.out_w(), pc4 = (ho * gp.w + 3) / 4 * 4;
        const bool wide = g.stride == 1 && pc4 <= kernels::igemm_max_k; // else: an image's pixels per product
        const std::size_t group = wide ? std::max<std::size_t>(1, kernels::igemm_max_k / pc4) : group_size(p);
        std::vector<std::size_t> row_at(wide ? kk : 0);
        for (std::size_t j = 0; j < row_at.size(); ++j) {
            const std::size_t k2 = gp.k * gp.k, c = j / k2, tap = j % k2;
            row_at[j] = c * gp.h * gp.w + (tap / gp.k) * gp.w + tap % gp.k;
        }
        for (const auto& sg : segs_) {
            dw_acc_.assign(static_cast<std::size_t>(threads) * entries, 0);
            const auto zx = static_cast<std::uint8_t>(sg.zx);
            // the error operand: the codes themselves, or (errors wider than 8 bits) the high limb
            // (weight 256) and the low limb, each with its part of the zero point
            const std::size_t nl = sg.limbs() ? 2 : 1;
            const std::uint8_t* codes[2] = {qg_.data(), qgl_.data()};
            const int zl[2] = {sg.limbs() ? sg.zg >> 8 : sg.zg, sg.zg & 255};
            const std::int64_t weight[2] = {sg.limbs() ? 256 : 1, 1};
            if (wide) {
                // groups of samples handed out dynamically: the per-thread sums are exact integers,
                // so which thread took a group does not change dW
                // (about four groups per thread, none longer than the int32 sums allow)
                const std::size_t share = (sg.n + 4 * static_cast<std::size_t>(threads) - 1) /
                                          (4 * static_cast<std::size_t>(threads));
                const std::size_t per = std::max<std::size_t>(1, std::min(group, share)),
                                  groups = (sg.n + per - 1) / per;
                parallel_dynamic(groups, [&](std::size_t gi, int thread) {
                    const std::size_t b0 = gi * per, b1 = std::min(sg.n, b0 + per);
                    thread_local std::vector<std::uint8_t> gb;
                    thread_local std::vector<const std::uint8_t*> rows;
                    thread_local kernels::packed_s8 packed;
                    thread_local std::vector<std::int32_t> c;
                    thread_local std::vector<std::int64_t> rsx, csum;
                    std::int64_t* acc = dw_acc_.data() + static_cast<std::size_t>(thread) * entries;
                    // one product for both limbs: B's columns are the output channels' high limbs,
                    // then their low limbs (the rows of A are read once)
                    const std::size_t cols = nl * out;
                    gb.resize(cols * pc4);
                    rows.resize(kk);
                    rsx.assign(kk, 0);
                    c.assign(kk * cols, 0);
                    csum.assign(cols, 0);
                    for (std::size_t i = b0; i < b1; ++i) {
                        const std::size_t s = sg.s0 + i;
                        const std::uint8_t* xs0 = qx_.data() + s * per_xp;
                        for (std::size_t j = 0; j < kk; ++j) {
                            rows[j] = xs0 + row_at[j];
                        }
                        // row sums: row (c, ky, kx) sums the run of pc4 codes from ky wp + kx of
                        // channel c's plane; one full sum per channel, then each next run differs
                        // from the previous by its ends (one code per kx step, a line per ky step)
                        const std::size_t kw = gp.k, wpad = gp.w, plane = gp.h * gp.w;
                        for (std::size_t c = 0; c < gp.c; ++c) {
                            const std::uint8_t* base = xs0 + c * plane;
                            std::int32_t line = 0; // sum of the run starting at ky wp (pc4 * 255 < 2^31)
                            for (std::size_t q = 0; q < pc4; ++q) {
                                line += base[q];
                            }
                            for (std::size_t ky = 0; ky < kw; ++ky) {
                                if (ky > 0) {
                                    const std::uint8_t* drop = base + (ky - 1) * wpad;
                                    for (std::size_t q = 0; q < wpad; ++q) {
                                        line += static_cast<std::int32_t>(drop[q + pc4]) - drop[q];
                                    }
                                }
                                std::int32_t run = line;
                                const std::uint8_t* at = base + ky * wpad;
                                for (std::size_t kx = 0; kx < kw; ++kx) {
                                    if (kx > 0) {
                                        run += static_cast<std::int32_t>(at[kx - 1 + pc4]) - at[kx - 1];
                                    }
                                    rsx[(c * kw + ky) * kw + kx] += run;
                                }
                            }
                        }
                        for (std::size_t l = 0; l < nl; ++l) {
                            std::uint8_t* gl = gb.data() + l * out * pc4;
                            std::memset(gl, zl[l], out * pc4);
                            for (std::size_t o = 0; o < out; ++o) {
                                const std::uint8_t* src = codes[l] + s * per_y + o * p;
                                for (std::size_t oy = 0; oy < ho; ++oy) {
                                    detail::copy_short(gl + o * pc4 + oy * gp.w, src + oy * wo, wo);
                                }
                            }
                        }
                        kernels::pack_u8_shifted_transposed(pc4, cols, gb.data(), pc4, packed);
                        for (std::size_t o = 0; o < cols; ++o) {
                            csum[o] += packed.col_sums[o];
                        }
                        kernels::igemm_u8s8_rows_accumulate(kk, rows.data(), packed, c.data(), cols);
                    }
                    const std::int64_t k64 = static_cast<std::int64_t>((b1 - b0) * pc4);
                    for (std::size_t l = 0; l < nl; ++l) {
                        dw_correct(acc, c.data() + l * out, cols, csum.data() + l * out, rsx.data(), kk, out,
                                   128 - zl[l], sg.zx, k64, weight[l]);
                    }
                });
            } else {
                const std::size_t groups = (sg.n + group - 1) / group;
                parallel_dynamic(groups, [&](std::size_t gi, int thread) { // exact sums, as above
                    thread_local std::vector<std::uint8_t> col, gb;
                    thread_local kernels::packed_s8 packed;
                    thread_local std::vector<std::int32_t> c;
                    thread_local std::vector<std::int64_t> rsx;
                    std::int64_t* acc = dw_acc_.data() + static_cast<std::size_t>(thread) * entries;
                    // the samples of a group side by side: one product with inner length cnt * p and
                    // the limbs' columns side by side (high, then low)
                    const std::size_t first = sg.s0 + gi * group, cnt = std::min(group, sg.s0 + sg.n - first),
                                      ld = cnt * p, cols = nl * out;
                    c.resize(kk * cols);
                    rsx.resize(kk);
                    col.resize(kk * ld);
                    gb.resize(cols * ld);
                    for (std::size_t s = 0; s < cnt; ++s) {
                        im2col_padded(qx_.data() + (first + s) * per_xp, gp, col.data() + s * p, ld, zx);
                    }
                    for (std::size_t j = 0; j < kk; ++j) {
                        const std::uint8_t* cj = col.data() + j * ld;
                        std::int32_t sum = 0; // ld * 255 < 2^31 (ld <= igemm_max_k, checked by the packing)
                        for (std::size_t q = 0; q < ld; ++q) {
                            sum += cj[q];
                        }
                        rsx[j] = sum;
                    }
                    const std::int64_t k64 = static_cast<std::int64_t>(ld);
                    for (std::size_t l = 0; l < nl; ++l) {
                        for (std::size_t s = 0; s < cnt; ++s) {
                            for (std::size_t o = 0; o < out; ++o) {
                                std::memcpy(gb.data() + (l * out + o) * ld + s * p, codes[l] + (first + s) * per_y + o * p,
                                            p);
                            }
                        }
                    }
                    kernels::pack_u8_shifted_transposed(ld, cols, gb.data(), ld, packed);
                    kernels::igemm_u8s8(kk, col.data(), ld, packed, c.data(), cols);
                    thread_local std::vector<std::int64_t> cs;
                    cs.resize(cols);
                    for (std::size_t o = 0; o < cols; ++o) {
                        cs[o] = packed.col_sums[o];
                    }
                    for (std::size_t l = 0; l < nl; ++l) {
                        dw_correct(acc, c.data() + l * out, cols, cs.data() + l * out, rsx.data(), kk, out,
                                   128 - zl[l], sg.zx, k64, weight[l]);
                    }
                });
            }
            const double sxg = static_cast<double>(sg.sx) * static_cast<double>(sg.sg);
            for (std::size_t e = 0; e < entries; ++e) {
                std::int64_t total = 0;
                for (int t = 0; t < threads; ++t) {
                    total += dw_acc_[static_cast<std::size_t>(t) * entries + e];
                }
                dw_sum_[e] += sxg * static_cast<double>(total);
            }
        }
        ensure_shape(dw_, shape_of(float_.weight()));
        for (std::size_t o = 0; o < out; ++o) {
            for (std::size_t j = 0; j < kk; ++j) {
                dw_.data()[o * kk + j] = static_cast<float>(dw_sum_[j * out + o]); // the sums are [kk x out]
            }
        }
        tensor1& db = bias_grad_;
        if (options().bias) {
            if (db.size() != out) {
                db.resize({out});
            }
            for (std::size_t o = 0; o < out; ++o) {
                double total = 0.0;
                for (const auto& sg : segs_) {
                    std::int64_t sum = 0;
                    for (std::size_t s = sg.s0; s < sg.s0 + sg.n; ++s) {
                        const std::size_t at = s * per_y + o * p;
                        for (std::size_t j = 0; j < p; ++j) {
                            sum += static_cast<std::int64_t>(sg.limbs() ? qg16_[at + j] : qg_[at + j]) - sg.zg;
                        }
                    }
                    total += static_cast<double>(sg.sg) * static_cast<double>(sum);
                }
                db(o) = static_cast<float>(total);
            }
        }
        const auto t3 = std::chrono::steady_clock::now();
        if (m != nullptr) {
            for (const auto& sg : segs_) {
                const std::uint64_t macs = static_cast<std::uint64_t>(sg.n) * out * p * kk;
                const op_format fa = op_format::integer(sg.widths.act), fw = op_format::integer(sg.widths.weight),
                                fg = op_format::integer(sg.widths.error);
                m->mac(id(), phase::weight_gradient, fa, fg, macs);
                if (need_dx) {
                    m->mac(id(), phase::backward_input, fw, fg, macs);
                }
            }
            // errors wider than 8 bits: their uint16 codes and the low limbs too
            const std::size_t wide_g = any_limbs ? 2 * qg16_.size() + qgl_.size() : 0,
                              wide_e = any_limbs && need_dx ? 2 * qe16_.size() + qel_.size() : 0;
            m->bytes(id(), phase::weight_gradient, qx_.size() + qg_.size() + wide_g, 4 * dw_.size());
            m->time(id(), phase::weight_gradient,
                    std::chrono::duration<double>((t1 - t0) + (t3 - t2)).count());
            if (need_dx) {
                m->bytes(id(), phase::backward_input, 4 * dy.size() + dy.size() + wide_e + qw_.values.size(),
                         4 * dx->size());
                m->time(id(), phase::backward_input, std::chrono::duration<double>(t2 - t1).count());
            }
        }
        return *dx;
    }

    void collect_parameters(std::vector<parameter>& ps) {
        ensure_shape(dw_, shape_of(float_.weight()));
        add_parameter(ps, "weight", span_of(float_.weight()), span_of(dw_), param_role::weight, true);
        if (options().bias) {
            if (bias_grad_.size() != out_channels()) {
                bias_grad_.resize({out_channels()});
                bias_grad_.fill(0.0f);
            }
            add_parameter(ps, "bias", span_of(float_.bias()), span_of(bias_grad_), param_role::bias, true);
        }
    }

    void save(archive_writer& a) const {
        a.tag("quantized_conv2d/1");
        a.u32(static_cast<std::uint32_t>(prec_.act));
        a.u32(static_cast<std::uint32_t>(prec_.weight));
        a.u32(static_cast<std::uint32_t>(prec_.error));
        a.u32(has_running_ ? 1 : 0);
        a.floats(std::vector<float>{running_.lo, running_.hi});
        float_.save(a);
    }
    void load(archive_reader& a) {
        a.expect("quantized_conv2d/1");
        bit_widths p;
        p.act = static_cast<int>(a.u32());
        p.weight = static_cast<int>(a.u32());
        p.error = static_cast<int>(a.u32());
        check_kernel_widths(p, name() + " (checkpoint)");
        const bool has = a.u32() != 0;
        std::vector<float> r(2);
        a.floats(r, name() + ".running_range");
        float_.load(a);
        prec_ = p;
        has_running_ = has;
        running_ = {r[0], r[1]};
    }

private:
    /// Samples per integer product: side by side until a row has ~256 columns.
    [[nodiscard]] static std::size_t group_size(std::size_t p) noexcept {
        return std::max<std::size_t>(1, 256 / std::max<std::size_t>(p, 1));
    }

    /// Throws (here, not inside a parallel region) when a product of this geometry would sum more
    /// 8-bit products than int32 holds exactly (kernels::igemm_max_k): the forward's and dx's
    /// k k Cin and k k Cout (channels rounded up to 4), dW's one image of output pixels.
    void check_inner_lengths(const conv_geometry& g) const {
        const std::size_t k2 = g.k * g.k, fwd = k2 * ((in_channels() + 3) / 4) * 4,
                          dx = k2 * ((out_channels() + 3) / 4) * 4, dw = g.cols();
        const std::pair<const char*, std::size_t> lengths[] = {{"forward", fwd}, {"input gradient", dx},
                                                               {"weight gradient (pixels per image)", dw}};
        for (const auto& [what, len] : lengths) {
            if (len > kernels::igemm_max_k) {
                throw error(detail::concat(name(), ": the ", what, " product would sum ", len,
                                           " 8-bit products per output, more than int32 holds exactly (",
                                           kernels::igemm_max_k, ")"));
            }
        }
    }

    /// The A of integer_conv_quads: m rows of K signed weight codes in (tap, channel quad, channel in
    /// quad) order, code(r, tap, channel) for channel < channels, 0 for the channels that pad the
    /// last quad; ra = the row sums.
    template <class Code>
    static void weight_rows_quads(std::size_t m, std::size_t taps, std::size_t channels, std::vector<std::int8_t>& a,
                                  std::vector<std::int32_t>& ra, Code&& code) {
        const std::size_t width = (channels + 3) / 4 * 4, kk = taps * width;
        a.resize(m * kk);
        ra.assign(m, 0);
        for (std::size_t r = 0; r < m; ++r) {
            std::int8_t* ar = a.data() + r * kk;
            std::int32_t sum = 0;
            for (std::size_t tap = 0; tap < taps; ++tap) {
                for (std::size_t ch = 0; ch < width; ++ch) {
                    const auto v = static_cast<std::int8_t>(ch < channels ? code(r, tap, ch) : 0);
                    ar[tap * width + ch] = v;
                    sum += v;
                }
            }
            ra[r] = sum;
        }
    }

    /// [min, max] of each of `planes` runs of `size` values, in parallel; a NaN or infinity anywhere
    /// throws frugal::numeric_error (after the parallel region) naming `where`.
    static void plane_ranges(const float* x, std::size_t planes, std::size_t size, std::vector<value_range>& out,
                             const char* where) {
        plane_ranges_of([&](std::size_t i) { return x + i * size; }, planes, size, out, where);
    }
    /// plane_ranges of the planes at(i), i < planes.
    template <class At>
    static void plane_ranges_of(At&& at, std::size_t planes, std::size_t size, std::vector<value_range>& out,
                                const char* where) {
        out.resize(planes);
        std::vector<char> bad(static_cast<std::size_t>(num_threads()), 0);
        parallel_chunks(planes, [&](std::size_t lo, std::size_t hi, int thread) {
            try {
                for (std::size_t i = lo; i < hi; ++i) {
                    out[i] = detail::min_max(at(i), size, where);
                }
            } catch (const numeric_error&) {
                bad[static_cast<std::size_t>(thread)] = 1;
            }
        });
        if (std::find(bad.begin(), bad.end(), 1) != bad.end()) {
            throw numeric_error(detail::concat(where, ": the input contains NaN or infinity"));
        }
    }
    [[nodiscard]] static value_range range_of(const std::vector<value_range>& r, std::size_t first, std::size_t count) {
        value_range all{std::numeric_limits<float>::max(), std::numeric_limits<float>::lowest()};
        for (std::size_t i = first; i < first + count; ++i) {
            all.lo = std::min(all.lo, r[i].lo);
            all.hi = std::max(all.hi, r[i].hi);
        }
        return count > 0 ? all : value_range{};
    }
    /// The grid of e = s_o d (e's grid `ge`) as a grid for d itself: t = (s_o d - offset) / scale =
    /// (d - offset / s_o) s_o / scale; a zero channel (s_o = 0) has e = 0, e's zero code.
    [[nodiscard]] static detail::grid e_grid(const detail::grid& ge, float so) noexcept {
        if (so > 0.0f) {
            return {ge.scale / so, ge.inv_scale * so, ge.offset / so, ge.code_lo, ge.code_hi};
        }
        const float zcode = std::nearbyint(-ge.offset / ge.scale);
        return {0.0f, 0.0f, 0.0f, zcode, zcode};
    }
    /// body(first, count, rng&) over chunks of whole planes (about 16k values each, fixed by the sizes
    /// alone) in parallel, each chunk with its own random stream seeded in order from `source`, so
    /// that what the body draws does not depend on the thread count.
    template <class Body>
    static void seeded_plane_chunks(std::size_t planes, std::size_t size, rng& source, Body&& body) {
        const std::size_t per_chunk = std::max<std::size_t>(1, 16384 / std::max<std::size_t>(size, 1)),
                          chunks = (planes + per_chunk - 1) / per_chunk;
        std::vector<std::uint64_t> seeds(chunks); // read by every thread: not thread_local
        for (auto& v : seeds) {
            v = source();
        }
        parallel_dynamic(chunks, [&](std::size_t ci, int) {
            rng r(seeds[ci]);
            const std::size_t first = ci * per_chunk;
            body(first, std::min(per_chunk, planes - first), r);
        });
    }
    /// detail::quantize_stochastic_planes in parallel (seeded_plane_chunks).
    template <class Out, class GridOf>
    static void stochastic_planes(const float* x, std::size_t planes, std::size_t size, GridOf&& grid_of, Out* out,
                                  rng& source) {
        seeded_plane_chunks(planes, size, source, [&](std::size_t first, std::size_t count, rng& r) {
            detail::quantize_stochastic_planes(
                x + first * size, count, size, [&](std::size_t j) { return grid_of(first + j); }, out + first * size,
                r);
        });
    }
    /// stochastic_planes into two grids at once (detail::quantize_stochastic_planes_pair): one read
    /// of x.
    template <class Out, class GridA, class GridB>
    static void stochastic_planes_pair(const float* x, std::size_t planes, std::size_t size, GridA&& grid_a,
                                       Out* out_a, GridB&& grid_b, Out* out_b, rng& source) {
        seeded_plane_chunks(planes, size, source, [&](std::size_t first, std::size_t count, rng& r) {
            detail::quantize_stochastic_planes_pair(
                x + first * size, count, size, [&](std::size_t j) { return grid_a(first + j); }, out_a + first * size,
                [&](std::size_t j) { return grid_b(first + j); }, out_b + first * size, r);
        });
    }

    /// How integer_conv_quads lays out one sample's codes for a geometry g (g.pad 0): for stride s,
    /// the input is cut into its phases (py, px) < (f, f), f = min(s, k): phase plane (py, px) holds
    /// the inputs (s i + py, s j + px), hc x wc of them (hc = ceil(h / s), wc = ceil(w / s), the code
    /// of 0.0 where that is outside the input). Tap (ky, kx) of output (oy, ox) reads input
    /// (s oy + ky, s ox + kx) = phase (ky % s, kx % s) at (oy + ky / s, ox + kx / s): a stride-1
    /// view of one phase plane, so every stride is one product over "wide" pixels oy wc + ox
    /// (ox >= out_w() is junk). Stride 1: one phase, the padded planes themselves.
    struct quad_layout {
        std::size_t s, f, hc, wc, cq, phase_bytes, bytes, ho, wo, pw;
        explicit quad_layout(const conv_geometry& g) noexcept
            : s(g.stride), f(std::min(g.stride, g.k)), hc((g.h + g.stride - 1) / g.stride),
              wc((g.w + g.stride - 1) / g.stride), cq((g.c + 3) / 4), phase_bytes(cq * hc * wc * 4),
              bytes(f * f * phase_bytes), ho(g.out_h()), wo(g.out_w()), pw(g.out_h() * wc) {}
    };

    /// One sample's padded codes (g.c planes of g.h x g.w) as channel quads in quad_layout's phases:
    /// per phase, ceil(c / 4) planes of 4-byte words (the codes of channels 4q .. 4q + 3), channels
    /// past c at code z.
    static void quads_of_sample(const std::uint8_t* codes, const conv_geometry& g, std::uint8_t z, std::uint8_t* out) {
        const std::size_t plane = g.h * g.w, cq = (g.c + 3) / 4;
        thread_local std::vector<std::uint8_t> zeros;
        if (g.c % 4 != 0) {
            zeros.assign(plane, z);
        }
        const auto channel = [&](std::size_t q, std::size_t t) {
            return 4 * q + t < g.c ? codes + (4 * q + t) * plane : zeros.data();
        };
        if (g.stride == 1) {
            for (std::size_t q = 0; q < cq; ++q) {
                kernels::detail::interleave4(channel(q, 0), channel(q, 1), channel(q, 2), channel(q, 3), plane,
                                             out + q * plane * 4);
            }
            return;
        }
        const quad_layout l(g);
        for (std::size_t py = 0; py < l.f; ++py) {
            for (std::size_t px = 0; px < l.f; ++px) {
                std::uint8_t* phase = out + (py * l.f + px) * l.phase_bytes;
                // the inputs of columns s j + px < w: the first `full` columns of each row
                const std::size_t full = (g.w - px + l.s - 1) / l.s;
                for (std::size_t q = 0; q < cq; ++q) {
                    const std::uint8_t* r[4] = {channel(q, 0), channel(q, 1), channel(q, 2), channel(q, 3)};
                    std::uint8_t* d = phase + q * l.hc * l.wc * 4;
                    for (std::size_t i = 0; i < l.hc; ++i, d += l.wc * 4) {
                        const std::size_t y = l.s * i + py;
                        if (y >= g.h) {
                            std::memset(d, z, l.wc * 4);
                            continue;
                        }
                        for (std::size_t j = 0; j < full; ++j) {
                            const std::size_t at = y * g.w + l.s * j + px;
                            d[4 * j] = r[0][at];
                            d[4 * j + 1] = r[1][at];
                            d[4 * j + 2] = r[2][at];
                            d[4 * j + 3] = r[3][at];
                        }
                        std::memset(d + 4 * full, z, (l.wc - full) * 4);
                    }
                }
            }
        }
    }
    /// dx's operand for one sample, straight from its error codes (`channels` planes of ho x wo): each
    /// plane spread onto hb x wb (output (oy, ox) at (oy st + lead, ox st + lead), the code z
    /// everywhere else) and stored as channel quads (quads_of_sample's layout, channels past
    /// `channels` at z), without the spread planes in between: only the rows and columns that land
    /// inside the plane are written after one fill with z.
    static void spread_quads(const std::uint8_t* e, std::size_t channels, std::size_t ho, std::size_t wo,
                             std::size_t hb, std::size_t wb, std::ptrdiff_t lead, std::ptrdiff_t st, std::uint8_t z,
                             std::uint8_t* quads) {
        const std::size_t cq = (channels + 3) / 4, plane = hb * wb;
        std::memset(quads, z, cq * plane * 4);
        // [first, last) of the outputs i < n whose position i st + lead lies in [0, bound)
        const auto inside = [&](std::size_t n, std::size_t bound) {
            std::size_t a = 0;
            while (a < n && static_cast<std::ptrdiff_t>(a) * st + lead < 0) {
                ++a;
            }
            std::size_t b = a;
            while (b < n && static_cast<std::ptrdiff_t>(b) * st + lead < static_cast<std::ptrdiff_t>(bound)) {
                ++b;
            }
            return std::pair<std::size_t, std::size_t>{a, b};
        };
        const auto [x0, x1] = inside(wo, wb);
        const auto [y0, y1] = inside(ho, hb);
        if (x0 >= x1) {
            return;
        }
        thread_local std::vector<std::uint8_t> zrow;
        thread_local std::vector<std::uint8_t> words;
        zrow.assign(wo, z);
        words.resize(4 * wo);
        const std::size_t nx = x1 - x0, ps = ho * wo;
        for (std::size_t q = 0; q < cq; ++q) {
            for (std::size_t oy = y0; oy < y1; ++oy) {
                const std::uint8_t* r[4];
                for (std::size_t t = 0; t < 4; ++t) {
                    r[t] = (4 * q + t < channels ? e + (4 * q + t) * ps + oy * wo : zrow.data()) + x0;
                }
                const auto iy = static_cast<std::size_t>(static_cast<std::ptrdiff_t>(oy) * st + lead);
                std::uint8_t* row = quads + (q * plane + iy * wb) * 4;
                if (st == 1) {
                    kernels::detail::interleave4(r[0], r[1], r[2], r[3], nx,
                                                 row + static_cast<std::size_t>(static_cast<std::ptrdiff_t>(x0) + lead) * 4);
                    continue;
                }
                kernels::detail::interleave4(r[0], r[1], r[2], r[3], nx, words.data());
                for (std::size_t ox = x0; ox < x1; ++ox) {
                    const auto ix = static_cast<std::size_t>(static_cast<std::ptrdiff_t>(ox) * st + lead);
                    std::memcpy(row + ix * 4, words.data() + (ox - x0) * 4, 4);
                }
            }
        }
    }
    /// out[s] (m planes of out_h() x out_w() floats, for the samples s in [s0, s0 + n)) =
    /// row_scale(r) sum_k a[r, k] (B_s[k, p] - z) + bias[r], the convolution of geometry g (g.pad 0:
    /// the codes are padded already) without any packing: the codes come as channel quads
    /// (quads_of_sample, quad_layout: the unsigned codes as they are) and the integer product reads
    /// them where they are (kernels::igemm_s8u8_offsets): group (tap, quad) of B is the quad's
    /// plane of the tap's phase viewed at the tap's offset, column oy wc + ox ("wide": ox >= out_w()
    /// is junk and skipped). a holds m rows of signed weight codes over K = k k ceil(c / 4) 4 in
    /// (tap, quad, channel) order (weight_rows_quads), ra their sums: with B unsigned,
    ///   sum_k a (b - z) = C - z ra,
    /// so no column sums are needed. Each sample is one product. `quads_of(s, buf)` writes sample
    /// s's quads into buf, a per-thread buffer with 4 k + 64 bytes of slack after them (the last
    /// tap's junk columns read up to 4 (k - 1) bytes past the quads, the portable kernel up to 60
    /// more): made right before the product, they are read from cache.
    template <class QuadsOf, class RowScale, class Hook = detail::no_plane_hook>
    static void integer_conv_quads(QuadsOf&& quads_of, const conv_geometry& g, int z, const std::int8_t* a,
                                   const std::int32_t* ra, std::size_t m, std::size_t s0, std::size_t n,
                                   RowScale&& row_scale, const float* bias, float* out,
                                   detail::plane_sinks sums = {}, Hook&& hook = {}) {
        const quad_layout l(g);
        const std::size_t k2 = g.k * g.k, kk = k2 * l.cq * 4;
        const std::vector<std::size_t> off = quad_offsets(g);
        parallel_dynamic(n, [&](std::size_t i, int) { // each sample writes its own output
            thread_local std::vector<std::int32_t> c;
            thread_local std::vector<std::uint8_t> quads;
            c.resize(m * l.pw);
            quads.resize(l.bytes + 4 * g.k + 64);
            const std::size_t s = s0 + i;
            quads_of(s, quads.data());
            const kernels::detail::offset_cols_u8 b{quads.data(), off.data(), kk, l.pw, k2 * l.cq};
            kernels::igemm_s8u8_offsets(m, a, kk, b, c.data(), l.pw);
            dequantize(c.data(), s, l.wc, l.ho, l.wo, z, ra, m, row_scale, bias, out, sums, hook);
        });
    }

    /// Offsets of the (tap, quad) groups of B in one sample's channel quads (integer_conv_quads,
    /// quad_layout): tap (ky, kx) reads phase (ky % s, kx % s) from (ky / s, kx / s) on.
    [[nodiscard]] static std::vector<std::size_t> quad_offsets(const conv_geometry& g) {
        const quad_layout l(g);
        const std::size_t k2 = g.k * g.k;
        std::vector<std::size_t> off(k2 * l.cq);
        for (std::size_t tap = 0; tap < k2; ++tap) {
            const std::size_t ky = tap / g.k, kx = tap % g.k, phase = (ky % l.s) * l.f + kx % l.s;
            for (std::size_t q = 0; q < l.cq; ++q) {
                off[tap * l.cq + q] =
                    phase * l.phase_bytes + (q * l.hc * l.wc + (ky / l.s) * l.wc + kx / l.s) * 4;
            }
        }
        return off;
    }

    /// integer_conv_quads for codes wider than 8 bits held as two limbs (code = 256 hi + lo, zero
    /// point z = 256 z_hi + z_lo): one product per limb, combined exactly per output in int64,
    /// out = scale (256 (hi's sum) + lo's sum), each sum sum_k a (limb - z_limb) (a the signed weight
    /// codes, as integer_conv_quads). No bias.
    template <class Hook>
    static void integer_conv_quads_limbs(const std::uint8_t* hi, int z_hi, const std::uint8_t* lo, int z_lo,
                                         const conv_geometry& g, const std::int8_t* a, const std::int32_t* ra,
                                         std::size_t m, std::size_t s0, std::size_t n, float scale, float* out,
                                         Hook&& hook) {
        const std::size_t k2 = g.k * g.k, cq = (g.c + 3) / 4, per4 = cq * g.h * g.w * 4, kk = k2 * cq * 4,
                          ho = g.out_h(), wo = g.out_w(), pw = ho * g.w, p = ho * wo;
        if (g.stride != 1) {
            throw error("frugal::quantized_conv: the limbs' product runs on stride-1 (spread) geometries only");
        }
        const std::vector<std::size_t> off = quad_offsets(g);
        parallel_dynamic(n, [&](std::size_t i, int) { // each sample writes its own output
            thread_local std::vector<std::int32_t> ch, cl;
            ch.resize(m * pw);
            cl.resize(m * pw);
            const std::size_t s = s0 + i;
            kernels::igemm_s8u8_offsets(m, a, kk, kernels::detail::offset_cols_u8{hi + s * per4, off.data(), kk, pw, k2 * cq},
                                        ch.data(), pw);
            kernels::igemm_s8u8_offsets(m, a, kk, kernels::detail::offset_cols_u8{lo + s * per4, off.data(), kk, pw, k2 * cq},
                                        cl.data(), pw);
            for (std::size_t r = 0; r < m; ++r) {
                const std::int64_t rh = -static_cast<std::int64_t>(z_hi) * ra[r],
                                   rl = -static_cast<std::int64_t>(z_lo) * ra[r];
                float* yo = out + (s * m + r) * p;
                for (std::size_t oy = 0; oy < ho; ++oy) {
                    limb_run(ch.data() + r * pw + oy * g.w, cl.data() + r * pw + oy * g.w, wo, static_cast<double>(rh),
                             static_cast<double>(rl), scale, yo + oy * wo);
                }
                hook(s * m + r, yo);
            }
        });
    }

    /// y[j] = scale (256 (ch[j] + rh) + cl[j] + rl): the two limbs' sums (rh = -z_hi ra, rl = -z_lo ra)
    /// combined in double, exactly (each below 2^31 in magnitude, the total below 2^40), then scaled
    /// in double and rounded to float.
    static void limb_run(const std::int32_t* __restrict ch, const std::int32_t* __restrict cl, std::size_t n,
                         double rh, double rl, float scale, float* __restrict y) noexcept {
        const double sc = static_cast<double>(scale);
        for (std::size_t j = 0; j < n; ++j) {
            const double vh = static_cast<double>(ch[j]) + rh;
            const double vl = static_cast<double>(cl[j]) + rl;
            y[j] = static_cast<float>(sc * (256.0 * vh + vl));
        }
    }

    /// Cuts n codes of up to 16 bits into their high and low bytes, in parallel.
    static void split_limbs(const std::uint16_t* q, std::size_t n, std::uint8_t* hi, std::uint8_t* lo) {
        parallel_spans(n, std::size_t{1} << 15, [&](std::size_t b, std::size_t e) {
            split_run(q + b, e - b, hi + b, lo + b);
        });
    }
    static void split_run(const std::uint16_t* __restrict q, std::size_t n, std::uint8_t* __restrict hi,
                          std::uint8_t* __restrict lo) noexcept {
        for (std::size_t i = 0; i < n; ++i) {
            hi[i] = static_cast<std::uint8_t>(q[i] >> 8);
            lo[i] = static_cast<std::uint8_t>(q[i] & 255u);
        }
    }

    /// Sample s's output planes from its integer product c (m rows of ho x cw "wide" pixels, output
    /// row oy at oy cw): out = row_scale(r) (C - z ra[r]) + bias[r]. Every term fits int32: |C - z ra|
    /// = |sum_k a (b - z)| <= 127 * 255 K and |z ra| <= 255 * 127 K, below 2^31 for K <=
    /// kernels::igemm_max_k. Then, while each plane is in cache: its sums into `sums` (if set) and
    /// hook(plane index, plane).
    template <class RowScale, class Hook = detail::no_plane_hook>
    static void dequantize(const std::int32_t* c, std::size_t s, std::size_t cw, std::size_t ho, std::size_t wo, int z,
                           const std::int32_t* ra, std::size_t m, RowScale&& row_scale, const float* bias, float* out,
                           detail::plane_sinks sums, Hook&& hook = {}) {
        const std::size_t p = ho * wo, ld = ho * cw;
        thread_local std::vector<float> wide; // narrow rows: a whole wide plane, then its rows
        for (std::size_t r = 0; r < m; ++r) {
            const float scale = row_scale(r);
            const auto row = static_cast<std::int32_t>(-static_cast<std::int64_t>(z) * ra[r]);
            const float b = bias != nullptr ? bias[r] : 0.0f;
            float* yo = out + (s * m + r) * p;
            const std::int32_t* co = c + r * ld;
            if (cw == wo) { // no junk columns: one run
                dequantize_run(co, p, row, scale, b, yo);
            } else if (wo >= 16) {
                for (std::size_t oy = 0; oy < ho; ++oy) {
                    dequantize_run(co + oy * cw, wo, row, scale, b, yo + oy * wo);
                }
            } else { // rows shorter than a vector: the wide plane in one run, then its rows
                const std::size_t span = (ho - 1) * cw + wo;
                wide.resize(span);
                dequantize_run(co, span, row, scale, b, wide.data());
                for (std::size_t oy = 0; oy < ho; ++oy) {
                    detail::copy_short(yo + oy * wo, wide.data() + oy * cw, wo * sizeof(float));
                }
            }
            if (sums.ranges != nullptr) { // the plane is still in cache
                const kernels::moments mo = kernels::sum_squares_min_max(yo, p);
                sums.sums[s * m + r] = {mo.sum, mo.squares};
                sums.ranges[s * m + r] = {mo.lo, mo.hi};
            } else if (sums.sums != nullptr) {
                sums.sums[s * m + r] = kernels::sum_and_squares(yo, p);
            }
            hook(s * m + r, yo);
        }
    }
    /// y[j] = scale (c[j] + row) + b, in int32 (see dequantize).
    static void dequantize_run(const std::int32_t* __restrict c, std::size_t n, std::int32_t row, float scale, float b,
                               float* __restrict y) noexcept {
        using simd::fbatch;
        using simd::ibatch;
        const auto at = [&](std::size_t j) {
            const ibatch v = ibatch::load_unaligned(c + j) + ibatch(row);
            simd::fma(fbatch(scale), xsimd::to_float(v), fbatch(b)).store_unaligned(y + j);
        };
        if (n < simd::width) {
            for (std::size_t j = 0; j < n; ++j) {
                y[j] = simd::fma1(scale, static_cast<float>(c[j] + row), b);
            }
            return;
        }
        std::size_t j = 0;
        for (; j + simd::width <= n; j += simd::width) {
            at(j);
        }
        if (j < n) { // the last vector overlaps the previous one: a row of 28 is two vectors, not 16 + 12 scalars
            at(n - simd::width);
        }
    }

    /// The geometry of codes stored with their padding: the same products, g.pad == 0.
    [[nodiscard]] static conv_geometry padded_geometry(const conv_geometry& g) noexcept {
        return {g.c, g.h + 2 * g.pad, g.w + 2 * g.pad, g.k, g.stride, 0};
    }

    const tensor4& forward_float(context& ctx, const tensor4& x) {
        context inner = ctx;
        const tensor4& y = float_.forward(inner, x);
        ensure_shape(dw_, shape_of(float_.weight()));
        return y;
    }

    conv2d float_; // the float master weights (and the full-precision path)
    /// A group of consecutive samples at one set of widths, with its grids.
    struct segment {
        std::size_t s0 = 0, n = 0;
        bit_widths widths;
        float sx = 1.0f, sg = 1.0f, se = 1.0f;
        int zx = 0, zg = 0, ze = 0;
        /// Errors wider than 8 bits: two 8-bit limbs per code.
        [[nodiscard]] bool limbs() const noexcept { return widths.error > 8; }
    };

    bit_widths prec_;
    std::vector<precision_group> groups_;
    std::vector<segment> segs_;
    int wbits_ = 8;
    bool float_mode_ = false, has_running_ = false, have_forward_ = false, input_ranges_ok_ = false;
    bool keep_sums_ = false, sums_ok_ = false, keep_out_ranges_ = false, out_ranges_ok_ = false;
    std::vector<std::pair<float, float>> out_sums_; // per (sample, output channel) plane
    std::vector<value_range> out_ranges_;           // with out_sums_: the output planes' [min, max]
    value_range running_{};
    shape4 x_shape_{};
    std::vector<std::uint8_t> qx_, qg_, qe_;
    std::vector<std::int8_t> awq_, at_; // integer_conv_quads' weight rows: forward's, dx's
    std::vector<std::uint16_t> qg16_, qe16_; // error codes wider than 8 bits
    std::vector<std::uint8_t> qgl_, qel_;    // their low limbs (qg_ and qe_ then hold the high ones)
    std::vector<std::uint8_t> spread4_, spread4l_; // channel quads of wide errors (integer_conv_quads_limbs)
    std::vector<value_range> ranges_; // per (sample, channel) plane
    quantized_tensor<std::int8_t, 4> qw_;
    std::vector<std::int32_t> raw_, rat_;
    std::vector<std::int64_t> dw_acc_;
    std::vector<value_range> row_ranges_; // forward_rows: the chosen samples' plane ranges
    tensor4 xg_;                          // forward_rows in float mode: the gathered samples
    std::vector<double> dw_sum_;
    tensor4 y_, dx_, dw_, empty_;
    tensor1 bias_grad_;
};

static_assert(layer<quantized_conv>);

/// ConvMaker for basic_block: `basic_block<quantized_conv_maker>` runs its convolutions in 8 bits.
struct quantized_conv_maker {
    using type = quantized_conv;
    [[nodiscard]] static quantized_conv make(std::size_t in, std::size_t out, std::size_t k, conv_options o) {
        return quantized_conv(in, out, k, o);
    }
};

} // namespace frugal

#endif
