#ifndef FRUGAL_LAYERS_BATCHNORM_HPP
#define FRUGAL_LAYERS_BATCHNORM_HPP

/// @file
/// frugal::batchnorm: batch normalization over the channels of an NCHW
/// tensor (statistics over N, H, W).
///
/// Training mode normalizes with the batch mean and (biased) variance and
/// updates running statistics, `run = (1 - momentum) * run + momentum * batch`
/// with the unbiased batch variance; evaluation mode uses the running
/// statistics. The scale (gamma) and shift (beta) are exposed for network
/// slimming, which reads and penalizes gamma.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <utility>
#include <vector>

#include "frugal/layers/layer.hpp"
#include "frugal/numeric/quantizer.hpp"
#include "frugal/numeric/simd.hpp"
#include "frugal/tensor/kernels/elementwise.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

namespace detail {
/// Which part of a batch norm's output gradient g reaches it: all (none), what its own ReLU passed
/// (relu: recomputed from the input x and the forward's map, y = max(fa x + fb, 0) > 0 exactly where
/// fa x + fb > 0, the same fused product lane for lane, simd::fma1 in scalar tails, so a backward
/// needs no copy of y), or what a later ReLU passed, given as one byte per value (flags, 1 or 0:
/// basic_block's residual ReLU).
enum class bn_gate { none, relu, flags };
template <bn_gate G>
inline simd::fbatch gate_batch(const float* g, const simd::fbatch& xv, const simd::fbatch& fa, const simd::fbatch& fb,
                               const std::uint8_t* flags, std::size_t i) noexcept {
    const simd::fbatch gv = simd::fbatch::load_unaligned(g + i);
    if constexpr (G == bn_gate::relu) {
        return xsimd::select(simd::fma(xv, fa, fb) > simd::fbatch(0.0f), gv, simd::fbatch(0.0f));
    } else if constexpr (G == bn_gate::flags) {
        return xsimd::select(simd::load_flags(flags + i), gv, simd::fbatch(0.0f));
    } else {
        return gv;
    }
}
template <bn_gate G>
inline float gate_scalar(const float* g, float x, float fa, float fb, const std::uint8_t* flags,
                         std::size_t i) noexcept {
    if constexpr (G == bn_gate::relu) {
        return simd::fma1(x, fa, fb) > 0.0f ? g[i] : 0.0f;
    } else if constexpr (G == bn_gate::flags) {
        return flags[i] != 0 ? g[i] : 0.0f;
    } else {
        return g[i];
    }
}

/// (sum of g, sum of g * (x - mu)) over n floats, g gated as G says.
template <bn_gate G>
inline std::pair<float, float> sum_and_centered_dot(const float* g, const float* x, float mu, float fa, float fb,
                                                    const std::uint8_t* flags, std::size_t n) noexcept {
    using simd::fbatch;
    fbatch s(0.0f), d(0.0f);
    const fbatch m(mu), fav(fa), fbv(fb);
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        const fbatch xv = fbatch::load_unaligned(x + i);
        const fbatch gv = gate_batch<G>(g, xv, fav, fbv, flags, i);
        s += gv;
        d = simd::fma(gv, xv - m, d);
    }
    float a = xsimd::hadd(s), b = xsimd::hadd(d);
    for (; i < n; ++i) { // explicit fused products: the compiler's contraction must not depend on G
        const float gv = gate_scalar<G>(g, x[i], fa, fb, flags, i);
        a += gv;
        b = simd::fma1(gv, x[i] - mu, b);
    }
    return {a, b};
}
/// out = a * v + b over n floats, then max(., 0) when Relu. With Track, returns the [min, max]
/// of what it wrote and clears `finite` when a value before the ReLU is NaN or infinite (a ReLU
/// alone would hide a NaN); without, returns nothing useful and costs nothing more.
template <bool Relu = false, bool Track = false>
inline value_range affine(const float* v, float a, float b, float* out, std::size_t n, bool& finite) noexcept {
    using simd::fbatch;
    const fbatch av(a), bv(b), zero(0.0f);
    fbatch lo(std::numeric_limits<float>::max()), hi(std::numeric_limits<float>::lowest()), bad(0.0f);
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        fbatch r = simd::fma(fbatch::load_unaligned(v + i), av, bv);
        if constexpr (Track) {
            bad += r - r;
        }
        if constexpr (Relu) {
            r = xsimd::max(r, zero);
        }
        r.store_unaligned(out + i);
        if constexpr (Track) {
            lo = xsimd::min(lo, r);
            hi = xsimd::max(hi, r);
        }
    }
    value_range range{};
    float tail_bad = 0.0f;
    if constexpr (Track) {
        range = {simd::hmin(lo), simd::hmax(hi)};
    }
    for (; i < n; ++i) {
        float r = simd::fma1(v[i], a, b); // as the lanes: what a mask or a range recomputes
        tail_bad += r - r;
        r = Relu ? (r > 0.0f ? r : 0.0f) : r;
        out[i] = r;
        range.lo = std::min(range.lo, r);
        range.hi = std::max(range.hi, r);
    }
    if constexpr (Track) {
        finite = finite && xsimd::hadd(bad) == 0.0f && tail_bad == 0.0f;
    }
    return range;
}
/// out = a * g + b * v + c over n floats, g gated as G says; Track as for affine.
template <bn_gate G, bool Track = false>
inline value_range combine(const float* g, float fa, float fb, const std::uint8_t* flags, float a, const float* v,
                           float b, float c, float* out, std::size_t n, bool& finite) noexcept {
    using simd::fbatch;
    const fbatch av(a), bv(b), cv(c), fav(fa), fbv(fb);
    fbatch lo(std::numeric_limits<float>::max()), hi(std::numeric_limits<float>::lowest()), bad(0.0f);
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        const fbatch xv = fbatch::load_unaligned(v + i);
        const fbatch r = simd::fma(gate_batch<G>(g, xv, fav, fbv, flags, i), av, simd::fma(xv, bv, cv));
        r.store_unaligned(out + i);
        if constexpr (Track) {
            lo = xsimd::min(lo, r);
            hi = xsimd::max(hi, r);
            bad += r - r;
        }
    }
    value_range range{};
    float tail_bad = 0.0f;
    if constexpr (Track) {
        range = {simd::hmin(lo), simd::hmax(hi)};
    }
    for (; i < n; ++i) {
        const float r = simd::fma1(gate_scalar<G>(g, v[i], fa, fb, flags, i), a, simd::fma1(v[i], b, c)); // as the lanes
        out[i] = r;
        range.lo = std::min(range.lo, r);
        range.hi = std::max(range.hi, r);
        tail_bad += r - r;
    }
    if constexpr (Track) {
        finite = finite && xsimd::hadd(bad) == 0.0f && tail_bad == 0.0f;
    }
    return range;
}
} // namespace detail

/// Batch normalization, optionally followed by a ReLU computed in the same
/// pass (`with_relu`): one read and one write of the activations instead of two.
class batchnorm : public layer_base {
public:
    explicit batchnorm(std::size_t channels, float momentum = 0.1f, float eps = 1e-5f, bool with_relu = false)
        : layer_base(with_relu ? "batchnorm_relu" : "batchnorm"), c_(channels), momentum_(momentum), eps_(eps),
          relu_(with_relu),
          gamma_(tensor1::from_shape({channels})), beta_(tensor1::from_shape({channels})),
          dgamma_(tensor1::from_shape({channels})), dbeta_(tensor1::from_shape({channels})),
          run_mean_(tensor1::from_shape({channels})), run_var_(tensor1::from_shape({channels})),
          mean_(channels), inv_std_(channels), fa_(channels), fb_(channels) {
        if (channels == 0) {
            throw error("frugal::batchnorm: needs at least one channel");
        }
        rng unused;
        reset_parameters(unused);
    }

    [[nodiscard]] std::size_t channels() const noexcept { return c_; }
    /// Scale gamma: what network slimming reads and penalizes.
    [[nodiscard]] tensor1& gamma() noexcept { return gamma_; }
    [[nodiscard]] const tensor1& gamma() const noexcept { return gamma_; }
    [[nodiscard]] tensor1& gamma_grad() noexcept { return dgamma_; }
    [[nodiscard]] tensor1& beta() noexcept { return beta_; }
    [[nodiscard]] const tensor1& beta() const noexcept { return beta_; }
    [[nodiscard]] tensor1& running_mean() noexcept { return run_mean_; }
    [[nodiscard]] const tensor1& running_mean() const noexcept { return run_mean_; }
    [[nodiscard]] tensor1& running_var() noexcept { return run_var_; }
    [[nodiscard]] const tensor1& running_var() const noexcept { return run_var_; }
    [[nodiscard]] float momentum() const noexcept { return momentum_; }
    /// Whether a ReLU follows in the same pass.
    [[nodiscard]] bool with_relu() const noexcept { return relu_; }
    [[nodiscard]] float eps() const noexcept { return eps_; }

    /// Keep the [min, max] of every (sample, channel) plane of the output (forward) and/or of the
    /// input gradient (backward), found in the passes that write them: what a quantized
    /// convolution next to this layer needs and would otherwise measure in a pass of its own
    /// (basic_block<quantized_conv_maker> turns them on). Off by default.
    void keep_ranges(bool output, bool input_grad) noexcept {
        keep_out_ = output;
        keep_dx_ = input_grad;
        out_ok_ = dx_ok_ = false;
    }
    /// The last forward's output ranges per plane (index n * channels + c), or nullptr when not
    /// kept or when a value was not finite (the consumer then measures, and reports, itself).
    [[nodiscard]] const std::vector<value_range>* output_ranges() const noexcept {
        return out_ok_ ? &out_ranges_ : nullptr;
    }
    /// The last backward's input-gradient ranges per plane, as output_ranges().
    [[nodiscard]] const std::vector<value_range>* input_grad_ranges() const noexcept {
        return dx_ok_ ? &dx_ranges_ : nullptr;
    }

    /// gamma = 1, beta = 0, running mean 0, running variance 1.
    void reset_parameters(rng&) {
        gamma_.fill(1.0f);
        beta_.fill(0.0f);
        run_mean_.fill(0.0f);
        run_var_.fill(1.0f);
    }

    [[nodiscard]] shape4 output_shape(const shape4& x) const {
        check(x);
        return x;
    }

    /// @param sums  the (sum, sum of squares) of every (sample, channel) plane of x (index
    ///              n * C + c), when the layer that wrote x found them (kernels::sum_and_squares,
    ///              a quantized convolution's output_sums()): training then skips the pass that
    ///              computes the statistics. Ignored in evaluation and when its size does not match.
    const tensor4& forward(context& ctx, const tensor4& x,
                           const std::vector<std::pair<float, float>>* sums = nullptr) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        const shape4 s = begin_forward(ctx, x);
        const std::size_t hw = s.h * s.w;
        ensure_shape(y_, s);
        // the output ranges are what a quantized convolution reads in training (in evaluation it
        // uses its running range)
        const bool track = keep_out_ && train_;
        if (track) {
            out_ranges_.resize(s.n * c_);
            channel_ok_.assign(c_, 0);
        }
        const bool given = sums != nullptr && sums->size() == s.n * c_;
        parallel_dynamic(c_, [&](std::size_t c, int) { // channels are independent
            const auto [a, b] = channel_affine(c, x, s, given ? sums : nullptr);
            bool finite = std::isfinite(a) && std::isfinite(b);
            const auto planes = [&](auto relu, auto track) {
                for (std::size_t n = 0; n < s.n; ++n) {
                    const std::size_t at = (n * c_ + c) * hw;
                    const value_range r = detail::affine<decltype(relu)::value, decltype(track)::value>(
                        x.data() + at, a, b, y_.data() + at, hw, finite);
                    if constexpr (decltype(track)::value) {
                        out_ranges_[n * c_ + c] = r;
                    }
                }
            };
            if (track) {
                relu_ ? planes(std::true_type{}, std::true_type{}) : planes(std::false_type{}, std::true_type{});
                channel_ok_[c] = finite ? 1 : 0;
            } else {
                relu_ ? planes(std::true_type{}, std::false_type{}) : planes(std::false_type{}, std::false_type{});
            }
        });
        out_ok_ = track && std::find(channel_ok_.begin(), channel_ok_.end(), 0) == channel_ok_.end();
        count_forward(m, x.size(), true, true);
        return y_;
    }

    /// A forward that computes the statistics and the per-channel map y = a x + b (then the ReLU
    /// when with_relu) but does not write y: for a caller that applies the map in a pass of its
    /// own over x (a residual sum, a quantized convolution's quantization of its input), through
    /// affine_scale()/affine_shift() or apply_plane(). backward() then works as after forward(),
    /// and the result equals forward()'s value for value. `sums` as for forward().
    /// @param x_ranges  x's plane ranges (index n * C + c) when known exactly: with
    ///                  keep_ranges(true, ...) in training, output_ranges() then holds the output's
    ///                  plane ranges, derived from them (the map is monotone per channel); nullptr
    ///                  or a non-finite range or map: no output ranges.
    void forward_deferred(context& ctx, const tensor4& x, const std::vector<std::pair<float, float>>* sums = nullptr,
                          const std::vector<value_range>* x_ranges = nullptr) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        const shape4 s = begin_forward(ctx, x);
        const bool given = sums != nullptr && sums->size() == s.n * c_;
        parallel_dynamic(c_, [&](std::size_t c, int) { (void)channel_affine(c, x, s, given ? sums : nullptr); });
        if (keep_out_ && train_ && x_ranges != nullptr && x_ranges->size() == s.n * c_) {
            out_ranges_.resize(s.n * c_);
            bool finite = true;
            for (std::size_t i = 0; i < out_ranges_.size(); ++i) {
                const std::size_t c = i % c_;
                const value_range r = (*x_ranges)[i];
                float lo = simd::fma1(r.lo, fa_[c], fb_[c]), hi = simd::fma1(r.hi, fa_[c], fb_[c]);
                finite = finite && std::isfinite(lo) && std::isfinite(hi) && std::isfinite(fa_[c]);
                if (fa_[c] < 0.0f) {
                    std::swap(lo, hi);
                }
                if (relu_) {
                    lo = std::max(lo, 0.0f);
                    hi = std::max(hi, 0.0f);
                }
                out_ranges_[i] = {lo, hi};
            }
            out_ok_ = finite;
        }
        count_forward(m, x.size(), !given, false); // the consumer reads x for the map and writes its own
    }
    /// After forward_deferred: writes the output after all, as forward() would have, and returns it
    /// (output_ranges() stays as forward_deferred left it). For a caller that cannot use the map.
    const tensor4& materialize() {
        if (x_ == nullptr) {
            throw error(detail::concat(name(), ": materialize called before forward"));
        }
        const shape4 s = shape_of(*x_);
        ensure_shape(y_, s);
        const std::size_t hw = s.h * s.w;
        parallel_chunks(s.n * c_, [&](std::size_t lo, std::size_t hi, int) {
            for (std::size_t i = lo; i < hi; ++i) {
                apply_plane(i, y_.data() + i * hw);
            }
        });
        return y_;
    }
    /// The per-channel map of the last forward: y = affine_scale()[c] x + affine_shift()[c] (then
    /// the ReLU when with_relu()).
    [[nodiscard]] const std::vector<float>& affine_scale() const noexcept { return fa_; }
    [[nodiscard]] const std::vector<float>& affine_shift() const noexcept { return fb_; }
    /// Plane `plane` (index n * C + c) of the last forward's output, computed from its input into
    /// `out` (h * w floats): what forward() wrote there, value for value.
    void apply_plane(std::size_t plane, float* out) const {
        if (x_ == nullptr || plane >= x_->shape()[0] * c_) {
            throw error(detail::concat(name(), ": apply_plane(", plane, ") without a forward that has that plane"));
        }
        const shape4 s = shape_of(*x_);
        const std::size_t hw = s.h * s.w, c = plane % c_;
        bool finite = true;
        if (relu_) {
            (void)detail::affine<true>(x_->data() + plane * hw, fa_[c], fb_[c], out, hw, finite);
        } else {
            (void)detail::affine<false>(x_->data() + plane * hw, fa_[c], fb_[c], out, hw, finite);
        }
    }

    const tensor4& backward(context& ctx, const tensor4& dy) { return backward_impl(ctx, dy, nullptr, false); }

    /// The backward's first pass, plane by plane, ahead of it: for a layer that writes this
    /// layer's output gradient one plane at a time (quantized_conv::backward's plane hook), which
    /// hands each plane over while it is in cache, so that backward_from_plane_sums() skips its
    /// own pass over the output gradient. begin_plane_sums() after the forward; then
    /// plane_sums(i, g) for every plane i (index n * C + c) of the output gradient, from any
    /// thread, each once; then backward_from_plane_sums(ctx, dy). A plane left out makes dgamma,
    /// dbeta and dx NaN (what a trainer reports), never a stale value. Not for backward_gated.
    void begin_plane_sums() {
        if (x_ == nullptr) {
            throw error(detail::concat(name(), ": begin_plane_sums called before forward"));
        }
        const shape4 s = shape_of(*x_);
        plane_sums_.assign(s.n * c_, {std::numeric_limits<float>::quiet_NaN(), std::numeric_limits<float>::quiet_NaN()});
        plane_sums_on_ = true;
    }
    /// Output-gradient plane `plane` (index n * C + c; g its h * w values), gated by this layer's own
    /// ReLU as backward gates it: its (sum, centered dot), what backward's first pass computes,
    /// value for value.
    void plane_sums(std::size_t plane, const float* g) noexcept {
        const shape4 s = shape_of(*x_);
        const std::size_t hw = s.h * s.w, c = plane % c_;
        const float* x = x_->data() + plane * hw;
        plane_sums_[plane] = relu_ ? detail::sum_and_centered_dot<detail::bn_gate::relu>(g, x, mean_[c], fa_[c],
                                                                                          fb_[c], nullptr, hw)
                                   : detail::sum_and_centered_dot<detail::bn_gate::none>(g, x, mean_[c], fa_[c],
                                                                                          fb_[c], nullptr, hw);
    }
    /// backward(ctx, dy) with its first pass taken from the plane sums (see begin_plane_sums): equal
    /// to it value for value when every plane of dy was handed to plane_sums().
    const tensor4& backward_from_plane_sums(context& ctx, const tensor4& dy) {
        if (!plane_sums_on_) {
            throw error(detail::concat(name(), ": backward_from_plane_sums without begin_plane_sums"));
        }
        plane_sums_on_ = false; // one backward per begin
        return backward_impl(ctx, dy, nullptr, true);
    }
    /// The backward for the output gradient dy gated by `flags` (one byte per value of dy, 1: the
    /// value passes, 0: it is 0): what a ReLU after this layer would pass (basic_block keeps the
    /// flags of its residual ReLU), without a pass that writes the gated gradient. Only for a batch
    /// norm without its own ReLU.
    const tensor4& backward_gated(context& ctx, const tensor4& dy, const std::uint8_t* flags) {
        if (relu_) {
            throw error(detail::concat(name(), ": backward_gated is for a batch norm without its own ReLU"));
        }
        if (flags == nullptr) {
            throw error(detail::concat(name(), ": backward_gated needs the flags (one byte per value of dy)"));
        }
        return backward_impl(ctx, dy, flags, false);
    }

private:
    const tensor4& backward_impl(context& ctx, const tensor4& dy, const std::uint8_t* flags, bool presummed) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::backward_input);
        if (x_ == nullptr) {
            throw error(detail::concat(name(), ": backward called before forward"));
        }
        const tensor4& x = *x_;
        const shape4 s = shape_of(x);
        expect_shape(shape_of(dy), s, (name() + ".backward").c_str());
        const bool need_dx = input_grad();
        if (need_dx) {
            ensure_shape(dx_, s);
        }
        dx_ok_ = false;
        const bool ranges = keep_dx_ && need_dx;
        if (ranges) {
            dx_ranges_.resize(s.n * c_);
            channel_ok_.assign(c_, 0);
        }
        if (presummed && plane_sums_.size() != s.n * c_) {
            throw error(detail::concat(name(), ": plane sums for ", plane_sums_.size(), " planes, the gradient has ",
                                       s.n * c_));
        }
        const std::pair<float, float>* sums = presummed ? plane_sums_.data() : nullptr;
        if (relu_) {
            backward_planes<detail::bn_gate::relu>(x, dy, s, need_dx, nullptr, sums);
        } else if (flags != nullptr) {
            backward_planes<detail::bn_gate::flags>(x, dy, s, need_dx, flags, nullptr);
        } else {
            backward_planes<detail::bn_gate::none>(x, dy, s, need_dx, nullptr, sums);
        }
        dx_ok_ = ranges && std::find(channel_ok_.begin(), channel_ok_.end(), 0) == channel_ok_.end();
        if (m != nullptr) {
            const auto e = static_cast<std::uint64_t>(x.size());
            m->mac(id(), phase::weight_gradient, fp32, fp32, 2 * e);
            if (relu_) { // (a later ReLU's flags: that ReLU's compares, counted where it is)
                m->unary(id(), phase::backward_input, op_kind::compare, fp32, e);
            }
            if (need_dx) {
                m->mac(id(), phase::backward_input, fp32, fp32, 2 * e);
                m->bytes(id(), phase::backward_input, 4 * 2 * x.size(), 4 * dx_.size());
            }
        }
        return need_dx ? dx_ : empty_;
    }

public:
    void collect_parameters(std::vector<parameter>& ps) {
        add_parameter(ps, "gamma", span_of(gamma_), span_of(dgamma_), param_role::bn_scale, true);
        add_parameter(ps, "beta", span_of(beta_), span_of(dbeta_), param_role::bn_shift, true);
    }

    void save(archive_writer& a) const {
        a.tag("batchnorm/1");
        a.u64(c_);
        a.f32(momentum_);
        a.f32(eps_);
        a.tensor(gamma_);
        a.tensor(beta_);
        a.tensor(run_mean_);
        a.tensor(run_var_);
    }
    void load(archive_reader& a) {
        a.expect("batchnorm/1");
        const std::size_t at = a.offset();
        const std::uint64_t c = a.u64();
        if (c != c_) {
            a.fail(at, detail::concat(name(), ": the checkpoint holds batchnorm(", c, ") but the model has batchnorm(",
                                      c_, ")"));
        }
        momentum_ = a.f32();
        eps_ = a.f32();
        a.tensor(gamma_, name() + ".gamma");
        a.tensor(beta_, name() + ".beta");
        a.tensor(run_mean_, name() + ".running_mean");
        a.tensor(run_var_, name() + ".running_var");
    }

private:
    /// dgamma, dbeta and (if need_dx) dx, dy gated as G says (detail::bn_gate); with `sums` (the
    /// planes' first-pass results, plane_sums()) without the first pass.
    template <detail::bn_gate G>
    void backward_planes(const tensor4& x, const tensor4& dy, const shape4& s, bool need_dx,
                         const std::uint8_t* flags, const std::pair<float, float>* sums) {
        const std::size_t hw = s.h * s.w;
        const float count = static_cast<float>(s.n * hw);
        const auto fl = [&](std::size_t at) { return flags != nullptr ? flags + at : nullptr; };
        parallel_dynamic(c_, [&](std::size_t c, int) { // channels are independent
            const float mu = mean_[c], inv = inv_std_[c], fa = fa_[c], fb = fb_[c];
            double sdy = 0.0, sdyx = 0.0;
            for (std::size_t n = 0; n < s.n; ++n) {
                const std::size_t at = (n * c_ + c) * hw;
                const auto [a, b] = sums != nullptr ? sums[n * c_ + c]
                                                    : detail::sum_and_centered_dot<G>(dy.data() + at, x.data() + at,
                                                                                       mu, fa, fb, fl(at), hw);
                sdy += a;
                sdyx += b;
            }
            const float sum_dy = static_cast<float>(sdy);
            const float sum_dy_xhat = static_cast<float>(sdyx) * inv;
            dgamma_(c) = sum_dy_xhat;
            dbeta_(c) = sum_dy;
            if (!need_dx) {
                return;
            }
            const float gi = gamma_(c) * inv;
            // training: dx = gi * (dy - mean(dy) - xhat * mean(dy * xhat))
            //              = gi * dy + (-gi * inv * mdyx) * x + gi * (mu * inv * mdyx - mdy)
            // evaluation: dx = gi * dy
            const float mdy = train_ ? sum_dy / count : 0.0f, mdyx = train_ ? sum_dy_xhat / count : 0.0f;
            const float kx = -gi * inv * mdyx, k0 = gi * (mu * inv * mdyx - mdy);
            bool finite = true;
            for (std::size_t n = 0; n < s.n; ++n) {
                const std::size_t at = (n * c_ + c) * hw;
                if (keep_dx_) {
                    dx_ranges_[n * c_ + c] = detail::combine<G, true>(dy.data() + at, fa, fb, fl(at), gi,
                                                                           x.data() + at, kx, k0, dx_.data() + at, hw,
                                                                           finite);
                } else {
                    (void)detail::combine<G>(dy.data() + at, fa, fb, fl(at), gi, x.data() + at, kx, k0,
                                                  dx_.data() + at, hw, finite);
                }
            }
            if (keep_dx_) {
                channel_ok_[c] = finite ? 1 : 0;
            }
        });
    }

    /// What every forward does first: checks, and records x and the mode for backward.
    shape4 begin_forward(context& ctx, const tensor4& x) {
        const shape4 s = shape_of(x);
        out_ok_ = false;
        plane_sums_on_ = false;
        x_ = nullptr; // until the checks pass: no backward, apply_plane or materialize with a stale map
        check(s);
        if (ctx.training() && s.n * s.h * s.w < 2) {
            throw shape_error(detail::concat(name(), ": batch normalization in training mode needs more than one value "
                                                     "per channel, got input of shape ", to_string(s)));
        }
        x_ = &x;
        train_ = ctx.training();
        return s;
    }
    /// Channel c's statistics (training: of the batch, from `sums` when given, updating the
    /// running ones; evaluation: the running ones) and its map y = a x + b, kept for backward.
    std::pair<float, float> channel_affine(std::size_t c, const tensor4& x, const shape4& s,
                                           const std::vector<std::pair<float, float>>* sums) {
        const std::size_t hw = s.h * s.w, count = s.n * hw;
        float mean, inv;
        if (train_) {
            double sum = 0.0, sq = 0.0;
            for (std::size_t n = 0; n < s.n; ++n) {
                const auto [ps, pq] = sums != nullptr ? (*sums)[n * c_ + c]
                                                      : kernels::sum_and_squares(x.data() + (n * c_ + c) * hw, hw);
                sum += ps;
                sq += pq;
            }
            const double mu = sum / static_cast<double>(count);
            const double var = std::max(0.0, sq / static_cast<double>(count) - mu * mu);
            mean = static_cast<float>(mu);
            inv = static_cast<float>(1.0 / std::sqrt(var + eps_));
            const double unbiased = var * static_cast<double>(count) / static_cast<double>(count - 1);
            run_mean_(c) = (1.0f - momentum_) * run_mean_(c) + momentum_ * mean;
            run_var_(c) = (1.0f - momentum_) * run_var_(c) + momentum_ * static_cast<float>(unbiased);
        } else {
            mean = run_mean_(c);
            inv = 1.0f / std::sqrt(run_var_(c) + eps_);
        }
        mean_[c] = mean;
        inv_std_[c] = inv;
        const float a = gamma_(c) * inv, b = beta_(c) - a * mean;
        fa_[c] = a;
        fb_[c] = b;
        return {a, b};
    }
    /// The forward's operations, and its bytes: x read for the statistics (unless given) and for
    /// the map, y written (unless deferred, when the caller's pass reads x and writes its own).
    void count_forward(cost_meter* m, std::size_t size, bool read_for_statistics, bool writes) {
        if (m == nullptr) {
            return;
        }
        const auto e = static_cast<std::uint64_t>(size);
        m->mac(id(), phase::forward, fp32, fp32, train_ ? 3 * e : e); // statistics (2 per value) and the affine map
        if (relu_) {
            m->unary(id(), phase::forward, op_kind::compare, fp32, e);
        }
        m->bytes(id(), phase::forward, 4 * ((train_ && read_for_statistics ? 1 : 0) + (writes ? 1 : 0)) * e,
                 writes ? 4 * e : 0);
    }

    void check(const shape4& s) const {
        if (s.c != c_) {
            throw shape_error(detail::concat(name(), ": batchnorm(", c_, ") got an input of shape ", to_string(s)));
        }
    }

    std::size_t c_;
    float momentum_, eps_;
    bool relu_;
    tensor1 gamma_, beta_, dgamma_, dbeta_, run_mean_, run_var_;
    std::vector<float> mean_, inv_std_, fa_, fb_; // fa_, fb_: the last forward's map y = fa x + fb
    tensor4 y_, dx_, empty_;
    const tensor4* x_ = nullptr;
    bool train_ = true;
    bool keep_out_ = false, keep_dx_ = false, out_ok_ = false, dx_ok_ = false;
    std::vector<value_range> out_ranges_, dx_ranges_; // per (sample, channel) plane
    std::vector<char> channel_ok_;                    // per channel: every value finite
    std::vector<std::pair<float, float>> plane_sums_; // begin_plane_sums .. backward_from_plane_sums
    bool plane_sums_on_ = false;
};

static_assert(layer<batchnorm>);

} // namespace frugal

#endif
