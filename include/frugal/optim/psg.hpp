#ifndef FRUGAL_OPTIM_PSG_HPP
#define FRUGAL_OPTIM_PSG_HPP

/// @file
/// E2-Train's predictive sign gradient descent (PSG, SPEC §1.2(c)).
///
/// PSG has two halves, because it changes *where* the weight gradient is
/// computed as well as *how* it is applied:
///
/// - The weight-gradient half needs a layer's input x and output error dy,
///   which only the layer has when back-propagation passes through it. So it
///   is a convolution, `psg_conv`, that a block takes in place of conv2d
///   (`basic_block<psg_conv_maker>`). Forward `y = conv(Q8(x), Q8(w))`
///   (weights per output channel); backward `dx` from `Q16(dy)` and `Q8(w)`;
///   the weight gradient is first *estimated* from the most significant parts
///   `Q4(x)` and `Q10(dy)` by an integer kernel (int16 operands, int32/int64
///   accumulation), then the threshold `tau = beta * max |g_msb|` (beta 0.05;
///   or an absolute tau) marks the entries where the estimate is unsure,
///   `|g_msb| < tau`, and only for those the exact low-precision product
///   `Q8(x) x Q16(dy)` runs (per entry, integer). The layer leaves the
///   predicted sign `g~ = sign(g_msb)` or `sign(g_8x16)` in its weight
///   gradient and counts the share of full computations (`psg_statistics`).
/// - The optimizer half: `predictive_sign` is the GradientRule (it takes the
///   sign of every gradient, which leaves the layers' g~ unchanged and turns
///   the exact gradients of the parameters PSG does not cover, batch-norm
///   scales and shifts, the stem and the classifier, into signs), and
///   `signsgd` is the UpdateRule (SGD with momentum and weight decay on the
///   sign, the authors' form: `v = mu v + sign(g) + wd w; w -= lr v`; lr 0.03).
///   Each works alone: `optimizer<exact_gradient, signsgd>` on a plain model
///   is signSGD with exact gradients; `optimizer<predictive_sign, sgd>` is
///   SPEC's "g~ into SGD with momentum".
///
/// Decisions where SPEC is silent or was adapted:
/// - the integer operands use the symmetric (max-abs) grid, per tensor for x
///   and dy, per output channel for w, so that the integer products need no
///   offset terms (SPEC §0's activation/error quantizer is the min/max range
///   grid); errors round stochastically (the step's random source), the
///   rest to nearest;
/// - the MSB operands are the float tensors quantized to 4 and 10 bits (as
///   the authors emulate it, SPEC);
/// - an estimate of exactly 0 with tau = 0 counts as sure (`|g_msb| >= tau`,
///   SPEC's inequality), giving a zero step for that weight;
/// - the bias (when a psg_conv has one) gets its exact float gradient;
/// - cost: forward int8 x int8, backward to inputs int8 x int16, estimate
///   int4 x int10, full products int8 x int16 for the unsure entries only.
///   Quantization itself is not counted.
///
/// `weight_average` is stochastic weight averaging (SWALP-style) over a
/// parameter list, used next to the optimizer; see its comment.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#if defined(__AVX2__) || defined(__AVX512BW__)
#include <immintrin.h>
#endif

#include "frugal/cost/meter.hpp"
#include "frugal/error.hpp"
#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/layer.hpp"
#include "frugal/numeric/quantizer.hpp"
#include "frugal/numeric/rounding.hpp"
#include "frugal/tensor/im2col.hpp"
#include "frugal/tensor/kernels/gemm.hpp"
#include "frugal/tensor/parallel.hpp"
#include "frugal/tensor/serialize.hpp"

namespace frugal {

/// PSG's bit widths and threshold.
struct psg_options {
    int bits_x = 8, bits_w = 8, bits_g = 16; ///< operands of forward, backward and the full gradient
    int msb_x = 4, msb_g = 10;               ///< operands of the gradient estimate
    float beta = 0.05f;                      ///< tau = beta * max |g_msb| (per layer and step)
    float tau = 0.0f;                        ///< absolute threshold instead of beta when > 0
    bool stochastic_errors = true;           ///< stochastic rounding of Q16(dy) and Q10(dy)
};

/// How many weight-gradient entries PSG produced and how many needed the full product.
struct psg_stats {
    std::uint64_t entries = 0;
    std::uint64_t full = 0;
    [[nodiscard]] double full_fraction() const noexcept {
        return entries ? static_cast<double>(full) / static_cast<double>(entries) : 0.0;
    }
    void merge(const psg_stats& o) noexcept {
        entries += o.entries;
        full += o.full;
    }
};

namespace detail {
/// sum a[i] * b[i] over n int16 values, exactly: int32 sums over chunks of
/// `chunk` products (chosen by exact_chunk so that a chunk cannot overflow),
/// added in int64. pmaddwd with AVX-512BW or AVX2 (chosen at compile time, as
/// frugal picks its instruction set), a plain loop otherwise.
[[nodiscard]] inline std::int64_t dot_i16(const std::int16_t* a, const std::int16_t* b, std::size_t n,
                                          std::size_t chunk) noexcept {
    std::int64_t total = 0;
    for (std::size_t i0 = 0; i0 < n; i0 += chunk) {
        const std::size_t i1 = std::min(n, i0 + chunk);
        std::size_t i = i0;
        std::int32_t acc = 0;
#if defined(__AVX512BW__)
        __m512i v = _mm512_setzero_si512();
        for (; i + 32 <= i1; i += 32) { // pmaddwd: pairs of int16 products summed into int32 lanes
            v = _mm512_add_epi32(v, _mm512_madd_epi16(_mm512_loadu_si512(a + i), _mm512_loadu_si512(b + i)));
        }
        acc += _mm512_reduce_add_epi32(v);
#elif defined(__AVX2__)
        __m256i v = _mm256_setzero_si256();
        for (; i + 16 <= i1; i += 16) {
            v = _mm256_add_epi32(v, _mm256_madd_epi16(_mm256_loadu_si256(reinterpret_cast<const __m256i*>(a + i)),
                                                      _mm256_loadu_si256(reinterpret_cast<const __m256i*>(b + i))));
        }
        __m128i h = _mm_add_epi32(_mm256_castsi256_si128(v), _mm256_extracti128_si256(v, 1));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0x4e));
        h = _mm_add_epi32(h, _mm_shuffle_epi32(h, 0xb1));
        acc += _mm_cvtsi128_si32(h);
#endif
        for (; i < i1; ++i) {
            acc += static_cast<std::int32_t>(a[i]) * static_cast<std::int32_t>(b[i]);
        }
        total += acc;
    }
    return total;
}

/// R dot products at once, of rows a[0..R) with one row b (each as dot_i16):
/// b is loaded once per step and the R sums are independent chains.
template <std::size_t R>
inline void dot_rows_i16(const std::int16_t* const* a, const std::int16_t* b, std::size_t n, std::size_t chunk,
                         std::int64_t* out) noexcept {
    for (std::size_t i0 = 0; i0 < n; i0 += chunk) {
        const std::size_t i1 = std::min(n, i0 + chunk);
        std::size_t i = i0;
        std::int32_t acc[R] = {};
#if defined(__AVX512BW__)
        __m512i v[R];
        for (std::size_t j = 0; j < R; ++j) {
            v[j] = _mm512_setzero_si512();
        }
        for (; i + 32 <= i1; i += 32) {
            const __m512i bv = _mm512_loadu_si512(b + i);
            for (std::size_t j = 0; j < R; ++j) {
                v[j] = _mm512_add_epi32(v[j], _mm512_madd_epi16(_mm512_loadu_si512(a[j] + i), bv));
            }
        }
        for (std::size_t j = 0; j < R; ++j) {
            acc[j] += _mm512_reduce_add_epi32(v[j]);
        }
#endif
        for (; i < i1; ++i) {
            const std::int32_t bi = b[i];
            for (std::size_t j = 0; j < R; ++j) {
                acc[j] += static_cast<std::int32_t>(a[j][i]) * bi;
            }
        }
        for (std::size_t j = 0; j < R; ++j) {
            out[j] += acc[j];
        }
    }
}

/// out[i * ldo + j] += sum_k a[i][k] * b[j][k] for an R x C block of rows of
/// n int16 values. The caller keeps n small enough for exact int32 sums.
template <std::size_t R, std::size_t C>
inline void dot_block_i16(const std::int16_t* const* a, const std::int16_t* const* b, std::size_t n,
                          std::int64_t* out, std::size_t ldo) noexcept {
    std::size_t k0 = 0;
#if defined(__AVX512BW__)
    __m512i v[R][C];
    for (std::size_t i = 0; i < R; ++i) {
        for (std::size_t j = 0; j < C; ++j) {
            v[i][j] = _mm512_setzero_si512();
        }
    }
    for (; k0 + 32 <= n; k0 += 32) {
        __m512i bv[C];
        for (std::size_t j = 0; j < C; ++j) {
            bv[j] = _mm512_loadu_si512(b[j] + k0);
        }
        for (std::size_t i = 0; i < R; ++i) {
            const __m512i av = _mm512_loadu_si512(a[i] + k0);
            for (std::size_t j = 0; j < C; ++j) {
                v[i][j] = _mm512_add_epi32(v[i][j], _mm512_madd_epi16(av, bv[j]));
            }
        }
    }
    for (std::size_t i = 0; i < R; ++i) {
        for (std::size_t j = 0; j < C; ++j) {
            out[i * ldo + j] += _mm512_reduce_add_epi32(v[i][j]);
        }
    }
#endif
    for (std::size_t i = 0; i < R; ++i) {
        for (std::size_t j = 0; j < C; ++j) {
            std::int32_t acc = 0;
            for (std::size_t k = k0; k < n; ++k) {
                acc += static_cast<std::int32_t>(a[i][k]) * static_cast<std::int32_t>(b[j][k]);
            }
            out[i * ldo + j] += acc;
        }
    }
}

/// Integer im2col: codes of one image (c x h x w, int16) into cols (rows x cols, int16).
inline void im2col_codes(const std::int16_t* x, const conv_geometry& g, std::vector<float>& fimg,
                         std::vector<float>& fcol, std::int16_t* out) {
    const std::size_t n = g.c * g.h * g.w, m = g.rows() * g.cols();
    fimg.resize(n);
    fcol.resize(m);
    for (std::size_t i = 0; i < n; ++i) {
        fimg[i] = static_cast<float>(x[i]);
    }
    im2col(fimg.data(), g, fcol.data(), g.cols());
    for (std::size_t i = 0; i < m; ++i) {
        out[i] = static_cast<std::int16_t>(fcol[i]);
    }
}

[[nodiscard]] inline float sign_of(double v) noexcept { return v > 0.0 ? 1.0f : (v < 0.0 ? -1.0f : 0.0f); }

/// Largest product magnitude of two codes of the given widths, for chunking exact int32 sums.
[[nodiscard]] inline std::size_t exact_chunk(int bits_a, int bits_b) noexcept {
    const double prod = std::ldexp(1.0, bits_a - 1) * std::ldexp(1.0, bits_b - 1);
    const double n = std::floor(2147483647.0 / prod);
    return static_cast<std::size_t>(std::clamp(n, 1.0, 65536.0));
}
} // namespace detail

/// A convolution trained by predictive sign gradient descent (see the file comment).
class psg_conv : public layer_base {
public:
    psg_conv(std::size_t in, std::size_t out, std::size_t kernel, conv_options o = {})
        : layer_base("psg_conv2d"), in_(in), out_(out), k_(kernel), opt_(o),
          w_(tensor4::from_shape({out, in, kernel, kernel})), dw_(tensor4::from_shape({out, in, kernel, kernel})),
          b_(tensor1::from_shape({o.bias ? out : 0})), db_(tensor1::from_shape({o.bias ? out : 0})),
          fwd_(in == 0 ? 1 : in, out == 0 ? 1 : out, kernel == 0 ? 1 : kernel, o) {
        if (in == 0 || out == 0 || kernel == 0 || o.stride == 0) {
            throw error(detail::concat("frugal::psg_conv: channels, kernel and stride must be positive (in ", in,
                                       ", out ", out, ", kernel ", kernel, ", stride ", o.stride, ")"));
        }
        if (o.stride == 1 && o.padding + 1 <= kernel) {
            // dx of a stride-1 convolution: a convolution of dy with the rotated, transposed kernel
            bwd_.emplace(out, in, kernel, conv_options{1, kernel - 1 - o.padding, false});
        }
        w_.fill(0.0f);
        dw_.fill(0.0f);
        b_.fill(0.0f);
        db_.fill(0.0f);
    }

    [[nodiscard]] std::size_t in_channels() const noexcept { return in_; }
    [[nodiscard]] std::size_t out_channels() const noexcept { return out_; }
    [[nodiscard]] tensor4& weight() noexcept { return w_; }
    [[nodiscard]] const tensor4& weight() const noexcept { return w_; }
    [[nodiscard]] tensor1& bias() noexcept { return b_; }
    [[nodiscard]] const tensor4& weight_grad() const noexcept { return dw_; }

    void set_psg_options(const psg_options& o) { psg_ = o; }
    [[nodiscard]] const psg_options& psg() const noexcept { return psg_; }
    /// Counts since construction or the last reset.
    [[nodiscard]] const psg_stats& psg_statistics() const noexcept { return stats_; }
    void reset_psg_statistics() noexcept { stats_ = {}; }
    /// The estimate g_msb of the last backward (real units, shape of the weight).
    [[nodiscard]] const tensor4& msb_estimate() const noexcept { return msb_; }
    /// Which entries of the last backward needed the full product (1) or took the estimate (0).
    [[nodiscard]] const std::vector<std::uint8_t>& full_mask() const noexcept { return full_mask_; }
    /// The threshold of the last backward, in real units.
    [[nodiscard]] double last_tau() const noexcept { return tau_; }

    void reset_parameters(rng& g) {
        he_normal(w_, in_ * k_ * k_, g);
        b_.fill(0.0f);
    }

    [[nodiscard]] conv_geometry geometry(const shape4& x) const {
        conv_geometry g{x.c, x.h, x.w, k_, opt_.stride, opt_.padding};
        if (x.c != in_ || !g.valid()) {
            throw shape_error(detail::concat(name(), ": psg_conv(", in_, "->", out_, ", k", k_, ", stride ",
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
        const std::size_t p = g.cols(), kk = g.rows();
        x_ = &x;
        quantize_symmetric<std::int16_t, per_tensor, nearest_even>(x, psg_.bits_x, qx_);
        quantize_symmetric<std::int16_t, per_channel, nearest_even>(w_, psg_.bits_w, qw_);
        wq_.resize(out_ * kk);
        for (std::size_t o = 0; o < out_; ++o) {
            for (std::size_t j = 0; j < kk; ++j) {
                wq_[o * kk + j] = qw_.scale[o] * static_cast<float>(qw_.values.data()[o * kk + j]);
            }
        }
        // the products run in float on the dequantized codes (exact emulation of the
        // integer forward), with conv2d's kernels; nothing is recorded for them but
        // the integer MACs below
        const float sx = qx_.scale[0];
        ensure_shape(xq_, xs);
        for (std::size_t i = 0; i < x.size(); ++i) {
            xq_.data()[i] = sx * static_cast<float>(qx_.values.data()[i]);
        }
        std::copy(wq_.begin(), wq_.end(), fwd_.weight().begin());
        std::copy(b_.begin(), b_.end(), fwd_.bias().begin());
        context inner = ctx;
        inner.meter = nullptr;
        const tensor4& y = fwd_.forward(inner, xq_);
        if (m != nullptr) {
            const op_format fx = op_format::integer(psg_.bits_x), fw = op_format::integer(psg_.bits_w);
            m->mac(id(), phase::forward, fx, fw, static_cast<std::uint64_t>(xs.n) * out_ * kk * p);
            m->bytes(id(), phase::forward, x.size() * static_cast<std::uint64_t>(psg_.bits_x) / 8 +
                                               w_.size() * static_cast<std::uint64_t>(psg_.bits_w) / 8,
                     4 * y.size());
        }
        return y;
    }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        cost_meter* m = meter(ctx);
        if (x_ == nullptr) {
            throw error(detail::concat(name(), ": backward called before forward"));
        }
        expect_shape(shape_of(dy), output_shape(shape_of(*x_)), (name() + ".backward").c_str());
        const tensor4& x = *x_;
        const shape4 xs = shape_of(x);
        const conv_geometry g = geometry(xs);
        const std::size_t n = xs.n, p = g.cols(), kk = g.rows(), per_x = xs.per_sample(), per_y = out_ * p;
        const std::size_t entries = out_ * kk;
        if (psg_.stochastic_errors) {
            quantize_symmetric<std::int16_t, per_tensor, stochastic>(dy, psg_.bits_g, qg_, &ctx.random);
            quantize_symmetric<std::int16_t, per_tensor, stochastic>(dy, psg_.msb_g, qgm_, &ctx.random);
        } else {
            quantize_symmetric<std::int16_t, per_tensor, nearest_even>(dy, psg_.bits_g, qg_);
            quantize_symmetric<std::int16_t, per_tensor, nearest_even>(dy, psg_.msb_g, qgm_);
        }
        quantize_symmetric<std::int16_t, per_tensor, nearest_even>(x, psg_.msb_x, qxm_);
        const int threads = num_threads();

        // input gradient: Q8(w)^T Q16(dy), col2im
        const auto t0 = std::chrono::steady_clock::now();
        const bool need_dx = input_grad();
        const tensor4* dx = &empty_;
        if (need_dx && bwd_) {
            const float sg = qg_.scale[0];
            ensure_shape(gq_, shape_of(dy));
            for (std::size_t i = 0; i < dy.size(); ++i) {
                gq_.data()[i] = sg * static_cast<float>(qg_.values.data()[i]);
            }
            tensor4& wr = bwd_->weight(); // [in][out][k][k], rotated by 180 degrees
            for (std::size_t ci = 0; ci < in_; ++ci) {
                for (std::size_t co = 0; co < out_; ++co) {
                    for (std::size_t ky = 0; ky < k_; ++ky) {
                        for (std::size_t kx = 0; kx < k_; ++kx) {
                            wr(ci, co, ky, kx) = wq_[((co * in_ + ci) * k_ + (k_ - 1 - ky)) * k_ + (k_ - 1 - kx)];
                        }
                    }
                }
            }
            context inner = ctx;
            inner.meter = nullptr;
            dx = &bwd_->forward(inner, gq_);
        } else if (need_dx) {
            ensure_shape(dx_, xs);
            dx = &dx_;
            wt_.resize(kk * out_);
            kernels::transpose(out_, kk, wq_.data(), kk, wt_.data(), out_);
            const float sg = qg_.scale[0];
            parallel_chunks(n, [&](std::size_t lo, std::size_t hi, int) {
                thread_local std::vector<float> gcol, dcol;
                gcol.resize(per_y);
                dcol.resize(kk * p);
                for (std::size_t s = lo; s < hi; ++s) {
                    const std::int16_t* codes = qg_.values.data() + s * per_y;
                    for (std::size_t i = 0; i < per_y; ++i) {
                        gcol[i] = static_cast<float>(codes[i]);
                    }
                    kernels::sgemm(kk, p, out_, sg, wt_.data(), out_, gcol.data(), p, 0.0f, dcol.data(), p);
                    float* dxs = dx_.data() + s * per_x;
                    std::fill(dxs, dxs + per_x, 0.0f);
                    col2im(dcol.data(), g, p, dxs);
                }
            });
        }
        const auto t1 = std::chrono::steady_clock::now();

        // the estimate: Q4(x) x Q10(dy), integer, summed per thread then in a fixed order
        const std::size_t chunk_msb = detail::exact_chunk(psg_.msb_x, psg_.msb_g);
        partial_.assign(static_cast<std::size_t>(threads) * entries, 0);
        // samples side by side (as conv2d groups small images): columns of ~1024 positions,
        // padded to a multiple of 32 with zeros, and 4 x 4 blocks of dot products
        const std::size_t group = std::max<std::size_t>(1, std::min(chunk_msb, std::size_t{1024}) / p);
        const std::size_t groups = (n + group - 1) / group;
        parallel_chunks(groups, [&](std::size_t lo, std::size_t hi, int thread) {
            thread_local std::vector<float> fimg, fcol;
            thread_local std::vector<std::int16_t> cols, grows;
            std::int64_t* acc = partial_.data() + static_cast<std::size_t>(thread) * entries;
            for (std::size_t gi = lo; gi < hi; ++gi) {
                const std::size_t s0 = gi * group, cnt = std::min(group, n - s0);
                const std::size_t len = cnt * p, ld = (len + 31) / 32 * 32;
                fimg.resize(per_x);
                fcol.assign(kk * ld, 0.0f);
                for (std::size_t s = 0; s < cnt; ++s) {
                    const std::int16_t* codes = qxm_.values.data() + (s0 + s) * per_x;
                    for (std::size_t i = 0; i < per_x; ++i) {
                        fimg[i] = static_cast<float>(codes[i]);
                    }
                    im2col(fimg.data(), g, fcol.data() + s * p, ld);
                }
                cols.resize(kk * ld);
                for (std::size_t i = 0; i < kk * ld; ++i) {
                    cols[i] = static_cast<std::int16_t>(fcol[i]);
                }
                grows.assign(out_ * ld, 0);
                for (std::size_t s = 0; s < cnt; ++s) {
                    for (std::size_t o = 0; o < out_; ++o) {
                        const std::int16_t* src = qgm_.values.data() + (s0 + s) * per_y + o * p;
                        std::copy(src, src + p, grows.data() + o * ld + s * p);
                    }
                }
                std::size_t o = 0;
                for (; o + 4 <= out_; o += 4) {
                    const std::int16_t* a[4] = {grows.data() + o * ld, grows.data() + (o + 1) * ld,
                                                grows.data() + (o + 2) * ld, grows.data() + (o + 3) * ld};
                    std::size_t r = 0;
                    for (; r + 4 <= kk; r += 4) {
                        const std::int16_t* b[4] = {cols.data() + r * ld, cols.data() + (r + 1) * ld,
                                                    cols.data() + (r + 2) * ld, cols.data() + (r + 3) * ld};
                        detail::dot_block_i16<4, 4>(a, b, ld, acc + o * kk + r, kk);
                    }
                    for (; r < kk; ++r) {
                        for (std::size_t j = 0; j < 4; ++j) {
                            acc[(o + j) * kk + r] += detail::dot_i16(a[j], cols.data() + r * ld, ld, chunk_msb);
                        }
                    }
                }
                for (; o < out_; ++o) {
                    for (std::size_t r = 0; r < kk; ++r) {
                        acc[o * kk + r] += detail::dot_i16(grows.data() + o * ld, cols.data() + r * ld, ld, chunk_msb);
                    }
                }
            }
        });
        msb_int_.assign(entries, 0);
        for (int t = 0; t < threads; ++t) {
            for (std::size_t e = 0; e < entries; ++e) {
                msb_int_[e] += partial_[static_cast<std::size_t>(t) * entries + e];
            }
        }
        const double msb_scale = static_cast<double>(qxm_.scale[0]) * static_cast<double>(qgm_.scale[0]);
        ensure_shape(msb_, shape_of(w_));
        double max_abs = 0.0;
        for (std::size_t e = 0; e < entries; ++e) {
            const double v = static_cast<double>(msb_int_[e]) * msb_scale;
            msb_.data()[e] = static_cast<float>(v);
            max_abs = std::max(max_abs, std::fabs(v));
        }
        tau_ = psg_.tau > 0.0f ? static_cast<double>(psg_.tau) : static_cast<double>(psg_.beta) * max_abs;
        full_mask_.assign(entries, 0);
        unsure_.clear();
        for (std::size_t e = 0; e < entries; ++e) {
            if (std::fabs(static_cast<double>(msb_int_[e]) * msb_scale) < tau_) {
                full_mask_[e] = 1;
                unsure_.push_back(e);
            }
        }

        // the exact low-precision product Q8(x) x Q16(dy), only where the estimate is unsure
        const std::size_t nu = unsure_.size();
        if (nu > 0) {
            const std::size_t chunk_full = detail::exact_chunk(psg_.bits_x, psg_.bits_g);
            partial_.assign(static_cast<std::size_t>(threads) * nu, 0);
            parallel_chunks(n, [&](std::size_t lo, std::size_t hi, int thread) {
                thread_local std::vector<float> fimg, fcol;
                thread_local std::vector<std::int16_t> cols;
                cols.resize(kk * p);
                std::int64_t* acc = partial_.data() + static_cast<std::size_t>(thread) * nu;
                for (std::size_t s = lo; s < hi; ++s) {
                    detail::im2col_codes(qx_.values.data() + s * per_x, g, fimg, fcol, cols.data());
                    const std::int16_t* gs = qg_.values.data() + s * per_y;
                    std::size_t u = 0;
                    // four unsure entries of one output channel share its error row
                    while (u < nu) {
                        const std::size_t o = unsure_[u] / kk;
                        if (u + 4 <= nu && unsure_[u + 3] / kk == o) {
                            const std::int16_t* rows[4];
                            for (std::size_t j = 0; j < 4; ++j) {
                                rows[j] = cols.data() + (unsure_[u + j] % kk) * p;
                            }
                            detail::dot_rows_i16<4>(rows, gs + o * p, p, chunk_full, acc + u);
                            u += 4;
                        } else {
                            acc[u] += detail::dot_i16(gs + o * p, cols.data() + (unsure_[u] % kk) * p, p, chunk_full);
                            ++u;
                        }
                    }
                }
            });
        }
        for (std::size_t e = 0; e < entries; ++e) {
            dw_.data()[e] = detail::sign_of(static_cast<double>(msb_int_[e]));
        }
        for (std::size_t u = 0; u < nu; ++u) {
            std::int64_t full = 0;
            for (int t = 0; t < threads; ++t) {
                full += partial_[static_cast<std::size_t>(t) * nu + u];
            }
            dw_.data()[unsure_[u]] = detail::sign_of(static_cast<double>(full));
        }
        if (opt_.bias) {
            for (std::size_t o = 0; o < out_; ++o) {
                double sum = 0.0;
                for (std::size_t s = 0; s < n; ++s) {
                    const float* d = dy.data() + s * per_y + o * p;
                    for (std::size_t j = 0; j < p; ++j) {
                        sum += d[j];
                    }
                }
                db_(o) = static_cast<float>(sum);
            }
        }
        stats_.entries += entries;
        stats_.full += nu;
        if (m != nullptr) {
            const std::uint64_t positions = static_cast<std::uint64_t>(n) * p;
            const op_format fx = op_format::integer(psg_.bits_x), fw = op_format::integer(psg_.bits_w),
                            fg = op_format::integer(psg_.bits_g);
            m->mac(id(), phase::weight_gradient, op_format::integer(psg_.msb_x), op_format::integer(psg_.msb_g),
                   positions * entries);
            m->mac(id(), phase::weight_gradient, fx, fg, positions * nu);
            m->unary(id(), phase::weight_gradient, op_kind::compare, fp32, entries);
            m->bytes(id(), phase::weight_gradient,
                     (x.size() * static_cast<std::uint64_t>(psg_.msb_x + (nu ? psg_.bits_x : 0)) +
                      dy.size() * static_cast<std::uint64_t>(psg_.msb_g + (nu ? psg_.bits_g : 0))) / 8,
                     4 * w_.size());
            const auto t2 = std::chrono::steady_clock::now();
            m->time(id(), phase::weight_gradient, std::chrono::duration<double>(t2 - t1).count());
            if (need_dx) {
                m->mac(id(), phase::backward_input, fw, fg, positions * entries);
                m->bytes(id(), phase::backward_input,
                         (dy.size() * static_cast<std::uint64_t>(psg_.bits_g) + w_.size() * static_cast<std::uint64_t>(psg_.bits_w)) / 8,
                         4 * dx->size());
                m->time(id(), phase::backward_input, std::chrono::duration<double>(t1 - t0).count());
            }
        }
        return *dx;
    }

    void collect_parameters(std::vector<parameter>& ps) {
        add_parameter(ps, "weight", span_of(w_), span_of(dw_), param_role::weight, true);
        if (opt_.bias) {
            add_parameter(ps, "bias", span_of(b_), span_of(db_), param_role::bias, true);
        }
    }

    void save(archive_writer& a) const {
        a.tag("psg_conv2d/1");
        a.u64(in_);
        a.u64(out_);
        a.u64(k_);
        a.u64(opt_.stride);
        a.u64(opt_.padding);
        a.u32(opt_.bias ? 1 : 0);
        a.tensor(w_);
        a.tensor(b_);
    }
    void load(archive_reader& a) {
        a.expect("psg_conv2d/1");
        const std::size_t at = a.offset();
        const std::uint64_t in = a.u64(), out = a.u64(), k = a.u64(), s = a.u64(), pad = a.u64();
        const bool bias = a.u32() != 0;
        if (in != in_ || out != out_ || k != k_ || s != opt_.stride || pad != opt_.padding || bias != opt_.bias) {
            a.fail(at, detail::concat(name(), ": the checkpoint holds psg_conv2d(", in, "->", out, ", k", k,
                                      ", stride ", s, ", pad ", pad, ") but the model has psg_conv2d(", in_, "->",
                                      out_, ", k", k_, ", stride ", opt_.stride, ", pad ", opt_.padding, ")"));
        }
        a.tensor(w_, name() + ".weight");
        a.tensor(b_, name() + ".bias");
    }

private:
    std::size_t in_, out_, k_;
    conv_options opt_;
    psg_options psg_{};
    tensor4 w_, dw_;
    tensor1 b_, db_;
    tensor4 xq_, gq_, dx_, empty_, msb_;
    const tensor4* x_ = nullptr;
    conv2d fwd_;                 // runs the forward on the dequantized 8-bit codes
    std::optional<conv2d> bwd_;  // dx of stride-1 convolutions from the dequantized 16-bit errors
    quantized_tensor<std::int16_t, 4> qx_, qw_, qg_, qgm_, qxm_;
    std::vector<float> wq_, wt_;
    std::vector<std::int64_t> partial_, msb_int_;
    std::vector<std::size_t> unsure_;
    std::vector<std::uint8_t> full_mask_;
    psg_stats stats_{};
    double tau_ = 0.0;
};

static_assert(layer<psg_conv>);

/// ConvMaker for basic_block: `basic_block<psg_conv_maker>` trains its convolutions with PSG.
struct psg_conv_maker {
    using type = psg_conv;
    [[nodiscard]] static psg_conv make(std::size_t in, std::size_t out, std::size_t k, conv_options o) {
        return psg_conv(in, out, k, o);
    }
};

/// Sets the PSG options of every psg_conv of a model.
template <class Model>
void configure_psg(Model& model, const psg_options& o) {
    model.for_each_layer([&](auto& l) {
        if constexpr (requires { l.set_psg_options(o); }) {
            l.set_psg_options(o);
        }
    });
}

/// The PSG counts of every psg_conv of a model, summed.
template <class Model>
[[nodiscard]] psg_stats psg_statistics(Model& model) {
    psg_stats s;
    model.for_each_layer([&](auto& l) {
        if constexpr (requires { l.psg_statistics(); }) {
            s.merge(l.psg_statistics());
        }
    });
    return s;
}

/// Which parameters PSG's sign rule covers.
enum class sign_scope : std::uint8_t {
    all,    ///< every parameter (batch-norm scales and shifts and biases too)
    weights ///< conv and linear weights only (SPEC: "per conv/linear layer"); batch norm, biases and the SLU gate network keep their exact gradient
};

/// GradientRule of PSG: the sign of the gradient (see the file comment).
/// With `sign_scope::weights` pair it with the `sgd` UpdateRule (signsgd
/// would sign the exact gradients again): `optimizer<predictive_sign, sgd>`.
struct predictive_sign {
    static constexpr const char* name = "predictive_sign";
    sign_scope scope = sign_scope::all;
    void apply(const parameter& p, std::span<float> g) const noexcept {
        if (scope == sign_scope::weights && p.role != param_role::weight) {
            return;
        }
        for (float& v : g) {
            v = v > 0.0f ? 1.0f : (v < 0.0f ? -1.0f : 0.0f);
        }
    }
};

/// UpdateRule: signSGD with momentum and weight decay added after the sign
/// (the authors' form): v = mu v + sign(g) + wd w; w -= lr v.
struct signsgd {
    static constexpr const char* name = "signsgd";
    /// The paper's learning rate with PSG (0.1 without).
    static constexpr float default_lr = 0.03f;
    float momentum = 0.9f;
    float weight_decay = 1e-4f;

    static constexpr std::size_t state_size = 1;
    static constexpr std::uint64_t macs_per_value = 3;

    void update(std::span<float> w, std::span<const float> g, std::span<float> v, float lr, bool decay) const noexcept {
        const float wd = decay ? weight_decay : 0.0f;
        for (std::size_t i = 0; i < w.size(); ++i) {
            const float s = g[i] > 0.0f ? 1.0f : (g[i] < 0.0f ? -1.0f : 0.0f);
            v[i] = momentum * v[i] + s + wd * w[i];
            w[i] -= lr * v[i];
        }
    }
};

/// Stochastic weight averaging (SWA, as SWALP uses it with PSG) over a
/// parameter list: `accumulate()` adds the current weights to a running
/// mean (SPEC's decision: once per epoch from 75% of the run), `swap()`
/// exchanges the model's weights and the average (call again to swap
/// back). After swapping the average in, recompute the batch-norm running
/// statistics (examples/e2train.cpp resets them and runs training-mode
/// forwards) before evaluating. The average is not part of
/// fit's checkpoint: save() and load() it yourself to resume an SWA run.
class weight_average {
public:
    explicit weight_average(std::vector<parameter> params) : params_(std::move(params)) {
        std::size_t total = 0;
        for (const auto& p : params_) {
            total += p.value.size();
        }
        mean_.assign(total, 0.0f);
    }
    void accumulate() {
        ++count_;
        const float a = 1.0f / static_cast<float>(count_);
        std::size_t off = 0;
        for (const auto& p : params_) {
            for (std::size_t i = 0; i < p.value.size(); ++i) {
                mean_[off + i] += a * (p.value[i] - mean_[off + i]);
            }
            off += p.value.size();
        }
    }
    void swap() {
        if (count_ == 0) {
            throw error("frugal::weight_average::swap: nothing was averaged yet");
        }
        std::size_t off = 0;
        for (const auto& p : params_) {
            for (std::size_t i = 0; i < p.value.size(); ++i) {
                std::swap(p.value[i], mean_[off + i]);
            }
            off += p.value.size();
        }
    }
    [[nodiscard]] std::uint64_t count() const noexcept { return count_; }
    void save(archive_writer& a) const {
        a.tag("weight_average/1");
        a.u64(count_);
        a.floats(mean_);
    }
    void load(archive_reader& a) {
        a.expect("weight_average/1");
        count_ = a.u64();
        a.floats(mean_, "weight average");
    }

private:
    std::vector<parameter> params_;
    std::vector<float> mean_;
    std::uint64_t count_ = 0;
};

} // namespace frugal

#endif
