#ifndef FRUGAL_NUMERIC_ROUNDING_HPP
#define FRUGAL_NUMERIC_ROUNDING_HPP

/// @file
/// Rounding policies: what happens to the bits a narrowing conversion drops.
///
/// A policy is an empty type with a static `apply(v, shift)` that divides an
/// integer by 2^shift and rounds the quotient. Callers guarantee
/// 1 <= shift <= digits - 2 of the integer type they pass (frugal widens the
/// value first), so policies need no special cases for huge shifts. Deterministic policies have
/// `apply(v, shift)`; random ones have `apply(v, shift, rng)` and must be given
/// their random source explicitly (frugal never hides a global generator).
/// Users may add their own: anything that satisfies `rounding_policy` works.

#include <concepts>
#include <cstdint>
#include <random>
#include <string_view>

#include "frugal/numeric/integer.hpp"

namespace frugal {

/// Rounds toward minus infinity (drops the low bits of the two's-complement value).
struct truncate {
    static constexpr std::string_view name = "truncate";
    /// @return floor(v / 2^shift)
    template <class Int>
    [[nodiscard]] static constexpr Int apply(const Int& v, int shift) {
        return detail::floor_shift(v, shift);
    }
};

/// Rounds toward zero (what C++ integer division does).
struct toward_zero {
    static constexpr std::string_view name = "toward_zero";
    /// @return trunc(v / 2^shift)
    template <class Int>
    [[nodiscard]] static constexpr Int apply(const Int& v, int shift) {
        Int q = detail::floor_shift(v, shift);
        if (v < Int(0) && detail::low_bits(v, shift) != Int(0)) {
            ++q;
        }
        return q;
    }
};

/// Rounds to the nearest representable value; ties go to the even one.
struct nearest_even {
    static constexpr std::string_view name = "nearest_even";
    /// @return v / 2^shift rounded to nearest, ties to even
    template <class Int>
    [[nodiscard]] static constexpr Int apply(const Int& v, int shift) {
        if (shift <= 0) {
            return v;
        }
        Int q = detail::floor_shift(v, shift);
        const Int r = detail::low_bits(v, shift);
        const Int half = detail::pow2<Int>(shift - 1);
        if (r > half || (r == half && detail::is_odd(q))) {
            ++q;
        }
        return q;
    }
};

/// Unbiased stochastic rounding: rounds up with probability equal to the
/// dropped fraction, so E[round(x)] == x. Needs a random source.
struct stochastic {
    static constexpr std::string_view name = "stochastic";
    /// @return floor(v / 2^shift) + 1 with probability (v mod 2^shift) / 2^shift, else floor(v / 2^shift).
    /// For shift > 64 the fraction is resolved to 2^-64 (ties in the top 64
    /// bits round up when any lower bit is set).
    template <class Int, class Rng>
    [[nodiscard]] static Int apply(const Int& v, int shift, Rng& rng) {
        if (shift <= 0) {
            return v;
        }
        Int q = detail::floor_shift(v, shift);
        const Int r = detail::low_bits(v, shift);
        if (r == Int(0)) {
            return q;
        }
        if (shift <= 64) {
            const std::uint64_t u = detail::random_bits(rng, shift);
            if constexpr (detail::is_big_int<Int>::value) {
                if (Int(u) < r) {
                    ++q;
                }
            } else {
                if (u < static_cast<std::uint64_t>(r)) {
                    ++q;
                }
            }
        } else {
            // Compare the top 64 bits of the fraction with 64 random bits; ties in
            // the top bits are broken by the remaining bits being nonzero.
            const Int top = detail::floor_shift(r, shift - 64);
            const bool rest = detail::low_bits(r, shift - 64) != Int(0);
            const Int u = Int(detail::random_bits(rng, 64));
            if (u < top || (u == top && rest)) {
                ++q;
            }
        }
        return q;
    }
};

/// A rounding policy that needs no random source.
template <class R>
concept deterministic_rounding = requires(std::int64_t v, int s) {
    { R::apply(v, s) } -> std::same_as<std::int64_t>;
    R::name;
};

/// A rounding policy that draws from a random source passed to it.
template <class R>
concept random_rounding = requires(std::int64_t v, int s, std::mt19937_64& g) {
    { R::apply(v, s, g) } -> std::same_as<std::int64_t>;
    R::name;
};

/// Anything usable as the Rounding parameter of frugal::fixed.
template <class R>
concept rounding_policy = deterministic_rounding<R> || random_rounding<R>;

} // namespace frugal

#endif
