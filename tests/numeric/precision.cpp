// precision triples, sets and visit; block floating point; msb/lsb splits;
// the random source.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <random>
#include <set>
#include <string>

#include <frugal/numeric/block_float.hpp>
#include <frugal/numeric/msb.hpp>
#include <frugal/numeric/precision.hpp>
#include <frugal/numeric/random.hpp>

#include "numeric/fixed_oracle.hpp"

namespace fr = frugal;

using dfq_set = fr::precision_set<fr::precision<4, 3, 6>, fr::precision<4, 4, 6>, fr::precision<4, 4, 8>,
                                  fr::precision<4, 6, 8>, fr::precision<4, 6, 12>>;
static_assert(dfq_set::size == 5);
static_assert(std::is_same_v<dfq_set::at<3>, fr::precision<4, 6, 8>>);
static_assert(dfq_set::index_of<fr::precision<4, 4, 8>> == 2);
static_assert(dfq_set::index_of<fr::precision<8, 8, 8>> == 5);
static_assert(fr::fp32_precision::is_full && !fr::precision<8, 8, 8>::is_full);
static_assert(fr::precision_type<fr::precision<8, 8, 16>> && !fr::precision_type<int>);
static_assert(std::is_same_v<decltype(fr::msb<4>(fr::fixed<1, 7>())), fr::fixed<1, 3, fr::truncate>>);
static_assert(std::is_same_v<decltype(fr::lsb<4>(fr::fixed<1, 7>())), fr::ufixed<-3, 7, fr::truncate>>);

TEST_SUITE("numeric/precision") {

TEST_CASE("visit maps a runtime index onto the compile-time precision") {
    for (std::size_t i = 0; i < dfq_set::size; ++i) {
        const int a = fr::visit<dfq_set>(i, [](auto p) { return decltype(p)::activations; });
        const int g = fr::visit<dfq_set>(i, [](auto p) { return decltype(p)::gradients; });
        const int expected_a[] = {3, 4, 4, 6, 6};
        const int expected_g[] = {6, 6, 8, 8, 12};
        CHECK(a == expected_a[i]);
        CHECK(g == expected_g[i]);
    }
    int calls = 0;
    fr::visit<dfq_set>(4, [&](auto p) { calls += decltype(p)::weights; });
    CHECK(calls == 4);
    CHECK_THROWS_AS(fr::visit<dfq_set>(5, [](auto) { return 0; }), fr::error);
    std::string names;
    fr::for_each_precision<dfq_set>([&](auto p) { names += decltype(p)::name() + " "; });
    CHECK(names == "w4a3g6 w4a4g6 w4a4g8 w4a6g8 w4a6g12 ");
}

TEST_CASE("msb plus lsb is the value for every fixed<1:7> and ufixed<2:6>") {
    for (int r = -128; r <= 127; ++r) {
        const auto x = fr::fixed<1, 7>::from_raw(static_cast<std::int8_t>(r));
        const auto hi = fr::msb<4>(x);
        const auto lo = fr::lsb<4>(x);
        INFO(x);
        CHECK(hi + lo == x);
        CHECK(lo.raw() < 16);
        // msb is the floor to a multiple of 2^-3, computed by the oracle
        const oracle::big expected = oracle::big(r) / 16 - ((r % 16 != 0 && r < 0) ? 1 : 0);
        CHECK(oracle::of(hi).n == expected);
    }
    for (int r = 0; r <= 255; ++r) {
        const auto x = fr::ufixed<2, 6>::from_raw(static_cast<std::uint8_t>(r));
        CHECK(fr::msb<5>(x) + fr::lsb<5>(x) == x);
    }
}

TEST_CASE("split_msb of quantized codes is exact") {
    fr::rng g(5);
    frugal::tensor<float, 2> w = frugal::tensor<float, 2>::from_shape({4, 33});
    for (auto& v : w) {
        v = g.uniform() * 2.0f - 1.0f;
    }
    const auto q = fr::quantize_symmetric<std::int8_t, fr::per_channel>(w, 8);
    const auto s = fr::split_msb(q, 4);
    CHECK(s.msb.bits == 4);
    CHECK(s.lsb.bits == 4);
    const auto whole = fr::dequantize(q);
    const auto hi = fr::dequantize(s.msb);
    const auto lo = fr::dequantize(s.lsb);
    for (std::size_t c = 0; c < 4; ++c) {
        for (std::size_t i = 0; i < 33; ++i) {
            const int code = q.values(c, i);
            CHECK(s.msb.values(c, i) == static_cast<int>(std::floor(code / 16.0)));
            CHECK(s.lsb.values(c, i) == code - 16 * s.msb.values(c, i));
            CHECK(hi(c, i) + lo(c, i) == doctest::Approx(whole(c, i)).epsilon(1e-6));
            CHECK(s.msb.values(c, i) >= -8);
            CHECK(s.msb.values(c, i) <= 7);
        }
    }
    CHECK_THROWS_AS((void)fr::split_msb(q, 8), fr::error);
}

TEST_CASE("block floating point: shared exponent and 8-bit mantissas") {
    const frugal::tensor<float, 1> x = {1.0f, -0.5f, 0.1f, 0.0f, 3.0f, 0.75f, 0.0f, 0.0f, 0.0f};
    const auto b = fr::to_block_float(x, 4);
    REQUIRE(b.exponent.size() == 3);
    CHECK(b.exponent[0] == 1); // max 1.0 = 0.5 * 2^1
    CHECK(b.exponent[1] == 2); // max 3.0 = 0.75 * 2^2
    CHECK(b.exponent[2] == 0); // all zero
    CHECK(b.step(0) == std::ldexp(1.0f, -6));
    CHECK(b.mantissa(0) == 64);  // 1.0 / 2^-6
    CHECK(b.mantissa(1) == -32);
    CHECK(b.mantissa(2) == 6);   // 6.4
    CHECK(b.mantissa(4) == 96);  // 3.0 / 2^-5
    const auto back = fr::from_block_float(b);
    CHECK(back(2) == doctest::Approx(0.09375f));
    CHECK(back(4) == 3.0f);
    frugal::tensor<float, 1> fake;
    fr::fake_block_float(x, fake, 4);
    for (std::size_t i = 0; i < x.size(); ++i) {
        CHECK(fake(i) == back(i));
        CHECK(std::fabs(fake(i) - x(i)) <= b.step(i / 4) / 2.0f);
    }
    CHECK_THROWS_AS((void)fr::to_block_float(x, 0), fr::error);
}

TEST_CASE("rng: reproducible streams and restorable state") {
    fr::rng a(7), b(7), c(7, 1);
    CHECK(a() == b());
    CHECK(a() != c());
    const auto saved = a.state();
    const auto next = a();
    a.set_state(saved);
    CHECK(a() == next);
    // uniform() covers [0, 1) with a mean near 1/2
    fr::rng u(3);
    double sum = 0.0;
    float lo = 1.0f, hi = 0.0f;
    for (int i = 0; i < 100000; ++i) {
        const float v = u.uniform();
        sum += v;
        lo = std::min(lo, v);
        hi = std::max(hi, v);
    }
    CHECK(sum / 100000.0 == doctest::Approx(0.5).epsilon(0.01));
    CHECK(lo >= 0.0f);
    CHECK(hi < 1.0f);
    std::set<std::uint64_t> seen;
    for (int i = 0; i < 1000; ++i) {
        seen.insert(u.below(10));
    }
    CHECK(seen.size() == 10);
    CHECK(*seen.rbegin() == 9);
    static_assert(std::uniform_random_bit_generator<fr::rng>);
}

} // TEST_SUITE
