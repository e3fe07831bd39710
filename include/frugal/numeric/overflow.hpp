#ifndef FRUGAL_NUMERIC_OVERFLOW_HPP
#define FRUGAL_NUMERIC_OVERFLOW_HPP

/// @file
/// Overflow policies: what a narrowing conversion does with a value that is
/// outside the destination format's range.
///
/// A policy is an empty type with a static
/// `apply(v, lo, hi, format)` that receives the already rounded raw integer `v`
/// (in an integer type wide enough to hold it exactly) and the destination's
/// raw range [lo, hi], and returns a raw value inside [lo, hi] or throws.
/// Users may add their own: anything that satisfies `overflow_policy` works.

#include <concepts>
#include <cstdint>
#include <string>
#include <string_view>

#include "frugal/error.hpp"
#include "frugal/numeric/integer.hpp"

namespace frugal {

/// Describes a fixed-point format for messages and for the wrap policy.
struct format_info {
    int int_bits = 0;
    int frac_bits = 0;
    bool is_signed = true;

    [[nodiscard]] constexpr int width() const noexcept { return int_bits + frac_bits; }

    /// "fixed<4,4>" or "ufixed<0,8>".
    [[nodiscard]] std::string name() const {
        return detail::concat(is_signed ? "fixed<" : "ufixed<", int_bits, ',', frac_bits, '>');
    }
};

/// Clamps to the nearest end of the range.
struct saturate {
    static constexpr std::string_view name = "saturate";
    template <class Int>
    [[nodiscard]] static constexpr Int apply(const Int& v, const Int& lo, const Int& hi, const format_info&) {
        return v < lo ? lo : (hi < v ? hi : v);
    }
};

/// Keeps the low `width` bits, as two's-complement hardware does.
struct wrap {
    static constexpr std::string_view name = "wrap";
    template <class Int>
    [[nodiscard]] static constexpr Int apply(const Int& v, const Int& lo, const Int& hi, const format_info& f) {
        if (!(v < lo) && !(hi < v)) {
            return v;
        }
        Int r = detail::low_bits(v, f.width()); // v mod 2^width, in [0, 2^width)
        if (f.is_signed && !(r < detail::pow2<Int>(f.width() - 1))) {
            r -= detail::pow2<Int>(f.width());
        }
        return r;
    }
};

/// Throws frugal::numeric_error naming the value and the format.
struct trap {
    static constexpr std::string_view name = "trap";
    template <class Int>
    [[nodiscard]] static constexpr Int apply(const Int& v, const Int& lo, const Int& hi, const format_info& f) {
        if (v < lo || hi < v) {
            throw numeric_error(detail::concat("frugal: fixed-point overflow: ", detail::scaled_to_decimal(v, f.frac_bits),
                                               " does not fit ", f.name(), " (range ",
                                               detail::scaled_to_decimal(lo, f.frac_bits), " to ",
                                               detail::scaled_to_decimal(hi, f.frac_bits), ")"));
        }
        return v;
    }
};

/// Anything usable as the Overflow parameter of frugal::fixed.
template <class O>
concept overflow_policy = requires(std::int64_t v, const format_info& f) {
    { O::apply(v, v, v, f) } -> std::same_as<std::int64_t>;
    O::name;
};

} // namespace frugal

#endif
