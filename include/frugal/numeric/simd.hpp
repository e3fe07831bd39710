#ifndef FRUGAL_NUMERIC_SIMD_HPP
#define FRUGAL_NUMERIC_SIMD_HPP

/// @file
/// Small xsimd helpers shared by frugal's vectorized code: horizontal
/// reductions, narrowing stores, and a per-lane random generator for
/// stochastic rounding. The instruction set is xsimd's default architecture,
/// i.e. what the compiler flags allow (see FRUGAL_ARCH in the build).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <type_traits>
#include <utility>

#include <xsimd/xsimd.hpp>

#include "frugal/numeric/random.hpp"

namespace frugal::simd {

using arch = xsimd::default_arch;
using fbatch = xsimd::batch<float, arch>;
using ibatch = xsimd::batch<std::int32_t, arch>;
using ubatch = xsimd::batch<std::uint32_t, arch>;
inline constexpr std::size_t width = fbatch::size;

/// Largest lane.
[[nodiscard]] inline float hmax(const fbatch& b) noexcept {
#if XSIMD_WITH_AVX512F
    if constexpr (width == 16) {
        return _mm512_reduce_max_ps(b);
    }
#endif
    alignas(64) float t[width];
    b.store_aligned(t);
    float m = t[0];
    for (std::size_t i = 1; i < width; ++i) {
        m = std::max(m, t[i]);
    }
    return m;
}

/// Smallest lane.
[[nodiscard]] inline float hmin(const fbatch& b) noexcept {
#if XSIMD_WITH_AVX512F
    if constexpr (width == 16) {
        return _mm512_reduce_min_ps(b);
    }
#endif
    alignas(64) float t[width];
    b.store_aligned(t);
    float m = t[0];
    for (std::size_t i = 1; i < width; ++i) {
        m = std::min(m, t[i]);
    }
    return m;
}

/// Stores the lanes of an int32 batch, already within Int's range, as Int
/// (one pack or narrowing-store instruction where the instruction set has one).
template <class Int>
inline void store_narrow(const ibatch& b, Int* out) noexcept {
    static_assert(std::is_integral_v<Int> && sizeof(Int) <= 4, "frugal::simd::store_narrow: integer of at most 32 bits");
#if XSIMD_WITH_AVX512F
    if constexpr (width == 16 && sizeof(Int) == 1) {
        const __m128i p = std::is_signed_v<Int> ? _mm512_cvtsepi32_epi8(b) : _mm512_cvtusepi32_epi8(b);
        _mm_storeu_si128(reinterpret_cast<__m128i*>(out), p);
        return;
    } else if constexpr (width == 16 && sizeof(Int) == 2) {
        const __m256i p = std::is_signed_v<Int> ? _mm512_cvtsepi32_epi16(b) : _mm512_cvtusepi32_epi16(b);
        _mm256_storeu_si256(reinterpret_cast<__m256i*>(out), p);
        return;
    }
#elif XSIMD_WITH_AVX2
    if constexpr (width == 8 && (sizeof(Int) == 1 || sizeof(Int) == 2)) {
        const __m256i v = b;
        const __m128i v0 = _mm256_castsi256_si128(v), v1 = _mm256_extracti128_si256(v, 1);
        if constexpr (sizeof(Int) == 2) { // unsigned 16-bit codes reach 65535: unsigned saturation
            _mm_storeu_si128(reinterpret_cast<__m128i*>(out),
                             std::is_signed_v<Int> ? _mm_packs_epi32(v0, v1) : _mm_packus_epi32(v0, v1));
        } else {
            const __m128i p16 = _mm_packs_epi32(v0, v1);
            const __m128i p8 = std::is_signed_v<Int> ? _mm_packs_epi16(p16, p16) : _mm_packus_epi16(p16, p16);
            _mm_storel_epi64(reinterpret_cast<__m128i*>(out), p8);
        }
        return;
    }
#elif XSIMD_WITH_SSE2
    if constexpr (width == 4 && sizeof(Int) == 1) {
        const __m128i p16 = _mm_packs_epi32(b, b);
        const __m128i p8 = std::is_signed_v<Int> ? _mm_packs_epi16(p16, p16) : _mm_packus_epi16(p16, p16);
        const std::int32_t four = _mm_cvtsi128_si32(p8);
        std::memcpy(out, &four, 4);
        return;
    }
#endif
    alignas(64) std::int32_t t[width];
    b.store_aligned(t);
    for (std::size_t i = 0; i < width; ++i) {
        out[i] = static_cast<Int>(t[i]);
    }
}

/// a * b + c in every lane, fused (one rounding) where the instruction set has FMA, else a product
/// and a sum (SSE2). frugal's kernels call this, not xsimd::fma: xsimd 8's AVX-512 architectures
/// have no fma of their own and fall back to `a * b + c`, which -ffp-contract=off (the frugal
/// target's flag, docs/architecture.md) leaves unfused: two roundings and twice the instructions
/// in every inner product.
template <class A>
[[nodiscard]] inline xsimd::batch<float, A> fma(const xsimd::batch<float, A>& a, const xsimd::batch<float, A>& b,
                                                const xsimd::batch<float, A>& c) noexcept {
    constexpr std::size_t lanes = xsimd::batch<float, A>::size;
#if defined(__AVX512F__)
    if constexpr (lanes == 16) {
        return _mm512_fmadd_ps(a, b, c);
    }
#endif
#if defined(__FMA__)
    if constexpr (lanes == 8) {
        return _mm256_fmadd_ps(a, b, c);
    } else if constexpr (lanes == 4) {
        return _mm_fmadd_ps(a, b, c);
    }
#endif
    (void)lanes;
    return xsimd::fma(a, b, c);
}

/// a * b + c for one value exactly as the vector code computes it in every lane (simd::fma of the
/// default architecture: fused where the instruction set has it, else a product and a sum): what a
/// scalar tail uses when its results must equal the lanes' (a value recomputed later, a range
/// derived from the inputs').
[[nodiscard]] inline float fma1(float a, float b, float c) noexcept {
    return simd::fma(fbatch(a), fbatch(b), fbatch(c)).get(0);
}

/// Stores one byte per lane: 1 where `b` is set, else 0 (a mask kept for a later pass at a
/// quarter of a float's size).
inline void store_flags(const xsimd::batch_bool<float, arch>& b, std::uint8_t* out) noexcept {
    store_narrow(xsimd::nearbyint_as_int(xsimd::select(b, fbatch(1.0f), fbatch(0.0f))), out);
}
/// The lanes whose byte (store_flags) is nonzero.
[[nodiscard]] inline xsimd::batch_bool<float, arch> load_flags(const std::uint8_t* in) noexcept {
#if XSIMD_WITH_AVX512F
    if constexpr (width == 16) {
        const __m512i v = _mm512_cvtepu8_epi32(_mm_loadu_si128(reinterpret_cast<const __m128i*>(in)));
        return xsimd::batch_bool<float, arch>(_mm512_test_epi32_mask(v, v));
    }
#elif XSIMD_WITH_AVX2
    if constexpr (width == 8) {
        const __m256i v = _mm256_cvtepu8_epi32(_mm_loadl_epi64(reinterpret_cast<const __m128i*>(in)));
        return xsimd::batch_bool<float, arch>(_mm256_castsi256_ps(_mm256_cmpgt_epi32(v, _mm256_setzero_si256())));
    }
#elif XSIMD_WITH_SSE2
    if constexpr (width == 4) { // 4 bytes widened by two unpacks with zero
        std::int32_t four;
        std::memcpy(&four, in, 4);
        const __m128i z = _mm_setzero_si128();
        const __m128i v = _mm_unpacklo_epi16(_mm_unpacklo_epi8(_mm_cvtsi32_si128(four), z), z);
        return xsimd::batch_bool<float, arch>(_mm_castsi128_ps(_mm_cmpgt_epi32(v, z)));
    }
#endif
    alignas(64) float t[width];
    for (std::size_t i = 0; i < width; ++i) {
        t[i] = in[i] != 0 ? 1.0f : 0.0f;
    }
    return fbatch::load_aligned(t) != fbatch(0.0f);
}

/// Loads `width` Int values widened to float lanes.
template <class Int>
[[nodiscard]] inline fbatch load_widen(const Int* in) noexcept {
    alignas(64) float t[width];
    for (std::size_t i = 0; i < width; ++i) {
        t[i] = static_cast<float>(in[i]);
    }
    return fbatch::load_aligned(t);
}

/// Independent 32-bit xorshift generators, one per lane, seeded from a
/// frugal::rng. Used for the uniform noise of stochastic rounding, where
/// per-element scalar draws would cost more than the rounding itself.
class lane_rng {
public:
    explicit lane_rng(rng& source) noexcept {
        alignas(64) std::uint32_t s[width];
        for (std::size_t i = 0; i < width; ++i) {
            std::uint32_t v = 0;
            while (v == 0) { // xorshift needs a nonzero state
                v = static_cast<std::uint32_t>(source() >> 32);
            }
            s[i] = v;
        }
        state_ = ubatch::load_aligned(s);
    }

    /// Uniform floats in [0, 1) with 24 bits, one per lane.
    fbatch uniform() noexcept {
        const ibatch top = xsimd::bitwise_cast<ibatch>((step() * ubatch(0x9e3779bbU)) >> 8);
        return xsimd::to_float(top) * fbatch(0x1.0p-24f);
    }
    /// Two uniform floats in (0, 1) per lane with 16 bits each, the midpoints (k + 1/2) 2^-16 of
    /// the 2^16 cells, from one xorshift step scrambled by two different multiplications. What a
    /// pair of stochastic roundings uses: a draw below frac rounds up with a probability within
    /// 2^-17 of frac either way.
    std::pair<fbatch, fbatch> uniform_pair() noexcept {
        // each the top 16 bits of its own scrambling product (the low bits of a product depend only
        // on the low bits of the state)
        const ubatch x = step();
        const fbatch a = xsimd::to_float(xsimd::bitwise_cast<ibatch>((x * ubatch(0x9e3779bbU)) >> 16));
        const fbatch b = xsimd::to_float(xsimd::bitwise_cast<ibatch>((x * ubatch(0x85ebca6bU)) >> 16));
        const fbatch cell(0x1.0p-16f), half(0x1.0p-17f);
        return {simd::fma(a, cell, half), simd::fma(b, cell, half)};
    }

private:
    /// The next xorshift state per lane; the draws scramble it by a multiplication and take its top
    /// bits (xorshift's low bits are of low quality).
    ubatch step() noexcept {
        ubatch x = state_;
        x ^= x << 13;
        x ^= x >> 17;
        x ^= x << 5;
        state_ = x;
        return x;
    }

    ubatch state_;
};

} // namespace frugal::simd

#endif
