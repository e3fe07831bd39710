// Quantizers: hand-made cases, round-trip error bounds, the SIMD kernels
// against the scalar reference, unbiasedness of stochastic rounding.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <limits>
#include <vector>

#include <frugal/numeric/quantizer.hpp>

namespace fr = frugal;

namespace {
frugal::tensor<float, 1> random_tensor(std::size_t n, std::uint64_t seed, float scale = 3.0f) {
    fr::rng g(seed);
    frugal::tensor<float, 1> x = frugal::tensor<float, 1>::from_shape({n});
    for (auto& v : x) {
        v = (g.uniform() * 2.0f - 1.0f) * scale;
    }
    return x;
}
} // namespace

TEST_SUITE("numeric/quantizer") {

TEST_CASE("symmetric per-tensor quantization of a hand-made tensor") {
    const frugal::tensor<float, 1> x = {0.5f, -1.0f, 0.25f, 0.1f, 1.0f / 127.0f * 2.5f};
    const auto q = fr::quantize_symmetric(x, 8);
    REQUIRE(q.scale.size() == 1);
    CHECK(q.scale[0] == doctest::Approx(1.0f / 127.0f));
    CHECK(q.values(0) == 64);   // 63.5 -> ties to even: 64
    CHECK(q.values(1) == -127);
    CHECK(q.values(2) == 32);   // 31.75
    CHECK(q.values(3) == 13);   // 12.7
    CHECK(q.values(4) == 2);    // 2.5 -> even: 2
    CHECK(q.offset[0] == 0.0f);
}

TEST_CASE("per-channel scales on a hand-made tensor") {
    const frugal::tensor<float, 2> w = {{0.5f, -1.0f, 0.25f}, {2.0f, 1.0f, -0.5f}, {0.0f, 0.0f, 0.0f}};
    const auto q = fr::quantize_symmetric<std::int8_t, fr::per_channel>(w, 4); // codes in [-7, 7]
    REQUIRE(q.scale.size() == 3);
    CHECK(q.scale[0] == doctest::Approx(1.0f / 7.0f));
    CHECK(q.scale[1] == doctest::Approx(2.0f / 7.0f));
    CHECK(q.scale[2] == 0.0f); // an all-zero channel: scale 0 and zero codes
    CHECK(q.values(0, 0) == 4); // 3.5 -> even 4
    CHECK(q.values(0, 1) == -7);
    CHECK(q.values(0, 2) == 2); // 1.75
    CHECK(q.values(1, 0) == 7);
    CHECK(q.values(1, 1) == 4); // 3.5 -> 4
    CHECK(q.values(1, 2) == -2); // -1.75
    CHECK(q.values(2, 1) == 0);
    const auto back = fr::dequantize(q);
    CHECK(back(1, 0) == doctest::Approx(2.0f));
    CHECK(back(2, 2) == 0.0f);
}

TEST_CASE("range quantization follows SPEC 0 on a hand-made tensor") {
    const frugal::tensor<float, 1> x = {-1.0f, 0.0f, 0.5f, 2.0f};
    const auto q = fr::quantize_range(x, 2); // 4 levels over [-1, 2]: step 1
    CHECK(q.scale[0] == doctest::Approx(1.0f));
    CHECK(q.offset[0] == -1.0f);
    CHECK(q.values(0) == 0);
    CHECK(q.values(1) == 1);
    CHECK(q.values(2) == 2); // 1.5 -> even 2
    CHECK(q.values(3) == 3);
    const fr::value_range r{0.0f, 1.0f};
    const auto clipped = fr::quantize_range(x, 2, &r); // given range: clamps outside values
    CHECK(clipped.values(0) == 0);
    CHECK(clipped.values(3) == 3);
}

TEST_CASE("round trip error is at most half a step for nearest rounding") {
    for (int bits : {2, 3, 4, 6, 8}) {
        const auto x = random_tensor(10007, 100 + static_cast<std::uint64_t>(bits));
        const auto q = fr::quantize_symmetric(x, bits);
        const auto back = fr::dequantize(q);
        const float bound = q.scale[0] / 2.0f * (1.0f + 1e-5f);
        float worst = 0.0f;
        for (std::size_t i = 0; i < x.size(); ++i) {
            worst = std::max(worst, std::fabs(x(i) - back(i)));
        }
        INFO("bits = " << bits << " worst = " << worst << " bound = " << bound);
        CHECK(worst <= bound);
        frugal::tensor<float, 1> fake;
        fr::fake_quantize_symmetric(x, fake, bits);
        float differ = 0.0f;
        for (std::size_t i = 0; i < x.size(); ++i) {
            differ = std::max(differ, std::fabs(fake(i) - back(i)));
        }
        CHECK(differ <= 1e-6f);
    }
    const auto x = random_tensor(5000, 9);
    frugal::tensor<float, 1> out;
    const fr::value_range r = fr::min_max(x);
    fr::fake_quantize_range(x, out, 6);
    const float step = (r.hi - r.lo) / 63.0f;
    for (std::size_t i = 0; i < x.size(); ++i) {
        REQUIRE(std::fabs(out(i) - x(i)) <= step / 2.0f * (1.0f + 1e-4f) + 1e-6f);
    }
}

TEST_CASE("SIMD kernel equals the scalar reference on odd sizes") {
    for (std::size_t n : {1u, 3u, 17u, 65u, 1000u, 4099u}) {
        const auto x = random_tensor(n, n);
        const auto q = fr::quantize_symmetric(x, 8);
        std::vector<std::int8_t> ref(n);
        const float scale = fr::detail::quantize_symmetric_reference(x.data(), n, 8, ref.data());
        CHECK(q.scale[0] == doctest::Approx(scale).epsilon(1e-6));
        int mismatches = 0;
        for (std::size_t i = 0; i < n; ++i) {
            // x*inv_scale and x/scale may differ in the last float bit: a code
            // may then differ by one exactly at a rounding tie.
            const int d = std::abs(static_cast<int>(q.values(i)) - static_cast<int>(ref[i]));
            mismatches += d > 1 ? 1000 : d;
        }
        INFO("n = " << n);
        CHECK(mismatches <= static_cast<int>(n / 1000) + 1);
    }
}

TEST_CASE("stochastic rounding is unbiased within 3 standard errors over one million samples") {
    // A constant tensor whose value lies 0.3 of a step above a code: the mean
    // code must be 0.3 above it.
    const std::size_t n = 1000000;
    frugal::tensor<float, 1> x = frugal::tensor<float, 1>::from_shape({n});
    x.fill(0.0f);
    x(0) = 1.0f; // max |x| = 1 -> 8-bit step 1/127
    const float value = 10.3f / 127.0f;
    for (std::size_t i = 1; i < n; ++i) {
        x(i) = value;
    }
    fr::rng g(42);
    const auto q = fr::quantize_symmetric<std::int8_t, fr::per_tensor, fr::stochastic>(x, 8, &g);
    double sum = 0.0, sumsq = 0.0;
    for (std::size_t i = 1; i < n; ++i) {
        const double e = static_cast<double>(q.values(i)) * q.scale[0] - static_cast<double>(x(i));
        sum += e;
        sumsq += e * e;
    }
    const double m = static_cast<double>(n - 1);
    const double mean = sum / m;
    const double se = std::sqrt((sumsq / m - mean * mean) / m);
    INFO("mean error " << mean << ", standard error " << se);
    CHECK(std::fabs(mean) <= 3.0 * se);
    CHECK(se > 0.0);
    // every code is one of the two neighbours
    for (std::size_t i = 1; i < n; i += 997) {
        CHECK((q.values(i) == 10 || q.values(i) == 11));
    }
    // and the fake-quantize path agrees in distribution
    frugal::tensor<float, 1> fake;
    fr::fake_quantize_symmetric<fr::per_tensor, fr::stochastic>(x, fake, 8, &g);
    double fsum = 0.0;
    for (std::size_t i = 1; i < n; ++i) {
        fsum += static_cast<double>(fake(i)) - static_cast<double>(x(i));
    }
    CHECK(std::fabs(fsum / m) <= 3.0 * se);
}

TEST_CASE("stochastic rounding leaves values on the grid unchanged, however close u comes to 1") {
    // codes 0..255 on a grid of step 1: t is an integer, so floor(t) + [u < frac(t)] = t for every u.
    // (floor(t + u) in float moved about one code in 10^5 up: t + u rounds to t + 1 for u near 1.)
    const fr::detail::grid g{1.0f, 1.0f, 0.0f, 0.0f, 255.0f};
    std::vector<float> x(1 << 20);
    for (std::size_t i = 0; i < x.size(); ++i) {
        x[i] = static_cast<float>(i % 256);
    }
    std::vector<std::uint8_t> q(x.size());
    fr::rng r(3);
    for (int round = 0; round < 4; ++round) {
        fr::detail::quantize_stochastic(x.data(), x.size(), g, q.data(), r);
        std::size_t moved = 0;
        for (std::size_t i = 0; i < x.size(); ++i) {
            moved += q[i] != static_cast<std::uint8_t>(i % 256) ? 1 : 0;
        }
        CHECK(moved == 0);
    }
}

TEST_CASE("16-bit stochastic codes keep their top half (codes above 32767 are not saturated)") {
    // errors of 9..16 bits are stored as uint16 codes before they are cut into 8-bit limbs
    const fr::detail::grid g{1.0f, 1.0f, 0.0f, 0.0f, 65535.0f};
    std::vector<float> x(70001);
    for (std::size_t i = 0; i < x.size(); ++i) {
        x[i] = static_cast<float>((i * 7919) % 65536);
    }
    x[3] = 65535.0f;
    x[4] = 70000.0f; // above the grid: clamped to the top code
    x[5] = -3.0f;    // below: the bottom code
    std::vector<std::uint16_t> q(x.size());
    fr::rng r(5);
    fr::detail::quantize_stochastic(x.data(), x.size(), g, q.data(), r);
    std::size_t wrong = 0;
    for (std::size_t i = 0; i < x.size(); ++i) {
        const float want = std::clamp(x[i], 0.0f, 65535.0f);
        wrong += q[i] != static_cast<std::uint16_t>(want) ? 1 : 0;
    }
    CHECK(wrong == 0);
    CHECK(q[4] == 65535);
    CHECK(q[5] == 0);
}

TEST_CASE("the paired stochastic rounding quantizes one input at two grids, each unbiased and on its grid") {
    // planes of a constant 0.3 or 0.55 of a step above a code of grid a (step 1/16); grid b per plane
    // (step 1/10 or 1/20, offset -1); an odd plane size (vector body and scalar tail)
    const std::size_t planes = 40, size = 25003;
    std::vector<float> x(planes * size);
    for (std::size_t pl = 0; pl < planes; ++pl) {
        for (std::size_t i = 0; i < size; ++i) {
            x[pl * size + i] = pl % 2 == 0 ? (5.0f + 0.3f) / 16.0f : (7.0f + 0.55f) / 16.0f;
        }
    }
    const fr::detail::grid ga{1.0f / 16.0f, 16.0f, 0.0f, 0.0f, 255.0f};
    const auto gb_of = [](std::size_t pl) { // grid b: step 1/10 (planes < 20) or 1/20, offset -1
        const float step = pl < 20 ? 0.1f : 0.05f;
        return fr::detail::grid{step, 1.0f / step, -1.0f, 0.0f, 255.0f};
    };
    std::vector<std::uint8_t> qa(x.size()), qb(x.size());
    fr::rng r(11);
    fr::detail::quantize_stochastic_planes_pair(
        x.data(), planes, size, [&](std::size_t) { return ga; }, qa.data(), gb_of, qb.data(), r);
    for (std::size_t pl = 0; pl < planes; ++pl) {
        const fr::detail::grid gb = gb_of(pl);
        double ea = 0.0, eb = 0.0, sa = 0.0, sb = 0.0;
        for (std::size_t i = 0; i < size; ++i) {
            const double xv = x[pl * size + i];
            const double da = qa[pl * size + i] * static_cast<double>(ga.scale) + ga.offset - xv;
            const double db = qb[pl * size + i] * static_cast<double>(gb.scale) + gb.offset - xv;
            // each code is one of the two neighbours of its value
            REQUIRE(std::fabs(da) < ga.scale);
            REQUIRE(std::fabs(db) < gb.scale);
            ea += da;
            eb += db;
            sa += da * da;
            sb += db * db;
        }
        const double m = static_cast<double>(size), ma = ea / m, mb = eb / m;
        const double sea = std::sqrt((sa / m - ma * ma) / m), seb = std::sqrt((sb / m - mb * mb) / m);
        INFO("plane " << pl << ": mean errors " << ma << ", " << mb << "; standard errors " << sea << ", " << seb);
        CHECK(sea > 0.0);
        CHECK(std::fabs(ma) <= 4.0 * sea);
        CHECK(std::fabs(mb) <= 4.0 * seb);
    }
    // the two codes of a value come from different draws: both round up for a share frac_a frac_b
    // of the values (independent draws), not min(frac_a, frac_b) (one shared draw)
    double both = 0.0, expected = 0.0;
    for (std::size_t pl = 0; pl < planes; ++pl) {
        const fr::detail::grid gb = gb_of(pl);
        const double ta = (static_cast<double>(x[pl * size]) - ga.offset) / ga.scale;
        const double tb = (static_cast<double>(x[pl * size]) - gb.offset) / gb.scale;
        const double fa = ta - std::floor(ta), fb = tb - std::floor(tb);
        for (std::size_t i = 0; i < size; ++i) {
            const bool up_a = qa[pl * size + i] == static_cast<std::uint8_t>(std::floor(ta) + 1.0);
            const bool up_b = qb[pl * size + i] == static_cast<std::uint8_t>(std::floor(tb) + 1.0);
            both += up_a && up_b ? 1.0 : 0.0;
            expected += fa * fb;
        }
    }
    INFO("both rounded up: " << both << ", independent draws: " << expected);
    CHECK(std::fabs(both - expected) / static_cast<double>(x.size()) < 0.005);
    // values on both grids stay unchanged
    std::vector<float> on(3 * 1001);
    for (std::size_t i = 0; i < on.size(); ++i) {
        on[i] = static_cast<float>(i % 128) * 0.5f;
    }
    const fr::detail::grid g1{0.5f, 2.0f, 0.0f, 0.0f, 255.0f}, g2{0.25f, 4.0f, 0.0f, 0.0f, 255.0f};
    std::vector<std::uint8_t> c1(on.size()), c2(on.size());
    fr::detail::quantize_stochastic_planes_pair(
        on.data(), 3, 1001, [&](std::size_t) { return g1; }, c1.data(), [&](std::size_t) { return g2; }, c2.data(), r);
    for (std::size_t i = 0; i < on.size(); ++i) {
        REQUIRE(c1[i] == static_cast<std::uint8_t>(i % 128));
        REQUIRE(c2[i] == static_cast<std::uint8_t>(2 * (i % 128)));
    }
}

TEST_CASE("bad input gives a clear error") {
    frugal::tensor<float, 1> x = {1.0f, std::numeric_limits<float>::quiet_NaN(), 2.0f};
    CHECK_THROWS_AS((void)fr::quantize_symmetric(x, 8), fr::numeric_error);
    x(1) = std::numeric_limits<float>::infinity();
    CHECK_THROWS_AS((void)fr::quantize_range(x, 8), fr::numeric_error);
    const frugal::tensor<float, 1> ok = {1.0f, 2.0f};
    CHECK_THROWS_AS((void)fr::quantize_symmetric(ok, 9), fr::error);          // 9 bits in int8
    CHECK_THROWS_AS((void)fr::quantize_symmetric(ok, 1), fr::error);
    CHECK_THROWS_AS((void)fr::quantize_symmetric<std::uint8_t>(ok, 8), fr::error); // unsigned codes, signed grid
    CHECK_THROWS_AS((void)(fr::quantize_symmetric<std::int8_t, fr::per_tensor, fr::stochastic>(ok, 8)), fr::error);
    CHECK_NOTHROW((void)fr::quantize_symmetric<std::int16_t>(ok, 16));
}

} // TEST_SUITE
