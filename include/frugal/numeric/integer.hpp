#ifndef FRUGAL_NUMERIC_INTEGER_HPP
#define FRUGAL_NUMERIC_INTEGER_HPP

/// @file
/// Integer plumbing for the fixed-point formats: the narrowest integer that
/// holds a given number of bits (standard integers up to 64 bits,
/// Boost.Multiprecision past that), exact shifts with floor semantics, and an
/// exact decimal rendering of a scaled integer.
///
/// Everything here works on "integer-like" values: the signed and unsigned
/// standard integers and the fixed-width Boost.Multiprecision cpp_int numbers.

#include <bit>
#include <climits>
#include <concepts>
#include <cstdint>
#include <limits>
#include <string>
#include <type_traits>

#include <boost/multiprecision/cpp_int.hpp>

namespace frugal {

/// The widest fixed-point format frugal supports, in bits (IntBits + FracBits).
inline constexpr int max_fixed_width = 256;

namespace detail {

namespace bmp = boost::multiprecision;

/// A Boost.Multiprecision integer of exactly `Bits` bits of magnitude plus a sign.
template <int Bits>
using big_int = bmp::number<bmp::cpp_int_backend<static_cast<unsigned>(Bits), static_cast<unsigned>(Bits),
                                                 bmp::signed_magnitude, bmp::unchecked, void>>;

template <class T>
struct is_big_int : std::false_type {};
template <class Backend, bmp::expression_template_option Et>
struct is_big_int<bmp::number<Backend, Et>> : std::true_type {};

/// Signed integer type that holds every value of `Bits` bits in two's complement.
template <int Bits>
struct signed_int {
    static_assert(Bits >= 1, "frugal: an integer needs at least one bit");
    using type = std::conditional_t<
        Bits <= 8, std::int8_t,
        std::conditional_t<Bits <= 16, std::int16_t,
                           std::conditional_t<Bits <= 32, std::int32_t,
                                              std::conditional_t<Bits <= 64, std::int64_t, big_int<Bits>>>>>;
};
template <int Bits>
using signed_int_t = typename signed_int<Bits>::type;

/// Unsigned integer type for `Bits` bits; past 64 bits the signed Boost type
/// (its magnitude holds every unsigned value of that width).
template <int Bits>
struct unsigned_int {
    static_assert(Bits >= 1, "frugal: an integer needs at least one bit");
    using type = std::conditional_t<
        Bits <= 8, std::uint8_t,
        std::conditional_t<Bits <= 16, std::uint16_t,
                           std::conditional_t<Bits <= 32, std::uint32_t,
                                              std::conditional_t<Bits <= 64, std::uint64_t, big_int<Bits>>>>>;
};
template <int Bits>
using unsigned_int_t = typename unsigned_int<Bits>::type;

/// Storage of a `Bits`-bit two's-complement (Signed) or plain binary value.
template <int Bits, bool Signed>
using storage_t = std::conditional_t<Signed, signed_int_t<Bits>, unsigned_int_t<Bits>>;

/// Number of value bits of an integer-like type (for the Boost types, the magnitude bits).
template <class T>
inline constexpr int digits_v = std::numeric_limits<T>::digits;

/// Converts between integer-like types. The value must fit the destination.
template <class To, class From>
[[nodiscard]] constexpr To int_cast(const From& v) {
    if constexpr (std::is_same_v<To, From>) {
        return v;
    } else if constexpr (is_big_int<From>::value && !is_big_int<To>::value) {
        // Boost numbers convert to standard integers explicitly; go through the
        // 64-bit type of the right signedness.
        if constexpr (std::is_signed_v<To>) {
            return static_cast<To>(static_cast<std::int64_t>(v));
        } else {
            return static_cast<To>(static_cast<std::uint64_t>(v));
        }
    } else {
        return static_cast<To>(v);
    }
}

/// 2^s in an integer-like type; 0 <= s < digits of T.
template <class T>
[[nodiscard]] constexpr T pow2(int s) {
    return static_cast<T>(T(1) << s);
}

/// floor(v / 2^s) for s >= 0, defined for every s (s past the width gives 0 or -1).
template <class T>
[[nodiscard]] constexpr T floor_shift(const T& v, int s) {
    if (s <= 0) {
        return v;
    }
    if (s >= digits_v<T>) {
        return v < T(0) ? T(-1) : T(0);
    }
    if constexpr (is_big_int<T>::value) {
        // Written out rather than relying on the Boost version's choice for
        // right shifts of negative values.
        if (v < T(0)) {
            T m = -v;
            m -= 1;
            m >>= s;
            return T(-m - 1);
        }
        return T(v >> s);
    } else {
        return static_cast<T>(v >> s); // arithmetic shift: floor division since C++20
    }
}

/// v mod 2^s in [0, 2^s) (the bits that floor_shift(v, s) drops), for 0 <= s < digits.
template <class T>
[[nodiscard]] constexpr T low_bits(const T& v, int s) {
    if (s <= 0) {
        return T(0);
    }
    return static_cast<T>(v - static_cast<T>(floor_shift(v, s) << s));
}

/// True when v is odd.
template <class T>
[[nodiscard]] constexpr bool is_odd(const T& v) {
    return low_bits(v, 1) != T(0);
}

/// Number of bits in the magnitude of an unsigned value: 0 for 0, 1 for 1, 2 for 2..3.
[[nodiscard]] constexpr int bit_length(std::uint64_t v) noexcept {
    return 64 - std::countl_zero(v);
}

/// ceil(log2(n)) for n >= 1: the number of extra integer bits an n-term sum needs.
[[nodiscard]] constexpr int log2_ceil(std::uint64_t n) noexcept {
    return n <= 1 ? 0 : bit_length(n - 1);
}

/// Exact decimal text of raw / 2^frac_bits ("-1.375", "12", "0.0625").
template <class T>
[[nodiscard]] std::string scaled_to_decimal(const T& raw, int frac_bits) {
    bmp::cpp_int v;
    if constexpr (is_big_int<T>::value) {
        v = bmp::cpp_int(raw);
    } else if constexpr (std::is_signed_v<T>) {
        v = static_cast<long long>(raw);
    } else {
        v = static_cast<unsigned long long>(raw);
    }
    const bool negative = v < 0;
    if (negative) {
        v = -v;
    }
    // raw / 2^f == raw * 5^f / 10^f: a finite decimal with f fractional digits.
    bmp::cpp_int five = 1;
    for (int i = 0; i < frac_bits; ++i) {
        five *= 5;
    }
    std::string digits = bmp::cpp_int(v * five).str();
    if (static_cast<int>(digits.size()) <= frac_bits) {
        digits.insert(0, static_cast<std::size_t>(frac_bits + 1) - digits.size(), '0');
    }
    std::string whole = digits.substr(0, digits.size() - static_cast<std::size_t>(frac_bits));
    std::string frac = digits.substr(digits.size() - static_cast<std::size_t>(frac_bits));
    while (!frac.empty() && frac.back() == '0') {
        frac.pop_back();
    }
    std::string out = negative ? "-" : "";
    out += whole;
    if (!frac.empty()) {
        out += '.';
        out += frac;
    }
    return out;
}

/// `bits` uniformly random bits (0 < bits <= 64) from any uniform random bit generator.
template <class Rng>
[[nodiscard]] std::uint64_t random_bits(Rng& rng, int bits) {
    using result = typename Rng::result_type;
    static_assert(std::is_unsigned_v<result>, "frugal: the random source must be a uniform random bit generator");
    constexpr auto range = static_cast<unsigned long long>(Rng::max() - Rng::min());
    std::uint64_t out = 0;
    if constexpr (range == std::numeric_limits<std::uint64_t>::max()) {
        out = static_cast<std::uint64_t>(rng() - Rng::min());
    } else if constexpr (range == 0xffffffffULL) {
        const auto hi = static_cast<std::uint64_t>(rng() - Rng::min());
        const auto lo = static_cast<std::uint64_t>(rng() - Rng::min());
        out = (hi << 32) | lo;
    } else {
        static_assert(range == 0xffffffffULL || range == std::numeric_limits<std::uint64_t>::max(),
                      "frugal: the random source must produce 32 or 64 uniform bits per call "
                      "(std::mt19937, std::mt19937_64, frugal::rng)");
    }
    return bits >= 64 ? out : (out >> (64 - bits));
}

} // namespace detail
} // namespace frugal

#endif
