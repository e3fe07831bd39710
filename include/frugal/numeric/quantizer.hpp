#ifndef FRUGAL_NUMERIC_QUANTIZER_HPP
#define FRUGAL_NUMERIC_QUANTIZER_HPP

/// @file
/// Linear quantizers over xtensor containers.
///
/// Two grids:
/// - **symmetric** (max-abs): `s = max|x| / (2^(b-1) - 1)`,
///   `q = clamp(round(x / s), -(2^(b-1) - 1), 2^(b-1) - 1)`, `x ~ s * q`.
///   Zero is exact and the codes are signed: what integer GEMMs want.
/// - **range** (asymmetric min/max, the quantizer FracTrain and 8-bit
///   training use): `s = max(hi - lo, 1e-8) / (2^b - 1)`,
///   `q = clamp(round((x - lo) / s), 0, 2^b - 1)`, `x ~ lo + s * q`.
///
/// Each works per tensor (one scale) or per channel (one scale per index of
/// axis 0, e.g. per output channel of a weight tensor), rounds to nearest
/// (ties to even) or stochastically (uniform noise, unbiased), and comes in
/// two forms: integer codes plus scales (`quantize_*`) and fake quantization
/// (`fake_quantize_*`: quantize then dequantize, float in, float out).
///
/// The kernels are vectorized with xsimd; `detail::*_reference` are plain
/// scalar loops kept as the oracle for tests and the baseline for benchmarks.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <type_traits>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "frugal/error.hpp"
#include "frugal/tensor/tensor.hpp"
#include "frugal/numeric/random.hpp"
#include "frugal/numeric/rounding.hpp"
#include "frugal/numeric/simd.hpp"

namespace frugal {

/// One scale for the whole tensor.
struct per_tensor {};
/// One scale per index of axis 0 (output channel of a weight, row of a matrix).
struct per_channel {};

template <class G>
concept quant_granularity = std::same_as<G, per_tensor> || std::same_as<G, per_channel>;

/// Float quantizers round to nearest (ties to even) or stochastically.
template <class R>
concept quant_rounding = std::same_as<R, nearest_even> || std::same_as<R, stochastic>;

/// Integer codes with the scales (and, for the range grid, offsets) that map
/// them back: `x[c, ...] ~ offset[c] + scale[c] * values[c, ...]`.
template <class Int, std::size_t N>
struct quantized_tensor {
    tensor<Int, N> values;
    std::vector<float> scale;  ///< one entry (per_tensor) or shape[0] entries (per_channel)
    std::vector<float> offset; ///< zeros for the symmetric grid, `lo` for the range grid
    int bits = 0;

    /// Scale of channel c (the single scale for per-tensor quantization).
    [[nodiscard]] float scale_of(std::size_t c) const noexcept { return scale.size() == 1 ? scale[0] : scale[c]; }
    [[nodiscard]] float offset_of(std::size_t c) const noexcept { return offset.size() == 1 ? offset[0] : offset[c]; }
};

/// Range of a tensor: its minimum and maximum.
struct value_range {
    float lo = 0.0f;
    float hi = 0.0f;
};

namespace detail {

/// max |x| over n values; throws frugal::numeric_error if any is NaN or infinite.
[[nodiscard]] inline float max_abs(const float* x, std::size_t n, const char* where = "frugal::quantize") {
    using simd::fbatch;
    constexpr std::size_t w = simd::width;
    // Four independent accumulators hide the latency of max; `bad` collects
    // x - x, which is 0 for finite values and NaN otherwise.
    fbatch m0(0.0f), m1(0.0f), m2(0.0f), m3(0.0f), bad(0.0f);
    std::size_t i = 0;
    for (; i + 4 * w <= n; i += 4 * w) {
        const fbatch a = fbatch::load_unaligned(x + i);
        const fbatch b = fbatch::load_unaligned(x + i + w);
        const fbatch c = fbatch::load_unaligned(x + i + 2 * w);
        const fbatch d = fbatch::load_unaligned(x + i + 3 * w);
        m0 = xsimd::max(m0, xsimd::abs(a));
        m1 = xsimd::max(m1, xsimd::abs(b));
        m2 = xsimd::max(m2, xsimd::abs(c));
        m3 = xsimd::max(m3, xsimd::abs(d));
        bad += ((a - a) + (b - b)) + ((c - c) + (d - d));
    }
    for (; i + w <= n; i += w) {
        const fbatch v = fbatch::load_unaligned(x + i);
        m0 = xsimd::max(m0, xsimd::abs(v));
        bad += v - v;
    }
    float r = simd::hmax(xsimd::max(xsimd::max(m0, m1), xsimd::max(m2, m3)));
    float tail_bad = 0.0f;
    for (; i < n; ++i) {
        r = std::max(r, std::fabs(x[i]));
        tail_bad += x[i] - x[i];
    }
    if (!(xsimd::hadd(bad) == 0.0f) || !(tail_bad == 0.0f)) {
        throw numeric_error(concat(where, ": the input contains NaN or infinity"));
    }
    return r;
}

/// [min, max] over n values; throws frugal::numeric_error on NaN or infinity.
[[nodiscard]] inline value_range min_max(const float* x, std::size_t n, const char* where = "frugal::quantize") {
    using simd::fbatch;
    if (n == 0) {
        return {};
    }
    fbatch lo(std::numeric_limits<float>::max());
    fbatch hi(std::numeric_limits<float>::lowest());
    fbatch bad(0.0f);
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        const fbatch v = fbatch::load_unaligned(x + i);
        lo = xsimd::min(lo, v);
        hi = xsimd::max(hi, v);
        bad += v - v;
    }
    value_range r{simd::hmin(lo), simd::hmax(hi)};
    float tail_bad = 0.0f;
    for (; i < n; ++i) {
        r.lo = std::min(r.lo, x[i]);
        r.hi = std::max(r.hi, x[i]);
        tail_bad += x[i] - x[i];
    }
    if (!(xsimd::hadd(bad) == 0.0f) || !(tail_bad == 0.0f)) {
        throw numeric_error(concat(where, ": the input contains NaN or infinity"));
    }
    return r;
}

/// One quantization grid: code = clamp(round((x - offset) * inv_scale), code_lo, code_hi).
struct grid {
    float scale;     ///< dequantization step
    float inv_scale; ///< 1 / scale, or 0 when scale is 0 (all-zero input)
    float offset;    ///< value of code 0
    float code_lo;
    float code_hi;
};

[[nodiscard]] inline grid symmetric_grid(float max_abs, int bits) noexcept {
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
    const float s = max_abs / qmax;
    return {s, s > 0.0f ? qmax / max_abs : 0.0f, 0.0f, -qmax, qmax};
}

[[nodiscard]] inline grid range_grid(value_range r, int bits) noexcept {
    const float levels = static_cast<float>((1u << bits) - 1u);
    const float s = std::max(r.hi - r.lo, 1e-8f) / levels;
    return {s, 1.0f / s, r.lo, 0.0f, levels};
}

/// Codes of n values (Out = an integer type) or their dequantized values
/// (Out = float), rounded to nearest even. Vectorized.
template <class Out>
inline void quantize_nearest(const float* x, std::size_t n, const grid& g, Out* out) noexcept {
    using simd::fbatch;
    const fbatch inv(g.inv_scale), off(g.offset), lo(g.code_lo), hi(g.code_hi), s(g.scale);
    std::size_t i = 0;
    for (; i + simd::width <= n; i += simd::width) {
        const fbatch t = xsimd::clip((fbatch::load_unaligned(x + i) - off) * inv, lo, hi);
        if constexpr (std::is_same_v<Out, float>) {
            simd::fma(xsimd::nearbyint(t), s, off).store_unaligned(out + i);
        } else {
            simd::store_narrow(xsimd::nearbyint_as_int(t), out + i);
        }
    }
    for (; i < n; ++i) {
        const float q = std::nearbyint(std::clamp((x[i] - g.offset) * g.inv_scale, g.code_lo, g.code_hi));
        if constexpr (std::is_same_v<Out, float>) {
            out[i] = std::fma(q, g.scale, g.offset);
        } else {
            out[i] = static_cast<Out>(q);
        }
    }
}

/// As quantize_nearest, rounding stochastically: floor(t) + 1 with
/// probability frac(t) = t - floor(t), i.e. floor(t) + [u < frac(t)] with
/// u ~ U[0, 1). (Not floor(t + u): in float, t + u rounds up to the next
/// integer whenever u is within half an ulp of t below 1, e.g. for u > 1 -
/// 2^-17 at t ~ 128, which moved about one code in 10^5 with frac(t) = 0.)
/// frac(t) is exact for t >= 0 (Sterbenz; below 0 the code clamps to
/// code_lo anyway) and the comparison has no rounding.
/// quantize_stochastic_planes: `planes` consecutive runs of `size` values,
/// run i on grid_of(i), one random stream.
template <class Out, class GridOf>
inline void quantize_stochastic_planes(const float* x, std::size_t planes, std::size_t size, GridOf&& grid_of, Out* out,
                                       rng& r) noexcept {
    using simd::fbatch;
    simd::lane_rng lanes(r);
    const fbatch one(1.0f), zero(0.0f);
    for (std::size_t pl = 0; pl < planes; ++pl) {
        const grid g = grid_of(pl);
        const float* xp = x + pl * size;
        Out* op = out + pl * size;
        const fbatch inv(g.inv_scale), off(g.offset), lo(g.code_lo), hi(g.code_hi), s(g.scale);
        const std::size_t body = size - size % simd::width; // (a bound GCC's loop analysis follows)
        std::size_t i = 0;
        for (; i < body; i += simd::width) {
            const fbatch t = (fbatch::load_unaligned(xp + i) - off) * inv;
            const fbatch fl = xsimd::floor(t);
            const fbatch up = xsimd::select(lanes.uniform() < t - fl, one, zero);
            const fbatch q = xsimd::clip(fl + up, lo, hi);
            if constexpr (std::is_same_v<Out, float>) {
                simd::fma(q, s, off).store_unaligned(op + i);
            } else {
                simd::store_narrow(xsimd::nearbyint_as_int(q), op + i);
            }
        }
        for (; i < size; ++i) {
            const float t = (xp[i] - g.offset) * g.inv_scale, fl = std::floor(t);
            const float q = std::clamp(fl + (r.uniform() < t - fl ? 1.0f : 0.0f), g.code_lo, g.code_hi);
            if constexpr (std::is_same_v<Out, float>) {
                op[i] = std::fma(q, g.scale, g.offset);
            } else {
                op[i] = static_cast<Out>(q);
            }
        }
    }
}
/// Two stochastic quantizations of the same planes in one pass over x: run i
/// on grid_a(i) into out_a and on grid_b(i) into out_b, each value with its
/// own uniform draw (independent of the other's), one stream: what a layer that
/// needs x at two grids saves is a read of x and half the random-number steps
/// (**[decision]** the vector body gives each rounding 16 random bits, the top
/// bits of two different scramblings of one xorshift step, as the midpoint of
/// their cell (lane_rng::uniform_pair): a probability of rounding up within
/// 2^-17 of frac; the scalar tail draws 24 bits per rounding).
template <class Out, class GridA, class GridB>
inline void quantize_stochastic_planes_pair(const float* x, std::size_t planes, std::size_t size, GridA&& grid_a,
                                            Out* out_a, GridB&& grid_b, Out* out_b, rng& r) noexcept {
    using simd::fbatch;
    simd::lane_rng lanes(r);
    const fbatch one(1.0f), zero(0.0f);
    const auto code = [&](const fbatch& v, const fbatch& u, const fbatch& off, const fbatch& inv, const fbatch& lo,
                          const fbatch& hi) {
        const fbatch t = (v - off) * inv;
        const fbatch fl = xsimd::floor(t);
        return xsimd::clip(fl + xsimd::select(u < t - fl, one, zero), lo, hi);
    };
    const auto scalar = [&](float v, const grid& g) {
        const float t = (v - g.offset) * g.inv_scale, fl = std::floor(t);
        return std::clamp(fl + (r.uniform() < t - fl ? 1.0f : 0.0f), g.code_lo, g.code_hi);
    };
    for (std::size_t pl = 0; pl < planes; ++pl) {
        const grid ga = grid_a(pl), gb = grid_b(pl);
        const float* xp = x + pl * size;
        Out* oa = out_a + pl * size;
        Out* ob = out_b + pl * size;
        const fbatch inva(ga.inv_scale), offa(ga.offset), loa(ga.code_lo), hia(ga.code_hi), sa(ga.scale);
        const fbatch invb(gb.inv_scale), offb(gb.offset), lob(gb.code_lo), hib(gb.code_hi), sb(gb.scale);
        std::size_t i = 0;
        for (; i + simd::width <= size; i += simd::width) {
            const fbatch v = fbatch::load_unaligned(xp + i);
            const auto [ua, ub] = lanes.uniform_pair(); // 16 random bits for each rounding
            const fbatch qa = code(v, ua, offa, inva, loa, hia), qb = code(v, ub, offb, invb, lob, hib);
            if constexpr (std::is_same_v<Out, float>) {
                simd::fma(qa, sa, offa).store_unaligned(oa + i);
                simd::fma(qb, sb, offb).store_unaligned(ob + i);
            } else {
                simd::store_narrow(xsimd::nearbyint_as_int(qa), oa + i);
                simd::store_narrow(xsimd::nearbyint_as_int(qb), ob + i);
            }
        }
        for (; i < size; ++i) {
            const float qa = scalar(xp[i], ga), qb = scalar(xp[i], gb);
            if constexpr (std::is_same_v<Out, float>) {
                oa[i] = std::fma(qa, ga.scale, ga.offset);
                ob[i] = std::fma(qb, gb.scale, gb.offset);
            } else {
                oa[i] = static_cast<Out>(qa);
                ob[i] = static_cast<Out>(qb);
            }
        }
    }
}
template <class Out>
inline void quantize_stochastic(const float* x, std::size_t n, const grid& g, Out* out, rng& r) noexcept {
    quantize_stochastic_planes(x, 1, n, [&](std::size_t) { return g; }, out, r);
}

/// Plain scalar reference of symmetric per-tensor nearest quantization: the
/// oracle of the tests and the baseline of bench/quantize.
template <class Int>
inline float quantize_symmetric_reference(const float* x, std::size_t n, int bits, Int* out) {
    float m = 0.0f;
    for (std::size_t i = 0; i < n; ++i) {
        m = std::max(m, std::fabs(x[i]));
    }
    const float qmax = static_cast<float>((1 << (bits - 1)) - 1);
    const float scale = m / qmax;
    for (std::size_t i = 0; i < n; ++i) {
        const float q = scale > 0.0f ? std::nearbyint(x[i] / scale) : 0.0f;
        out[i] = static_cast<Int>(std::clamp(q, -qmax, qmax));
    }
    return scale;
}

template <class Int>
inline void check_bits(int bits, bool is_signed_grid, const char* where) {
    const int max_bits = std::numeric_limits<Int>::digits + (std::is_signed_v<Int> ? 1 : 0);
    if (bits < 2 || bits > max_bits || bits > 24) {
        throw error(concat(where, ": cannot quantize to ", bits, " bits with ", max_bits,
                           "-bit integer codes (use 2 to ", std::min(max_bits, 24), " bits)"));
    }
    if (is_signed_grid != std::is_signed_v<Int>) {
        throw error(concat(where, is_signed_grid ? ": the symmetric grid needs signed integer codes"
                                                 : ": the range grid needs unsigned integer codes"));
    }
}

template <class G, class E>
[[nodiscard]] std::size_t channels_of(const E& x) {
    if constexpr (std::is_same_v<G, per_channel>) {
        return x.dimension() == 0 ? 1 : x.shape()[0];
    } else {
        return 1;
    }
}

template <class Rounding, class Out>
inline void quantize_block(const float* x, std::size_t n, const grid& g, Out* out, rng* r) {
    if constexpr (std::is_same_v<Rounding, stochastic>) {
        quantize_stochastic(x, n, g, out, *r);
    } else {
        quantize_nearest(x, n, g, out);
    }
}

} // namespace detail

/// Symmetric (max-abs) quantization to `bits` bits, into `q` (its buffers
/// are reused when the shape is unchanged: no allocation in a training loop).
/// @tparam Int         code type: int8_t for up to 8 bits, int16_t up to 16
/// @tparam Granularity per_tensor or per_channel (axis 0)
/// @tparam Rounding    nearest_even, or stochastic (pass an rng)
/// @pre bits in [2, width of Int]; x finite (NaN or infinity throws numeric_error)
/// @post |x - dequantize(result)| <= scale / 2 for nearest rounding, < scale for stochastic
template <class Int = std::int8_t, quant_granularity Granularity = per_tensor, quant_rounding Rounding = nearest_even,
          std::size_t N>
void quantize_symmetric(const tensor<float, N>& x, int bits, quantized_tensor<Int, N>& q, rng* random = nullptr) {
    detail::check_bits<Int>(bits, true, "frugal::quantize_symmetric");
    if (std::is_same_v<Rounding, stochastic> && random == nullptr) {
        throw error("frugal::quantize_symmetric: stochastic rounding needs a random source (pass &rng)");
    }
    if (q.values.shape() != x.shape()) {
        q.values.resize(x.shape());
    }
    q.bits = bits;
    const std::size_t channels = detail::channels_of<Granularity>(x);
    const std::size_t per = channels == 0 ? 0 : x.size() / channels;
    q.scale.resize(channels);
    q.offset.assign(channels, 0.0f);
    for (std::size_t c = 0; c < channels; ++c) {
        const float* src = x.data() + c * per;
        const detail::grid g = detail::symmetric_grid(detail::max_abs(src, per, "frugal::quantize_symmetric"), bits);
        q.scale[c] = g.scale;
        detail::quantize_block<Rounding>(src, per, g, q.values.data() + c * per, random);
    }
}

/// As above, returning a new quantized tensor.
template <class Int = std::int8_t, quant_granularity Granularity = per_tensor, quant_rounding Rounding = nearest_even,
          std::size_t N>
[[nodiscard]] quantized_tensor<Int, N> quantize_symmetric(const tensor<float, N>& x, int bits,
                                                          rng* random = nullptr) {
    quantized_tensor<Int, N> q;
    quantize_symmetric<Int, Granularity, Rounding>(x, bits, q, random);
    return q;
}

/// Range (asymmetric min/max) quantization to `bits` bits with the given
/// range per tensor, or with each channel's own [min, max] when `range` is
/// empty (SPEC §0's weight quantizer).
template <class Int = std::uint8_t, quant_granularity Granularity = per_tensor,
          quant_rounding Rounding = nearest_even, std::size_t N>
[[nodiscard]] quantized_tensor<Int, N> quantize_range(const tensor<float, N>& x, int bits,
                                                      const value_range* range = nullptr, rng* random = nullptr) {
    detail::check_bits<Int>(bits, false, "frugal::quantize_range");
    if (std::is_same_v<Rounding, stochastic> && random == nullptr) {
        throw error("frugal::quantize_range: stochastic rounding needs a random source (pass &rng)");
    }
    quantized_tensor<Int, N> q;
    q.values = tensor<Int, N>::from_shape(x.shape());
    q.bits = bits;
    const std::size_t channels = detail::channels_of<Granularity>(x);
    const std::size_t per = channels == 0 ? 0 : x.size() / channels;
    q.scale.resize(channels);
    q.offset.resize(channels);
    for (std::size_t c = 0; c < channels; ++c) {
        const float* src = x.data() + c * per;
        const value_range r = range != nullptr ? *range : detail::min_max(src, per, "frugal::quantize_range");
        const detail::grid g = detail::range_grid(r, bits);
        q.scale[c] = g.scale;
        q.offset[c] = g.offset;
        detail::quantize_block<Rounding>(src, per, g, q.values.data() + c * per, random);
    }
    return q;
}

/// Values of the codes: offset + scale * code, per channel.
template <class Int, std::size_t N>
[[nodiscard]] tensor<float, N> dequantize(const quantized_tensor<Int, N>& q) {
    auto out = tensor<float, N>::from_shape(q.values.shape());
    const std::size_t channels = q.scale.size();
    const std::size_t per = channels == 0 ? 0 : q.values.size() / channels;
    for (std::size_t c = 0; c < channels; ++c) {
        const float s = q.scale[c];
        const float o = q.offset[c];
        const Int* src = q.values.data() + c * per;
        float* dst = out.data() + c * per;
        for (std::size_t i = 0; i < per; ++i) {
            dst[i] = o + s * static_cast<float>(src[i]);
        }
    }
    return out;
}

/// Fake symmetric quantization: `out` receives the dequantized values.
/// Returns the scale of each channel. `out` may alias `x`.
template <quant_granularity Granularity = per_tensor, quant_rounding Rounding = nearest_even, std::size_t N>
std::vector<float> fake_quantize_symmetric(const tensor<float, N>& x, tensor<float, N>& out, int bits,
                                           rng* random = nullptr) {
    detail::check_bits<std::int32_t>(bits, true, "frugal::fake_quantize_symmetric");
    if (std::is_same_v<Rounding, stochastic> && random == nullptr) {
        throw error("frugal::fake_quantize_symmetric: stochastic rounding needs a random source (pass &rng)");
    }
    if (out.shape() != x.shape()) {
        out.resize(x.shape());
    }
    const std::size_t channels = detail::channels_of<Granularity>(x);
    const std::size_t per = channels == 0 ? 0 : x.size() / channels;
    std::vector<float> scales(channels);
    for (std::size_t c = 0; c < channels; ++c) {
        const float* src = x.data() + c * per;
        const detail::grid g =
            detail::symmetric_grid(detail::max_abs(src, per, "frugal::fake_quantize_symmetric"), bits);
        scales[c] = g.scale;
        detail::quantize_block<Rounding>(src, per, g, out.data() + c * per, random);
    }
    return scales;
}

/// Fake range quantization (SPEC §0's Q(t, b; lo, hi)): with `range` given,
/// one grid for the tensor; without, each channel's own [min, max].
/// `bits == 0` copies x unchanged (full precision). `out` may alias `x`.
template <quant_granularity Granularity = per_tensor, quant_rounding Rounding = nearest_even, std::size_t N>
void fake_quantize_range(const tensor<float, N>& x, tensor<float, N>& out, int bits,
                         const value_range* range = nullptr, rng* random = nullptr) {
    if (out.shape() != x.shape()) {
        out.resize(x.shape());
    }
    if (bits == 0) {
        if (&out != &x) {
            std::copy(x.data(), x.data() + x.size(), out.data());
        }
        return;
    }
    detail::check_bits<std::uint32_t>(bits, false, "frugal::fake_quantize_range");
    if (std::is_same_v<Rounding, stochastic> && random == nullptr) {
        throw error("frugal::fake_quantize_range: stochastic rounding needs a random source (pass &rng)");
    }
    const std::size_t channels = detail::channels_of<Granularity>(x);
    const std::size_t per = channels == 0 ? 0 : x.size() / channels;
    for (std::size_t c = 0; c < channels; ++c) {
        const float* src = x.data() + c * per;
        const value_range r = range != nullptr ? *range : detail::min_max(src, per, "frugal::fake_quantize_range");
        detail::quantize_block<Rounding>(src, per, detail::range_grid(r, bits), out.data() + c * per, random);
    }
}

/// [min, max] of a tensor (NaN or infinity throws frugal::numeric_error).
template <std::size_t N>
[[nodiscard]] value_range min_max(const tensor<float, N>& x) {
    return detail::min_max(x.data(), x.size(), "frugal::min_max");
}

} // namespace frugal

#endif
