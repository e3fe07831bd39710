// frugal::fixed: result types, conversions, division, comparison, text,
// limits and wide formats, each against the Boost.Multiprecision oracle or a
// hand-computed value.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <limits>
#include <random>
#include <sstream>
#include <string>
#include <type_traits>

#include <frugal/numeric/fixed.hpp>

#include "numeric/fixed_oracle.hpp"

using frugal::fixed;
using frugal::ufixed;
namespace fr = frugal;

// ------------------------------------------------------------------ compile time

template <class A, class B>
constexpr bool same = std::is_same_v<A, B>;

// storage: the narrowest standard integer, Boost past 64 bits
static_assert(same<fixed<4, 4>::rep, std::int8_t>);
static_assert(same<fixed<5, 4>::rep, std::int16_t>);
static_assert(same<fixed<16, 16>::rep, std::int32_t>);
static_assert(same<fixed<20, 44>::rep, std::int64_t>);
static_assert(same<ufixed<0, 8>::rep, std::uint8_t>);
static_assert(same<ufixed<32, 1>::rep, std::uint64_t>);
static_assert(fr::detail::is_big_int<fixed<40, 40>::rep>::value);

// result types widen exactly
static_assert(same<decltype(fixed<4, 4>() * fixed<2, 6>()), fixed<6, 10>>);
static_assert(same<decltype(fixed<4, 4>() + fixed<2, 6>()), fixed<5, 6>>);
static_assert(same<decltype(fixed<4, 4>() - fixed<2, 6>()), fixed<5, 6>>);
static_assert(same<decltype(ufixed<4, 4>() + ufixed<2, 6>()), ufixed<5, 6>>);
static_assert(same<decltype(ufixed<4, 4>() - ufixed<2, 6>()), fixed<5, 6>>);
static_assert(same<decltype(ufixed<4, 4>() * ufixed<2, 6>()), ufixed<6, 10>>);
static_assert(same<decltype(fixed<4, 4>() * ufixed<2, 6>()), fixed<6, 10>>);
static_assert(same<decltype(fixed<4, 4>() + ufixed<4, 4>()), fixed<6, 4>>); // ufixed<4,4> needs 5 signed bits
static_assert(same<decltype(-fixed<4, 4>()), fixed<5, 4>>);
static_assert(same<decltype(-ufixed<4, 4>()), fixed<5, 4>>);
static_assert(same<decltype(fixed<8, 8>() / fixed<8, 8>()), fixed<17, 16>>);
static_assert(same<decltype(ufixed<8, 8>() / ufixed<8, 8>()), ufixed<16, 16>>);
static_assert(same<decltype(fixed<40, 40>() * fixed<40, 40>()), fixed<80, 80>>);
static_assert(same<fr::accumulator_t<fixed<1, 7>, 9>, fixed<5, 7>>);
static_assert(same<fr::accumulator_t<fixed<1, 7>, 8>, fixed<4, 7>>);
static_assert(fr::detail::log2_ceil(1) == 0 && fr::detail::log2_ceil(2) == 1 && fr::detail::log2_ceil(1025) == 11);
// the left operand's policies carry over
static_assert(same<decltype(fixed<4, 4, fr::truncate, fr::wrap>() * fixed<2, 2>()), fixed<6, 6, fr::truncate, fr::wrap>>);

// constexpr arithmetic and conversions
constexpr fixed<4, 4> c_a = 1.5;
constexpr fixed<4, 4> c_b = -2.25;
static_assert((c_a * c_b).to_double() == -3.375);
static_assert((c_a + c_b).to_double() == -0.75);
static_assert((c_a - c_b).to_double() == 3.75);
static_assert((-c_b).to_double() == 2.25);
static_assert((c_a / c_b).to_double() == -0.6640625); // -170/256: truncated toward zero
static_assert(c_a > c_b && c_b < c_a && c_a != c_b && c_a == fixed<8, 8>(1.5));
static_assert(fixed<4, 4>(100).raw() == 127);                      // saturate
static_assert(fixed<4, 4, fr::truncate, fr::wrap>(8.0).raw() == -128); // wrap: 8 = 128 ulp -> -128
static_assert(fixed<4, 4, fr::truncate, fr::wrap>(1e30).raw() == 0);  // multiple of 2^8 ulp
static_assert(fixed<4, 4>(std::numeric_limits<double>::infinity()).raw() == 127);
static_assert(fixed<8, 8>(fixed<4, 4>(-3.5)).to_double() == -3.5); // widening is exact
static_assert(fixed<4, 4>::max().to_double() == 7.9375 && fixed<4, 4>::lowest().to_double() == -8.0);
static_assert(ufixed<0, 8>::max().to_double() == 255.0 / 256.0);
static_assert(std::numeric_limits<fixed<4, 4>>::digits == 7 && std::numeric_limits<ufixed<0, 8>>::digits == 8);
static_assert(std::numeric_limits<fixed<4, 4, fr::truncate, fr::wrap>>::is_modulo);
static_assert(std::numeric_limits<fixed<4, 4, fr::nearest_even, fr::trap>>::traps);
static_assert(std::numeric_limits<fixed<4, 4>>::round_style == std::round_to_nearest);
static_assert(std::numeric_limits<fixed<4, 4, fr::truncate>>::round_style == std::round_toward_neg_infinity);

// policy concepts
static_assert(fr::rounding_policy<fr::truncate> && fr::rounding_policy<fr::stochastic>);
static_assert(fr::deterministic_rounding<fr::nearest_even> && !fr::deterministic_rounding<fr::stochastic>);
static_assert(fr::overflow_policy<fr::saturate> && fr::overflow_policy<fr::wrap> && fr::overflow_policy<fr::trap>);
static_assert(!fr::rounding_policy<int> && !fr::overflow_policy<fr::truncate>);

namespace {

template <class T>
oracle::big expected_raw(double x) {
    const auto r = oracle::narrow<T>(oracle::of_double(x));
    REQUIRE(r.has_value());
    return *r;
}

template <class T>
oracle::big raw_of(const T& x) {
    return oracle::of(x).n;
}

} // namespace

TEST_SUITE("numeric/fixed") {

TEST_CASE("conversion from double rounds by the policy (hand-computed)") {
    // 2.5 ulp, -2.5 ulp, 3.5 ulp, 2.25 ulp in fixed<8,0>
    CHECK(fixed<8, 0, fr::truncate>(2.5).raw() == 2);
    CHECK(fixed<8, 0, fr::truncate>(-2.5).raw() == -3);
    CHECK(fixed<8, 0, fr::toward_zero>(-2.5).raw() == -2);
    CHECK(fixed<8, 0, fr::toward_zero>(2.75).raw() == 2);
    CHECK(fixed<8, 0, fr::nearest_even>(2.5).raw() == 2);
    CHECK(fixed<8, 0, fr::nearest_even>(3.5).raw() == 4);
    CHECK(fixed<8, 0, fr::nearest_even>(-2.5).raw() == -2);
    CHECK(fixed<8, 0, fr::nearest_even>(-3.5).raw() == -4);
    CHECK(fixed<8, 0, fr::nearest_even>(2.25).raw() == 2);
    CHECK(fixed<4, 4>(0.1).raw() == 2); // 1.6 ulp
    CHECK(ufixed<0, 8>(0.999).raw() == 255);
    CHECK(ufixed<0, 8>(1.5).raw() == 255); // saturates
    CHECK(ufixed<0, 8>(-0.001).raw() == 0); // rounds to 0
}

TEST_CASE("conversion from double equals the oracle for random values and every policy") {
    std::mt19937_64 g(7);
    std::uniform_real_distribution<double> mag(-14.0, 14.0);
    int n = 0;
    for (int i = 0; i < 20000; ++i) {
        const double x = std::ldexp(g() % 2 ? 1.0 : -1.0, 0) * std::exp2(mag(g)) * (1.0 + static_cast<double>(g() % 1000) / 1000.0);
        INFO("x = " << x);
        CHECK(raw_of(fixed<6, 10, fr::truncate>(x)) == expected_raw<fixed<6, 10, fr::truncate>>(x));
        CHECK(raw_of(fixed<6, 10, fr::toward_zero>(x)) == expected_raw<fixed<6, 10, fr::toward_zero>>(x));
        CHECK(raw_of(fixed<6, 10, fr::nearest_even>(x)) == expected_raw<fixed<6, 10, fr::nearest_even>>(x));
        CHECK(raw_of(fixed<6, 10, fr::nearest_even, fr::wrap>(x)) == expected_raw<fixed<6, 10, fr::nearest_even, fr::wrap>>(x));
        CHECK(raw_of(ufixed<3, 9, fr::truncate, fr::wrap>(x)) == expected_raw<ufixed<3, 9, fr::truncate, fr::wrap>>(x));
        CHECK(raw_of(fixed<20, 44>(x)) == expected_raw<fixed<20, 44>>(x));
        CHECK(raw_of(fixed<40, 40, fr::toward_zero, fr::wrap>(x)) == expected_raw<fixed<40, 40, fr::toward_zero, fr::wrap>>(x));
        CHECK(raw_of(fixed<2, 70, fr::truncate, fr::wrap>(x)) == expected_raw<fixed<2, 70, fr::truncate, fr::wrap>>(x));
        ++n;
    }
    CHECK(n == 20000);
}

TEST_CASE("conversion from double: ties / tiny values / far out of range") {
    // exactly representable ties of fixed<2,2> (ulp 0.25)
    CHECK(fixed<2, 2>(0.125).raw() == 0);   // 0.5 ulp -> even 0
    CHECK(fixed<2, 2>(0.375).raw() == 2);   // 1.5 ulp -> even 2
    CHECK(fixed<2, 2>(-0.125).raw() == 0);
    // tiny values far below one ulp
    CHECK(fixed<8, 8, fr::truncate>(-1e-300).raw() == -1);
    CHECK(fixed<8, 8, fr::toward_zero>(-1e-300).raw() == 0);
    CHECK(fixed<8, 8, fr::nearest_even>(-1e-300).raw() == 0);
    CHECK(fixed<8, 8, fr::truncate>(5e-324).raw() == 0); // the smallest subnormal
    CHECK(fixed<8, 8, fr::truncate>(-5e-324).raw() == -1);
    // far out of range: wrap keeps the exact low bits
    CHECK(fixed<8, 0, fr::truncate, fr::wrap>(257.0).raw() == 1);
    CHECK(fixed<8, 0, fr::truncate, fr::wrap>(-129.0).raw() == 127);
    CHECK(fixed<8, 0, fr::truncate, fr::wrap>(1024.75).raw() == 0);
    CHECK(fixed<8, 0, fr::truncate, fr::wrap>(std::ldexp(1.0, 40) + std::ldexp(1.0, 8) * 3 + 5).raw() == 5);
    CHECK(fixed<8, 0>(1e300).raw() == 127);
    CHECK(fixed<8, 0>(-1e300).raw() == -128);
    CHECK_THROWS_AS((void)(fixed<8, 0, fr::truncate, fr::trap>(1e300)), fr::numeric_error);
}

TEST_CASE("NaN and infinities have defined results") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    CHECK_THROWS_AS((void)(fixed<8, 8>(nan)), fr::numeric_error);
    CHECK_THROWS_AS((void)(fixed<8, 8, fr::truncate, fr::wrap>(nan)), fr::numeric_error);
    CHECK_THROWS_AS((void)(ufixed<0, 8>(static_cast<float>(nan))), fr::numeric_error);
    CHECK(fixed<8, 8>(inf).raw() == fixed<8, 8>::raw_max()); // saturate: the ends of the range
    CHECK(fixed<8, 8>(-inf).raw() == fixed<8, 8>::raw_min());
    CHECK_THROWS_AS((void)(fixed<8, 8, fr::truncate, fr::wrap>(inf)), fr::numeric_error); // no wrapped value exists
    CHECK_THROWS_AS((void)(fixed<8, 8, fr::truncate, fr::trap>(-inf)), fr::numeric_error);
    try {
        (void)fixed<8, 8>(nan);
    } catch (const fr::error& e) {
        CHECK(std::string(e.what()).find("NaN") != std::string::npos);
        CHECK(std::string(e.what()).find("fixed<8,8>") != std::string::npos);
    }
}

TEST_CASE("trap names the value and the format") {
    using T = fixed<4, 4, fr::nearest_even, fr::trap>;
    try {
        T t = fixed<8, 4>(9.5);
        (void)t;
        FAIL("no exception");
    } catch (const fr::numeric_error& e) {
        const std::string m = e.what();
        CHECK(m.find("9.5") != std::string::npos);
        CHECK(m.find("fixed<4,4>") != std::string::npos);
        CHECK(m.find("-8 to 7.9375") != std::string::npos);
    }
}

TEST_CASE("conversion to double is exact for narrow formats") {
    for (int r = -128; r <= 127; ++r) {
        const auto x = fixed<3, 5>::from_raw(static_cast<std::int8_t>(r));
        CHECK(x.to_double() == std::ldexp(static_cast<double>(r), -5));
        CHECK(static_cast<float>(x) == std::ldexp(static_cast<float>(r), -5));
        CHECK(fixed<3, 5>(x.to_double()) == x); // round trip
    }
    CHECK(fixed<40, 40>(-12345.0625).to_double() == -12345.0625);
}

TEST_CASE("integers convert exactly or overflow by policy") {
    CHECK(fixed<8, 4>(-100).to_double() == -100.0);
    CHECK(fixed<8, 4>(200).raw() == fixed<8, 4>::raw_max());
    CHECK(fixed<8, 0, fr::truncate, fr::wrap>(200).raw() == -56);
    CHECK(ufixed<8, 0>(-5).raw() == 0);
    CHECK(fixed<64, 0>(std::numeric_limits<std::int64_t>::min()).raw() == std::numeric_limits<std::int64_t>::min());
    CHECK(ufixed<64, 0>(std::numeric_limits<std::uint64_t>::max()).raw() == std::numeric_limits<std::uint64_t>::max());
    CHECK(fixed<70, 2>(std::numeric_limits<std::uint64_t>::max()).to_double() == std::ldexp(1.0, 64));
    CHECK_THROWS_AS((fixed<8, 0, fr::truncate, fr::trap>(128)), fr::numeric_error);
}

TEST_CASE("division truncates toward zero / equals the oracle for every pair") {
    using A = fixed<3, 4>;
    using B = fixed<2, 3>;
    int checked = 0;
    for (int ra = A::raw_min(); ra <= A::raw_max(); ++ra) {
        for (int rb = B::raw_min(); rb <= B::raw_max(); ++rb) {
            if (rb == 0) {
                continue;
            }
            const auto a = A::from_raw(static_cast<A::rep>(ra));
            const auto b = B::from_raw(static_cast<B::rep>(rb));
            const auto q = a / b;
            using Q = decltype(q);
            // exact quotient ra/2^4 / (rb/2^3) scaled by 2^Fq, truncated toward zero
            const oracle::big num = oracle::big(ra) * oracle::power_of_two(Q::frac_bits + 3);
            const oracle::big den = oracle::big(rb) * oracle::power_of_two(4);
            INFO(a << " / " << b);
            CHECK(raw_of(q) == num / den);
            ++checked;
        }
    }
    CHECK(checked == 128 * 31);
    CHECK_THROWS_AS((void)(fixed<4, 4>(1.0) / fixed<4, 4>(0.0)), fr::numeric_error);
    CHECK((ufixed<4, 4>(7.5) / ufixed<2, 2>(0.25)).to_double() == 30.0);
}

TEST_CASE("comparison is exact across formats / every pair") {
    using A = fixed<2, 5>;
    using B = ufixed<3, 3>;
    for (int ra = A::raw_min(); ra <= A::raw_max(); ++ra) {
        for (int rb = B::raw_min(); rb <= B::raw_max(); ++rb) {
            const auto a = A::from_raw(static_cast<A::rep>(ra));
            const auto b = B::from_raw(static_cast<B::rep>(rb));
            const oracle::big x = oracle::big(ra);           // a * 2^5
            const oracle::big y = oracle::big(rb) * 4;       // b * 2^5
            CHECK((a < b) == (x < y));
            CHECK((a == b) == (x == y));
            CHECK((a >= b) == (x >= y));
        }
    }
}

TEST_CASE("compound assignment narrows with the left operand's policies") {
    fixed<4, 4> a = 3.0;
    a *= fixed<4, 4>(3.0);
    CHECK(a.raw() == fixed<4, 4>::raw_max()); // 9 saturates
    fixed<4, 4, fr::truncate, fr::wrap> w = 3.0;
    w *= fixed<4, 4>(3.0);
    CHECK(w.to_double() == 9.0 - 16.0);
    fixed<4, 4> b = 1.0;
    b += fixed<2, 6>(0.015625); // 1/64 rounds to nearest even at 1/16: 1.0
    CHECK(b.to_double() == 1.0);
    b -= fixed<2, 6>(0.046875); // 1 - 3/64 = 0.953125 -> 15.25 ulp -> 15
    CHECK(b.to_double() == 0.9375);
    b /= fixed<4, 4>(0.5);
    CHECK(b.to_double() == 1.875);
}

TEST_CASE("stochastic rounding needs its random source and stays within one ulp") {
    std::mt19937_64 g(3);
    using S = fixed<4, 2, fr::stochastic>;
    for (int i = 0; i < 1000; ++i) {
        const auto x = fixed<4, 8>::from_raw(static_cast<std::int16_t>(static_cast<int>(g() % 4096) - 2048));
        const S y = fr::fixed_cast<S>(x, g);
        const auto down = fixed<4, 2, fr::truncate>(x);
        INFO(x << " -> " << y);
        CHECK((y.raw() == down.raw() || y.raw() == down.raw() + 1 || (down.raw() == S::raw_max() && y == down)));
    }
    // a 32-bit generator works too
    std::mt19937 g32(5);
    CHECK(fr::fixed_cast<S>(0.25, g32).to_double() == 0.25);
}

TEST_CASE("text output is the exact decimal value") {
    std::ostringstream s;
    s << fixed<4, 4>(-1.375) << ' ' << ufixed<0, 8>::epsilon() << ' ' << fixed<8, 0>(-128) << ' ' << fixed<2, 2>(0.0);
    CHECK(s.str() == "-1.375 0.00390625 -128 0");
    CHECK(fr::to_string(fixed<40, 40>::epsilon()) == "0.0000000000009094947017729282379150390625");
}

TEST_CASE("numeric_limits describe the format") {
    using L = std::numeric_limits<fixed<4, 4>>;
    CHECK(L::is_specialized);
    CHECK(L::is_signed);
    CHECK(L::is_exact);
    CHECK(!L::is_integer);
    CHECK(std::numeric_limits<fixed<8, 0>>::is_integer);
    CHECK(L::max().to_double() == 7.9375);
    CHECK(L::lowest().to_double() == -8.0);
    CHECK(L::min() == L::lowest());
    CHECK(L::epsilon().to_double() == 0.0625);
    CHECK(std::numeric_limits<ufixed<4, 4>>::lowest().to_double() == 0.0);
}

TEST_CASE("wide formats: 100000 random pairs against the oracle") {
    std::mt19937_64 g(2024);
    auto random_fixed = [&g]<class T>(std::type_identity<T>) {
        // uniform over the raw range, built from 64-bit draws
        oracle::big r = 0;
        for (int i = 0; i < (T::width + 63) / 64; ++i) {
            r = (r << 64) | oracle::big(g());
        }
        const oracle::big span = oracle::power_of_two(T::width);
        r = r % span;
        if (T::is_signed) {
            r -= oracle::power_of_two(T::width - 1);
        }
        if constexpr (fr::detail::is_big_int<typename T::rep>::value) {
            return T::from_raw(typename T::rep(r));
        } else if constexpr (std::is_signed_v<typename T::rep>) {
            return T::from_raw(static_cast<typename T::rep>(static_cast<long long>(r)));
        } else {
            return T::from_raw(static_cast<typename T::rep>(static_cast<unsigned long long>(r)));
        }
    };
    auto run = [&]<class A>(std::type_identity<A> ta) {
        using A_trunc_wrap = fr::basic_fixed<A::is_signed, A::int_bits, A::frac_bits, fr::truncate, fr::wrap>;
        using A_zero_sat = fr::basic_fixed<A::is_signed, A::int_bits, A::frac_bits, fr::toward_zero, fr::saturate>;
        using A_even_trap = fr::basic_fixed<A::is_signed, A::int_bits, A::frac_bits, fr::nearest_even, fr::trap>;
        int failures = 0;
        for (int i = 0; i < 100000; ++i) {
            const A a = random_fixed(ta);
            const A b = random_fixed(ta);
            const auto va = oracle::of(a);
            const auto vb = oracle::of(b);
            const auto s = a + b;
            const auto d = a - b;
            const auto p = a * b;
            failures += !oracle::equal(oracle::of(s), oracle::add(va, vb));
            failures += !oracle::equal(oracle::of(d), oracle::sub(va, vb));
            failures += !oracle::equal(oracle::of(p), oracle::mul(va, vb));
            // narrowing the product back under three policy pairs
            failures += raw_of(A_trunc_wrap(p)) != *oracle::narrow<A_trunc_wrap>(oracle::of(p));
            failures += raw_of(A_zero_sat(p)) != *oracle::narrow<A_zero_sat>(oracle::of(p));
            failures += raw_of(A_zero_sat(s)) != *oracle::narrow<A_zero_sat>(oracle::of(s));
            const auto e = oracle::narrow<A_even_trap>(oracle::of(p));
            if (e) {
                failures += raw_of(A_even_trap(p)) != *e;
            } else {
                bool threw = false;
                try {
                    (void)A_even_trap(p);
                } catch (const fr::numeric_error&) {
                    threw = true;
                }
                failures += !threw;
            }
        }
        INFO(A::format.name());
        CHECK(failures == 0);
    };
    run(std::type_identity<fixed<20, 44>>{});
    run(std::type_identity<fixed<40, 40>>{});
    run(std::type_identity<ufixed<64, 0>>{});
    run(std::type_identity<fixed<3, 90>>{});
}

} // TEST_SUITE
