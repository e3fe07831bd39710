#ifndef FRUGAL_NUMERIC_FIXED_HPP
#define FRUGAL_NUMERIC_FIXED_HPP

/// @file
/// Compile-time fixed-point formats: `fixed<IntBits, FracBits, Rounding, Overflow>`
/// (two's complement) and `ufixed<...>` (unsigned).
///
/// A value of `fixed<I, F>` is `raw * 2^-F` where `raw` is an `I + F`-bit
/// two's-complement integer, so its range is [-2^(I-1), 2^(I-1) - 2^-F]; the
/// sign bit counts as one of the I integer bits. `ufixed<I, F>` holds
/// [0, 2^I - 2^-F]. I may be zero or negative (a purely fractional format),
/// F must be >= 0, and I + F is between 1 and frugal::max_fixed_width.
///
/// Arithmetic never loses information: `+`, `-`, `*` and unary `-` return a
/// wider format that holds the exact result (see the result-type aliases
/// below). Information is lost only when a value is stored in a narrower
/// format (construction, assignment, `fixed_cast`), and then the destination's
/// Rounding and Overflow policies decide how.

#include <algorithm>
#include <bit>
#include <compare>
#include <concepts>
#include <cstdint>
#include <limits>
#include <ostream>
#include <string>
#include <type_traits>

#include "frugal/error.hpp"
#include "frugal/numeric/integer.hpp"
#include "frugal/numeric/overflow.hpp"
#include "frugal/numeric/rounding.hpp"

namespace frugal {

template <bool Signed, int IntBits, int FracBits, class Rounding, class Overflow>
class basic_fixed;

/// Signed two's-complement fixed point with IntBits integer bits (the sign
/// included) and FracBits fractional bits. Defaults: round to nearest even,
/// saturate on overflow (the safe choice for training; hardware-style
/// `truncate` and `wrap` are one template argument away).
template <int IntBits, int FracBits, class Rounding = nearest_even, class Overflow = saturate>
using fixed = basic_fixed<true, IntBits, FracBits, Rounding, Overflow>;

/// Unsigned fixed point with IntBits integer and FracBits fractional bits.
template <int IntBits, int FracBits, class Rounding = nearest_even, class Overflow = saturate>
using ufixed = basic_fixed<false, IntBits, FracBits, Rounding, Overflow>;

template <class T>
struct is_fixed : std::false_type {};
template <bool S, int I, int F, class R, class O>
struct is_fixed<basic_fixed<S, I, F, R, O>> : std::true_type {};
template <class T>
inline constexpr bool is_fixed_v = is_fixed<std::remove_cvref_t<T>>::value;

/// Any frugal fixed-point format.
template <class T>
concept fixed_point = is_fixed_v<T>;

namespace detail {

/// Integer bits the format needs when viewed as a signed format.
template <class T>
inline constexpr int signed_int_bits = T::is_signed ? T::int_bits : T::int_bits + 1;

constexpr int cmax(int a, int b) noexcept { return a > b ? a : b; }

/// Exact decomposition of a finite double: x == mantissa * 2^exponent.
struct double_parts {
    std::int64_t mantissa;
    int exponent;
};

[[nodiscard]] constexpr double_parts decompose(double x) noexcept {
    const auto bits = std::bit_cast<std::uint64_t>(x);
    const bool negative = (bits >> 63) != 0;
    const int exp_field = static_cast<int>((bits >> 52) & 0x7ff);
    std::int64_t m = static_cast<std::int64_t>(bits & ((std::uint64_t{1} << 52) - 1));
    int e = -1074;
    if (exp_field != 0) {
        m |= std::int64_t{1} << 52;
        e = exp_field - 1075;
    }
    return {negative ? -m : m, e};
}

/// 2^e as a double, exactly, for |e| <= 1000.
[[nodiscard]] constexpr double exp2i(int e) noexcept {
    double r = 1.0;
    const double step = e >= 0 ? 2.0 : 0.5;
    for (int i = 0; i < (e >= 0 ? e : -e); ++i) {
        r *= step;
    }
    return r;
}

/// Applies rounding (with an optional random source) to v / 2^shift.
template <class Rounding, class Int, class... Rng>
[[nodiscard]] constexpr Int round_shift(const Int& v, int shift, Rng&... rng) {
    if (shift <= 0) {
        return v;
    }
    if constexpr (sizeof...(Rng) == 0) {
        static_assert(deterministic_rounding<Rounding>,
                      "frugal: this conversion drops bits and the destination rounds stochastically: "
                      "pass a random source, fixed_cast<To>(value, rng)");
        return Rounding::apply(v, shift);
    } else if constexpr (random_rounding<Rounding>) {
        return Rounding::apply(v, shift, rng...);
    } else {
        return Rounding::apply(v, shift);
    }
}

/// Width of the integer that convert_scaled needs for a source of from_width
/// bits (sign included) at from_frac fractional bits.
template <class To>
[[nodiscard]] constexpr int calc_width(int from_width, int from_frac) noexcept {
    const int s = from_frac - To::frac_bits;
    return cmax(cmax(from_width + 1 + (s < 0 ? -s : 0), s + 3), To::width + 3) + 1;
}

/// Raw value of format To for the exact value v * 2^-FromFrac, where v is an
/// integer of at most FromWidth bits (sign included).
template <class To, int FromWidth, int FromFrac, class Int, class... Rng>
[[nodiscard]] constexpr typename To::rep convert_scaled(const Int& v, Rng&... rng) {
    using calc = signed_int_t<calc_width<To>(FromWidth, FromFrac)>;
    constexpr int s = FromFrac - To::frac_bits;
    calc m = int_cast<calc>(v);
    if constexpr (s > 0) {
        m = round_shift<typename To::rounding>(m, s, rng...);
    } else if constexpr (s < 0) {
        m = static_cast<calc>(m << (-s));
    }
    const calc lo = int_cast<calc>(To::raw_min());
    const calc hi = int_cast<calc>(To::raw_max());
    return int_cast<typename To::rep>(To::overflow::apply(m, lo, hi, To::format));
}

template <class To, class From, class... Rng>
[[nodiscard]] constexpr typename To::rep convert_fixed(const From& x, Rng&... rng) {
    return convert_scaled<To, From::width + (From::is_signed ? 0 : 1), From::frac_bits>(x.raw(), rng...);
}

template <class To, std::integral T>
[[nodiscard]] constexpr typename To::rep convert_integer(T x) {
    return convert_scaled<To, std::numeric_limits<T>::digits + 1, 0>(x);
}

/// convert_double for values no rounding can bring into range: exact, with an
/// unbounded integer (so `wrap` gets the true low bits).
template <class To, class... Rng>
[[nodiscard]] typename To::rep convert_far_double(double x, Rng&... rng) {
    const auto [m, e] = decompose(x);
    bmp::cpp_int v = m;
    const int t = e + To::frac_bits;
    if (t >= 0) {
        v <<= t;
    } else {
        v = round_shift<typename To::rounding>(v, -t, rng...);
    }
    return int_cast<typename To::rep>(
        To::overflow::apply(v, bmp::cpp_int(To::raw_min()), bmp::cpp_int(To::raw_max()), To::format));
}

template <class To, class... Rng>
[[nodiscard]] constexpr typename To::rep convert_double(double x, Rng&... rng) {
    using rep = typename To::rep;
    constexpr int w = cmax(To::width + 3, 64);
    using calc = signed_int_t<w>;
    if (x != x) {
        throw numeric_error(concat("frugal: NaN cannot be converted to ", To::format.name()));
    }
    // Far outside the range: no rounding can bring the value back in.
    constexpr int sign_bits = To::is_signed ? 1 : 0;
    const double upper = exp2i(To::int_bits - sign_bits);               // first value above the range
    const double lower = To::is_signed ? -upper - exp2i(-To::frac_bits) // last value below the range
                                       : -exp2i(-To::frac_bits);
    const bool infinite = x == std::numeric_limits<double>::infinity() || x == -std::numeric_limits<double>::infinity();
    if (x >= upper || x <= lower) {
        if (infinite) {
            if constexpr (std::is_same_v<typename To::overflow, saturate>) {
                return x > 0 ? To::raw_max() : To::raw_min();
            } else {
                throw numeric_error(concat("frugal: ", x > 0 ? "+" : "-", "infinity cannot be converted to ",
                                           To::format.name(), " (overflow policy ", To::overflow::name, ")"));
            }
        }
        if (std::is_constant_evaluated()) {
            // Bounded exact arithmetic: m * 2^t needs at most W + 56 bits when
            // t <= W + 1; past that the value is a multiple of 2^W (its low
            // bits, what wrap keeps, are zero), so 2^(W+1) with x's sign stands in.
            using far = signed_int_t<cmax(To::width + 60, 70)>;
            const auto [m, e] = decompose(x);
            const int t = e + To::frac_bits;
            far v;
            if (t > To::width + 1) {
                v = pow2<far>(To::width + 1);
                if (m < 0) {
                    v = -v;
                }
            } else if (t >= 0) {
                v = static_cast<far>(int_cast<far>(m) << t);
            } else {
                v = round_shift<typename To::rounding>(int_cast<far>(m), -t, rng...);
            }
            return int_cast<rep>(To::overflow::apply(v, int_cast<far>(To::raw_min()), int_cast<far>(To::raw_max()), To::format));
        } else {
            return convert_far_double<To>(x, rng...);
        }
    }
    const auto [m, e] = decompose(x);
    const int t = e + To::frac_bits;
    calc v;
    if (t >= 0) {
        v = static_cast<calc>(int_cast<calc>(m) << t); // |x * 2^F| < 2^(W+1): fits
    } else {
        int s = -t;
        std::int64_t mm = m;
        if (s > 60) {
            // Keep the rounding decision exact: drop bits below 2^-60 of the
            // result into a sticky bit.
            const int d = s - 60;
            const bool sticky = low_bits(mm, d < 63 ? d : 62) != 0 || d >= 63;
            mm = floor_shift(mm, d);
            if (sticky && m != 0) {
                mm |= 1;
            }
            s = 60;
        }
        v = round_shift<typename To::rounding>(int_cast<calc>(mm), s, rng...);
    }
    return int_cast<rep>(To::overflow::apply(v, int_cast<calc>(To::raw_min()), int_cast<calc>(To::raw_max()), To::format));
}

} // namespace detail

/// A fixed-point number. Use through the aliases `fixed` and `ufixed`.
///
/// @tparam Signed    two's complement (true) or unsigned (false)
/// @tparam IntBits   integer bits, the sign bit included for signed formats
/// @tparam FracBits  fractional bits, >= 0
/// @tparam Rounding  a rounding_policy: truncate, toward_zero, nearest_even, stochastic, or your own
/// @tparam Overflow  an overflow_policy: saturate, wrap, trap, or your own
///
/// Storage is the narrowest standard integer holding IntBits + FracBits bits,
/// or a Boost.Multiprecision integer past 64 bits.
template <bool Signed, int IntBits, int FracBits, class Rounding, class Overflow>
class basic_fixed {
    static_assert(FracBits >= 0, "frugal::fixed: FracBits must be >= 0 (use more IntBits for coarse formats)");
    static_assert(IntBits + FracBits >= 1, "frugal::fixed: IntBits + FracBits must be at least 1 bit");
    static_assert(IntBits + FracBits <= max_fixed_width,
                  "frugal::fixed: IntBits + FracBits exceeds frugal::max_fixed_width (256 bits); "
                  "narrow an operand with fixed_cast before multiplying");
    static_assert(rounding_policy<Rounding>,
                  "frugal::fixed: Rounding must model frugal::rounding_policy (static apply(v, shift) or "
                  "apply(v, shift, rng), and a name)");
    static_assert(overflow_policy<Overflow>,
                  "frugal::fixed: Overflow must model frugal::overflow_policy (static apply(v, lo, hi, format) and a name)");

public:
    static constexpr bool is_signed = Signed;
    static constexpr int int_bits = IntBits;
    static constexpr int frac_bits = FracBits;
    static constexpr int width = IntBits + FracBits;
    static constexpr format_info format{IntBits, FracBits, Signed};
    using rounding = Rounding;
    using overflow = Overflow;
    /// The narrowest integer holding `width` bits.
    using rep = detail::storage_t<width, Signed>;

    /// Smallest and largest raw integers of the format.
    [[nodiscard]] static constexpr rep raw_min() noexcept {
        if constexpr (Signed) {
            return static_cast<rep>(-detail::pow2<detail::signed_int_t<width + 1>>(width - 1));
        } else {
            return rep(0);
        }
    }
    [[nodiscard]] static constexpr rep raw_max() noexcept {
        using w = detail::signed_int_t<width + 1>;
        return detail::int_cast<rep>(static_cast<w>(detail::pow2<w>(width - (Signed ? 1 : 0)) - 1));
    }

    /// Zero.
    constexpr basic_fixed() noexcept = default;

    /// The exact value of an integer, narrowed by Overflow if it does not fit.
    template <std::integral T>
        requires(!std::same_as<T, bool>)
    constexpr basic_fixed(T value) : raw_(detail::convert_integer<basic_fixed>(value)) {}

    /// A float or double rounded by Rounding and narrowed by Overflow.
    /// NaN throws frugal::numeric_error; +-infinity saturates under `saturate`
    /// and throws under every other overflow policy.
    template <std::floating_point T>
        requires(std::same_as<T, float> || std::same_as<T, double>)
    constexpr basic_fixed(T value) : raw_(detail::convert_double<basic_fixed>(static_cast<double>(value))) {}

    /// Another format, rounded by this format's Rounding and narrowed by its
    /// Overflow. Exact when this format is at least as wide on both sides.
    template <bool S2, int I2, int F2, class R2, class O2>
    constexpr basic_fixed(const basic_fixed<S2, I2, F2, R2, O2>& other)
        : raw_(detail::convert_fixed<basic_fixed>(other)) {}

    /// The value with the given raw integer. @pre raw_min() <= raw <= raw_max()
    [[nodiscard]] static constexpr basic_fixed from_raw(rep raw) noexcept {
        basic_fixed r;
        r.raw_ = raw;
        return r;
    }

    /// The raw two's-complement (or unsigned) integer: value * 2^FracBits.
    [[nodiscard]] constexpr rep raw() const noexcept { return raw_; }

    /// Nearest double (exact when width <= 53).
    [[nodiscard]] constexpr double to_double() const {
        if constexpr (detail::is_big_int<rep>::value) {
            return raw_.template convert_to<double>() * detail::exp2i(-FracBits);
        } else {
            return static_cast<double>(raw_) * detail::exp2i(-FracBits);
        }
    }
    [[nodiscard]] constexpr explicit operator double() const { return to_double(); }
    [[nodiscard]] constexpr explicit operator float() const { return static_cast<float>(to_double()); }

    [[nodiscard]] static constexpr basic_fixed lowest() noexcept { return from_raw(raw_min()); }
    [[nodiscard]] static constexpr basic_fixed max() noexcept { return from_raw(raw_max()); }
    /// One unit in the last place: 2^-FracBits.
    [[nodiscard]] static constexpr basic_fixed epsilon() noexcept { return from_raw(rep(1)); }

    template <fixed_point B>
    constexpr basic_fixed& operator+=(const B& b) { return *this = *this + b; }
    template <fixed_point B>
    constexpr basic_fixed& operator-=(const B& b) { return *this = *this - b; }
    template <fixed_point B>
    constexpr basic_fixed& operator*=(const B& b) { return *this = *this * b; }
    template <fixed_point B>
    constexpr basic_fixed& operator/=(const B& b) { return *this = *this / b; }

private:
    rep raw_{};
};

// ------------------------------------------------------------------ result types

namespace detail {
template <class A, class B>
struct arithmetic_result {
    static_assert(fixed_point<A> && fixed_point<B>, "frugal: fixed-point arithmetic needs two frugal::fixed operands");
    static constexpr bool both_unsigned = !A::is_signed && !B::is_signed;
    static constexpr int ia = signed_int_bits<A>;
    static constexpr int ib = signed_int_bits<B>;
    static constexpr int f = cmax(A::frac_bits, B::frac_bits);
    using R = typename A::rounding;
    using O = typename A::overflow;

    using sum = std::conditional_t<both_unsigned, basic_fixed<false, cmax(A::int_bits, B::int_bits) + 1, f, R, O>,
                                   basic_fixed<true, cmax(ia, ib) + 1, f, R, O>>;
    using difference = std::conditional_t<both_unsigned, basic_fixed<true, cmax(A::int_bits, B::int_bits) + 1, f, R, O>,
                                          basic_fixed<true, cmax(ia, ib) + 1, f, R, O>>;
    using product = basic_fixed<!both_unsigned, A::int_bits + B::int_bits, A::frac_bits + B::frac_bits, R, O>;
    static constexpr int qf = A::frac_bits + cmax(B::int_bits, 0);
    using quotient = std::conditional_t<both_unsigned, basic_fixed<false, A::int_bits + B::frac_bits, qf, R, O>,
                                        basic_fixed<true, ia + B::frac_bits + 1, qf, R, O>>;
};
} // namespace detail

/// Format of a + b: one more integer bit than the wider operand, the finer
/// fraction of the two; unsigned only when both operands are.
template <fixed_point A, fixed_point B>
using sum_t = typename detail::arithmetic_result<A, B>::sum;
/// Format of a - b: like sum_t, but always signed.
template <fixed_point A, fixed_point B>
using difference_t = typename detail::arithmetic_result<A, B>::difference;
/// Format of a * b: fixed<I1 + I2, F1 + F2> (ufixed when both are unsigned).
template <fixed_point A, fixed_point B>
using product_t = typename detail::arithmetic_result<A, B>::product;
/// Format of a / b: integer bits for the largest quotient (|a| / ulp(b)),
/// F1 + max(I2, 0) fractional bits; the quotient is truncated toward zero.
template <fixed_point A, fixed_point B>
using quotient_t = typename detail::arithmetic_result<A, B>::quotient;
/// Format of -a: fixed<I + 1, F> for signed and unsigned a.
template <fixed_point A>
using negate_t = basic_fixed<true, detail::signed_int_bits<A> + (A::is_signed ? 1 : 0), A::frac_bits,
                             typename A::rounding, typename A::overflow>;
/// Format of an exact sum of N values of format T: log2_ceil(N) more integer bits.
template <fixed_point T, std::size_t N>
using accumulator_t = basic_fixed<T::is_signed, T::int_bits + detail::log2_ceil(N), T::frac_bits,
                                  typename T::rounding, typename T::overflow>;

// ------------------------------------------------------------------ conversion

/// Converts to format To with To's Rounding and Overflow.
template <fixed_point To, class From>
    requires(fixed_point<From> || std::is_arithmetic_v<From>)
[[nodiscard]] constexpr To fixed_cast(const From& x) {
    return To(x);
}

/// Converts to format To, drawing the random bits of a stochastic Rounding
/// from `rng` (any 32- or 64-bit uniform random bit generator).
template <fixed_point To, class From, class Rng>
    requires(fixed_point<From> || std::floating_point<From>)
[[nodiscard]] To fixed_cast(const From& x, Rng& rng) {
    if constexpr (fixed_point<From>) {
        return To::from_raw(detail::convert_fixed<To>(x, rng));
    } else {
        return To::from_raw(detail::convert_double<To>(static_cast<double>(x), rng));
    }
}

// ------------------------------------------------------------------ arithmetic

namespace detail {
template <class C, class A, int TargetFrac>
[[nodiscard]] constexpr C aligned(const A& a) {
    return static_cast<C>(int_cast<C>(a.raw()) << (TargetFrac - A::frac_bits));
}
} // namespace detail

/// Exact sum.
template <fixed_point A, fixed_point B>
[[nodiscard]] constexpr sum_t<A, B> operator+(const A& a, const B& b) {
    using T = sum_t<A, B>;
    using C = detail::signed_int_t<T::width + 2>;
    const C r = detail::aligned<C, A, T::frac_bits>(a) + detail::aligned<C, B, T::frac_bits>(b);
    return T::from_raw(detail::int_cast<typename T::rep>(r));
}

/// Exact difference.
template <fixed_point A, fixed_point B>
[[nodiscard]] constexpr difference_t<A, B> operator-(const A& a, const B& b) {
    using T = difference_t<A, B>;
    using C = detail::signed_int_t<T::width + 2>;
    const C r = detail::aligned<C, A, T::frac_bits>(a) - detail::aligned<C, B, T::frac_bits>(b);
    return T::from_raw(detail::int_cast<typename T::rep>(r));
}

/// Exact product.
template <fixed_point A, fixed_point B>
[[nodiscard]] constexpr product_t<A, B> operator*(const A& a, const B& b) {
    using T = product_t<A, B>;
    using C = detail::signed_int_t<T::width + 2>;
    const C r = static_cast<C>(detail::int_cast<C>(a.raw()) * detail::int_cast<C>(b.raw()));
    return T::from_raw(detail::int_cast<typename T::rep>(r));
}

/// Exact negation.
template <fixed_point A>
[[nodiscard]] constexpr negate_t<A> operator-(const A& a) {
    using T = negate_t<A>;
    using C = detail::signed_int_t<T::width + 2>;
    return T::from_raw(detail::int_cast<typename T::rep>(static_cast<C>(-detail::int_cast<C>(a.raw()))));
}

template <fixed_point A>
[[nodiscard]] constexpr A operator+(const A& a) {
    return a;
}

/// Quotient truncated toward zero, in quotient_t<A, B> (which holds every
/// quotient). Division by zero throws frugal::numeric_error.
template <fixed_point A, fixed_point B>
[[nodiscard]] constexpr quotient_t<A, B> operator/(const A& a, const B& b) {
    using T = quotient_t<A, B>;
    // q_raw = a_raw * 2^(Fq + Fb - Fa) / b_raw, and Fq + Fb - Fa = max(Ib, 0) + Fb >= 0.
    constexpr int shift = T::frac_bits + B::frac_bits - A::frac_bits;
    using C = detail::signed_int_t<detail::cmax(A::width + 1 + shift, B::width + 1) + 2>;
    if (b.raw() == typename B::rep(0)) {
        throw numeric_error(detail::concat("frugal: division by zero: ", detail::scaled_to_decimal(a.raw(), A::frac_bits),
                                           " / 0 (", A::format.name(), " / ", B::format.name(), ")"));
    }
    const C num = static_cast<C>(detail::int_cast<C>(a.raw()) << shift);
    const C q = static_cast<C>(num / detail::int_cast<C>(b.raw())); // C++ and Boost both truncate toward zero
    return T::from_raw(detail::int_cast<typename T::rep>(q));
}

/// Exact comparison of any two formats.
template <fixed_point A, fixed_point B>
[[nodiscard]] constexpr std::strong_ordering operator<=>(const A& a, const B& b) {
    constexpr int f = detail::cmax(A::frac_bits, B::frac_bits);
    using C = detail::signed_int_t<detail::cmax(A::int_bits, B::int_bits) + f + 3>;
    const C x = detail::aligned<C, A, f>(a);
    const C y = detail::aligned<C, B, f>(b);
    if (x < y) {
        return std::strong_ordering::less;
    }
    if (y < x) {
        return std::strong_ordering::greater;
    }
    return std::strong_ordering::equal;
}

template <fixed_point A, fixed_point B>
[[nodiscard]] constexpr bool operator==(const A& a, const B& b) {
    return (a <=> b) == std::strong_ordering::equal;
}

// ------------------------------------------------------------------ text

/// Exact decimal text of the value ("-3.375").
template <fixed_point T>
[[nodiscard]] std::string to_string(const T& x) {
    return detail::scaled_to_decimal(x.raw(), T::frac_bits);
}

/// Writes the exact decimal value.
template <fixed_point T>
std::ostream& operator<<(std::ostream& os, const T& x) {
    return os << to_string(x);
}

} // namespace frugal

// ------------------------------------------------------------------ numeric_limits

namespace std {
template <bool S, int I, int F, class R, class O>
class numeric_limits<frugal::basic_fixed<S, I, F, R, O>> {
    using T = frugal::basic_fixed<S, I, F, R, O>;

public:
    static constexpr bool is_specialized = true;
    static constexpr bool is_signed = S;
    static constexpr bool is_integer = F == 0;
    static constexpr bool is_exact = true;
    static constexpr bool has_infinity = false;
    static constexpr bool has_quiet_NaN = false;
    static constexpr bool has_signaling_NaN = false;
    static constexpr std::float_denorm_style has_denorm = std::denorm_absent;
    static constexpr bool has_denorm_loss = false;
    static constexpr std::float_round_style round_style =
        std::is_same_v<R, frugal::nearest_even>  ? std::round_to_nearest
        : std::is_same_v<R, frugal::truncate>    ? std::round_toward_neg_infinity
        : std::is_same_v<R, frugal::toward_zero> ? std::round_toward_zero
                                                 : std::round_indeterminate;
    static constexpr bool is_iec559 = false;
    static constexpr bool is_bounded = true;
    static constexpr bool is_modulo = std::is_same_v<O, frugal::wrap>;
    static constexpr int digits = T::width - (S ? 1 : 0);
    static constexpr int digits10 = digits * 30103 / 100000; // floor(digits * log10(2))
    static constexpr int max_digits10 = 0;
    static constexpr int radix = 2;
    static constexpr int min_exponent = 0;
    static constexpr int min_exponent10 = 0;
    static constexpr int max_exponent = 0;
    static constexpr int max_exponent10 = 0;
    static constexpr bool traps = std::is_same_v<O, frugal::trap>;
    static constexpr bool tinyness_before = false;

    /// As for integers: the most negative value (0 for ufixed).
    static constexpr T min() noexcept { return T::lowest(); }
    static constexpr T lowest() noexcept { return T::lowest(); }
    static constexpr T max() noexcept { return T::max(); }
    /// One unit in the last place.
    static constexpr T epsilon() noexcept { return T::epsilon(); }
    /// Largest error of one rounding, in ulp: one ulp (a half for nearest_even
    /// is not representable when F == 0, so the bound is stated in whole ulps).
    static constexpr T round_error() noexcept { return T::epsilon(); }
    static constexpr T infinity() noexcept { return T(); }
    static constexpr T quiet_NaN() noexcept { return T(); }
    static constexpr T signaling_NaN() noexcept { return T(); }
    static constexpr T denorm_min() noexcept { return T::epsilon(); }
};
} // namespace std

#endif
