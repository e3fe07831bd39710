#ifndef FRUGAL_TESTS_NUMERIC_FIXED_ORACLE_HPP
#define FRUGAL_TESTS_NUMERIC_FIXED_ORACLE_HPP

// An independent model of fixed-point arithmetic on Boost.Multiprecision
// integers. It shares no code with frugal's fixed.hpp: values are exact
// (numerator, fractional bits) pairs, scaling uses multiplication and
// division by powers of two computed with cpp_int, and rounding uses
// cpp_int's quotient and remainder.

#include <boost/multiprecision/cpp_int.hpp>

#include <cmath>
#include <cstdint>
#include <optional>
#include <string>

#include <frugal/numeric/fixed.hpp>

namespace oracle {

/// Checked 256-bit integers: wide enough for every product the tests form
/// (160 bits), and any overflow inside the oracle throws instead of lying.
using big = boost::multiprecision::checked_int256_t;

/// The exact value n / 2^f.
struct value {
    big n;
    int f;
};

inline big power_of_two(int e) {
    big r = 1;
    r <<= e;
    return r;
}

/// n * 2^(to - from) for to >= from.
inline big rescale_up(const big& n, int from, int to) { return n * power_of_two(to - from); }

template <class T>
value of(const T& x) {
    if constexpr (frugal::detail::is_big_int<typename T::rep>::value) {
        return {big(x.raw()), T::frac_bits};
    } else if constexpr (std::is_signed_v<typename T::rep>) {
        return {big(static_cast<long long>(x.raw())), T::frac_bits};
    } else {
        return {big(static_cast<unsigned long long>(x.raw())), T::frac_bits};
    }
}

inline value add(const value& a, const value& b) {
    const int f = std::max(a.f, b.f);
    return {rescale_up(a.n, a.f, f) + rescale_up(b.n, b.f, f), f};
}
inline value sub(const value& a, const value& b) {
    const int f = std::max(a.f, b.f);
    return {rescale_up(a.n, a.f, f) - rescale_up(b.n, b.f, f), f};
}
inline value mul(const value& a, const value& b) { return {a.n * b.n, a.f + b.f}; }

/// Same value? (any fractional-bit counts)
inline bool equal(const value& a, const value& b) {
    const int f = std::max(a.f, b.f);
    return rescale_up(a.n, a.f, f) == rescale_up(b.n, b.f, f);
}

enum class rounding { truncate, toward_zero, nearest_even, stochastic_down, stochastic_up };
enum class overflow { saturate, wrap, trap };

template <class R>
constexpr rounding rounding_of() {
    if constexpr (std::is_same_v<R, frugal::truncate>) {
        return rounding::truncate;
    } else if constexpr (std::is_same_v<R, frugal::toward_zero>) {
        return rounding::toward_zero;
    } else {
        static_assert(std::is_same_v<R, frugal::nearest_even>, "oracle: deterministic rounding expected");
        return rounding::nearest_even;
    }
}
template <class O>
constexpr overflow overflow_of() {
    if constexpr (std::is_same_v<O, frugal::saturate>) {
        return overflow::saturate;
    } else if constexpr (std::is_same_v<O, frugal::wrap>) {
        return overflow::wrap;
    } else {
        return overflow::trap;
    }
}

/// Stores values with `from_frac` fractional bits into one format: the
/// powers of two and the range are computed once.
class narrower {
public:
    narrower(int from_frac, bool is_signed, int int_bits, int frac_bits, overflow o)
        : shift_(from_frac - frac_bits), is_signed_(is_signed), o_(o) {
        const int width = int_bits + frac_bits;
        scale_ = power_of_two(shift_ > 0 ? shift_ : -shift_);
        modulus_ = power_of_two(width);
        half_modulus_ = power_of_two(width - 1);
        lo_ = is_signed ? big(-half_modulus_) : big(0);
        hi_ = is_signed ? big(half_modulus_ - 1) : big(modulus_ - 1);
    }

    /// The raw integer n * 2^-from_frac rounded to frac_bits; no range limits.
    [[nodiscard]] big round(const big& n, rounding r) const {
        if (shift_ <= 0) {
            return n * scale_;
        }
        const big& d = scale_;
        big q = n / d;   // truncates toward zero
        big rem = n % d; // same sign as n
        if (rem < 0) {   // make it floor
            q -= 1;
            rem += d;
        }
        switch (r) {
        case rounding::truncate:
        case rounding::stochastic_down:
            return q;
        case rounding::stochastic_up:
            return rem == 0 ? q : big(q + 1);
        case rounding::toward_zero:
            return (n < 0 && rem != 0) ? big(q + 1) : q;
        case rounding::nearest_even:
            if (2 * rem > d || (2 * rem == d && q % 2 != 0)) {
                return q + 1;
            }
            return q;
        }
        return q;
    }

    /// Expected raw result (empty: must throw).
    [[nodiscard]] std::optional<big> operator()(const big& n, rounding r) const {
        const big q = round(n, r);
        if (q >= lo_ && q <= hi_) {
            return q;
        }
        switch (o_) {
        case overflow::saturate:
            return q < lo_ ? lo_ : hi_;
        case overflow::trap:
            return std::nullopt;
        case overflow::wrap: {
            big w = q % modulus_;
            if (w < 0) {
                w += modulus_;
            }
            if (is_signed_ && w >= half_modulus_) {
                w -= modulus_;
            }
            return w;
        }
        }
        return q;
    }

private:
    int shift_;
    bool is_signed_;
    overflow o_;
    big scale_, modulus_, half_modulus_, lo_, hi_;
};

/// Expected raw result of storing v into the format (empty: must throw).
inline std::optional<big> narrow(const value& v, bool is_signed, int int_bits, int frac_bits, rounding r, overflow o) {
    return narrower(v.f, is_signed, int_bits, frac_bits, o)(v.n, r);
}

template <class T>
std::optional<big> narrow(const value& v) {
    return narrow(v, T::is_signed, T::int_bits, T::frac_bits, rounding_of<typename T::rounding>(),
                  overflow_of<typename T::overflow>());
}

/// The exact value of a finite double (frexp splits it; 53 bits of mantissa
/// are an integer once scaled by 2^53). Needs |x| < 2^150.
inline value of_double(double x) {
    int k = 0;
    const double f = std::frexp(x, &k); // x = f * 2^k, 0.5 <= |f| < 1
    const auto m = static_cast<long long>(std::ldexp(f, 53));
    const int e = k - 53; // x = m * 2^e
    if (e >= 0) {
        return {big(m) * power_of_two(e), 0};
    }
    return {big(m), -e};
}

} // namespace oracle

#endif
