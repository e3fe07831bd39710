// ShiftAddNet: the shift and adder kernels against their references (and
// the shift kernel against exact big-integer arithmetic), the layers'
// training rules against hand-computed cases and finite differences, the
// cost meter's counts, and a tiny ShiftAddNet that learns.

#include <doctest/doctest.h>

#include <boost/multiprecision/cpp_int.hpp>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <frugal/cost/meter.hpp>
#include <frugal/layers/adder.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/loss.hpp>
#include <frugal/layers/shift.hpp>
#include <frugal/model/zoo/shiftaddnet.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/tensor/kernels/adder.hpp>
#include <frugal/tensor/kernels/shift.hpp>

#include "layers/gradcheck.hpp"

namespace fr = frugal;
namespace kr = frugal::kernels;
using gradcheck::random_tensor;

namespace {

std::vector<float> random_floats(std::size_t n, fr::rng& g, float scale = 1.0f) {
    std::vector<float> v(n);
    for (auto& x : v) {
        x = (2.0f * g.uniform() - 1.0f) * scale;
    }
    return v;
}

/// Random shift weights: sign in {-1, 0, 1}, exponent in [lo, 0].
void random_codes(std::size_t n, int lo, fr::rng& g, std::vector<std::int8_t>& sign, std::vector<std::int8_t>& exp) {
    sign.resize(n);
    exp.resize(n);
    for (std::size_t i = 0; i < n; ++i) {
        sign[i] = static_cast<std::int8_t>(static_cast<int>(g.below(3)) - 1);
        exp[i] = static_cast<std::int8_t>(lo + static_cast<int>(g.below(static_cast<std::uint64_t>(1 - lo))));
    }
}

/// sum(r * y) in double.
double dot(const fr::tensor4& y, const fr::tensor4& r) {
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) {
        s += static_cast<double>(y.data()[i]) * r.data()[i];
    }
    return s;
}

/// Central difference of f at v[i] with step h.
template <class F>
double central(F&& f, float& v, double h) {
    const float keep = v;
    v = static_cast<float>(keep + h);
    const double up = f();
    v = static_cast<float>(keep - h);
    const double down = f();
    v = keep;
    return (up - down) / (2 * h);
}

bool close(double a, double b, double atol = 2e-3, double rtol = 1e-2) {
    return std::fabs(a - b) <= atol + rtol * std::max(std::fabs(a), std::fabs(b));
}

std::uint64_t count_of(const fr::phase_costs& c, fr::op_kind k, fr::op_format f) {
    const auto it = c.ops.find(fr::op_key{k, f, f});
    return it == c.ops.end() ? 0 : it->second;
}

const fr::layer_costs& costs_of(const fr::cost_meter& m, const std::string& name) {
    for (const auto& l : m.layers()) {
        if (l.name == name) {
            return l;
        }
    }
    FAIL("no layer " << name << " in the meter");
    return m.layers().front();
}

/// A value on the grid (k + 1/2) * step + offset: keeps differences of two
/// such sets away from zero (no kinks of |x - w| within a finite-difference step).
void snap(fr::tensor4& t, float step, float offset) {
    for (auto& v : t) {
        v = (std::floor(v / step) + 0.5f) * step + offset;
    }
}

} // namespace

TEST_SUITE("shiftadd") {

TEST_CASE("shift kernel equals multiplication by the power of two exactly in fixed point") {
    using big = boost::multiprecision::cpp_int;
    fr::rng g(21);
    const int lo = -14;
    for (const std::size_t n : {1, 3, 17, 65}) {
        for (const std::size_t k : {1, 3, 17, 65, 576}) {
            const std::size_t m = 5;
            CAPTURE(n);
            CAPTURE(k);
            std::vector<std::int8_t> sign, exp;
            random_codes(m * k, lo, g, sign, exp);
            // fixed<16, 16> raw values over the whole 32-bit range, extremes included
            std::vector<std::int64_t> x(k * n);
            for (auto& v : x) {
                v = static_cast<std::int64_t>(static_cast<std::int32_t>(g() >> 32));
            }
            x[0] = std::numeric_limits<std::int32_t>::min();
            x[x.size() - 1] = std::numeric_limits<std::int32_t>::max();
            kr::shift_matrix w;
            w.pack(m, k, sign.data(), exp.data(), k);
            std::vector<std::int64_t> y(m * n, -1), yp(m * n, -1), yr(m * n, -1);
            kr::shift_fixed(w, lo, n, x.data(), n, y.data(), n);
            kr::shift_fixed_parallel(w, lo, n, x.data(), n, yp.data(), n);
            kr::shift_fixed_reference(m, n, k, sign.data(), exp.data(), k, lo, x.data(), n, yr.data(), n);
            bool exact = true;
            for (std::size_t i = 0; i < m; ++i) {
                for (std::size_t j = 0; j < n; ++j) {
                    // the oracle: sum of sign * x * 2^e in exact rational arithmetic,
                    // scaled by 2^(16 - lo) to an integer (x is raw * 2^-16)
                    big s = 0;
                    for (std::size_t p = 0; p < k; ++p) {
                        const big term = big(x[p * n + j]) * (big(1) << (exp[i * k + p] - lo));
                        s += big(sign[i * k + p]) * term;
                    }
                    exact = exact && s == big(y[i * n + j]) && s == big(yp[i * n + j]) && s == big(yr[i * n + j]);
                }
            }
            CHECK(exact);
        }
    }
    // the largest sum the layers allow: 576 terms of -2^31 shifted by 14
    std::vector<std::int8_t> sign(576, 1), exp(576, 0);
    std::vector<std::int64_t> x(576, std::numeric_limits<std::int32_t>::min()), y(1);
    kr::shift_matrix w;
    w.pack(1, 576, sign.data(), exp.data(), 576);
    kr::shift_fixed(w, lo, 1, x.data(), 1, y.data(), 1);
    CHECK(big(y[0]) == big(-576) * (big(1) << 45));
}

TEST_CASE("int32 shift kernel: exponent runs, the same exact integers as the int64 kernel") {
    using big = boost::multiprecision::cpp_int;
    fr::rng g(23);
    const int lo = -14;
    for (const std::size_t n : {1, 3, 17, 65, 100}) {
        for (const std::size_t k : {1, 3, 17, 65, 576}) {
            const std::size_t m = 6;
            CAPTURE(n);
            CAPTURE(k);
            std::vector<std::int8_t> sign, exp;
            random_codes(m * k, lo, g, sign, exp);
            kr::shift_matrix w;
            w.pack(m, k, sign.data(), exp.data(), k);
            // the runs hold every entry of their row once, one exponent each, positives first
            std::size_t entries = 0, longest = 0;
            bool runs_ok = w.row_run.size() == m + 1 && w.run_start.size() == w.run_exponent.size() + 1;
            for (std::size_t i = 0; i < m && runs_ok; ++i) {
                std::vector<int> seen(k, 0);
                for (std::uint32_t r = w.row_run[i]; r < w.row_run[i + 1]; ++r) {
                    longest = std::max<std::size_t>(longest, w.run_start[r + 1] - w.run_start[r]);
                    for (std::uint32_t t = w.run_start[r]; t < w.run_start[r + 1]; ++t) {
                        const std::size_t col = w.run_index[t];
                        ++seen[col];
                        ++entries;
                        runs_ok = runs_ok && exp[i * k + col] == w.run_exponent[r] &&
                                  sign[i * k + col] == (t < w.run_mid[r] ? 1 : -1);
                    }
                }
                for (std::size_t col = 0; col < k; ++col) {
                    runs_ok = runs_ok && seen[col] == (sign[i * k + col] != 0 ? 1 : 0);
                }
            }
            CHECK(runs_ok);
            CHECK(entries == w.nonzeros());
            CHECK(longest == w.max_run);
            // inputs as large as the int32 condition allows: max_run * max|x| < 2^31
            const std::int64_t bound = w.max_run == 0 ? 1 : ((std::int64_t{1} << 31) - 1) / static_cast<std::int64_t>(w.max_run);
            std::vector<std::int32_t> x(k * n);
            std::vector<std::int64_t> x64(k * n);
            for (std::size_t i = 0; i < x.size(); ++i) {
                x[i] = static_cast<std::int32_t>(static_cast<std::int64_t>(g.below(static_cast<std::uint64_t>(2 * bound + 1))) - bound);
                x64[i] = x[i];
            }
            x[0] = static_cast<std::int32_t>(bound);
            x64[0] = bound;
            std::vector<std::int64_t> y(m * n, -1), yp(m * n, -1), yr(m * n, -1);
            kr::shift_fixed32(w, lo, n, x.data(), n, y.data(), n);
            kr::shift_fixed32_parallel(w, lo, n, x.data(), n, yp.data(), n);
            kr::shift_fixed_reference(m, n, k, sign.data(), exp.data(), k, lo, x64.data(), n, yr.data(), n);
            bool exact = true;
            for (std::size_t i = 0; i < m; ++i) {
                for (std::size_t j = 0; j < n; ++j) {
                    big s = 0;
                    for (std::size_t p = 0; p < k; ++p) {
                        s += big(sign[i * k + p]) * big(x64[p * n + j]) * (big(1) << (exp[i * k + p] - lo));
                    }
                    exact = exact && s == big(y[i * n + j]) && s == big(yp[i * n + j]) && s == big(yr[i * n + j]);
                }
            }
            CHECK(exact);
        }
    }
    // one run at the edge of the condition: 576 terms of the same sign and exponent
    std::vector<std::int8_t> sign(576, -1), exp(576, -3);
    kr::shift_matrix w;
    w.pack(1, 576, sign.data(), exp.data(), 576);
    REQUIRE(w.max_run == 576);
    const std::int32_t top = static_cast<std::int32_t>(((std::int64_t{1} << 31) - 1) / 576);
    std::vector<std::int32_t> x(576 * 20, top);
    std::vector<std::int64_t> y(20);
    kr::shift_fixed32(w, lo, 20, x.data(), 20, y.data(), 20);
    for (const std::int64_t v : y) {
        CHECK(big(v) == big(-576) * big(top) * (big(1) << 11));
    }
}

TEST_CASE("int32 fixed-point conversion and the float round trip match the int64 conversion") {
    fr::rng g(29);
    std::vector<float> x;
    for (int i = 0; i < 4000; ++i) { // every magnitude from 2^-20 to 2^40, both signs
        x.push_back((g.uniform() < 0.5 ? -1.0f : 1.0f) * std::ldexp(static_cast<float>(g.uniform()) + 0.5f,
                                                                     static_cast<int>(g.below(61)) - 20));
    }
    for (const float v : {0.0f, -0.0f, 1.5f / 65536, 2.5f / 65536, -2.5f / 65536, 32767.99f, 32768.0f, -32768.0f,
                          -32768.5f, 1e30f, -1e30f, std::numeric_limits<float>::infinity(),
                          -std::numeric_limits<float>::infinity(), std::ldexp(1.0f, 15) - std::ldexp(1.0f, -9),
                          -std::ldexp(1.0f, -17)}) {
        x.push_back(v);
    }
    x.push_back(3.0f);
    if (x.size() % 2 == 0) { // an odd length: the conversions' scalar tails too
        x.push_back(-5.0f);
    }
    const std::pair<int, int> formats[] = {{16, 32}, {16, 24}, {10, 26}, {4, 8}, {0, 25}};
    for (const auto& [frac, bits] : formats) {
        CAPTURE(frac);
        CAPTURE(bits);
        std::vector<std::int64_t> r64(x.size());
        std::vector<std::int32_t> r32(x.size());
        std::vector<float> trip(x.size()), fast(x.size());
        REQUIRE(kr::to_fixed_raw(x.data(), x.size(), frac, bits, r64.data()));
        const std::int64_t most = kr::to_fixed_raw32(x.data(), x.size(), frac, bits, r32.data());
        std::int64_t true_most = 0;
        bool same = true;
        for (std::size_t i = 0; i < x.size(); ++i) {
            same = same && r32[i] == r64[i];
            true_most = std::max(true_most, r64[i] < 0 ? -r64[i] : r64[i]);
        }
        CHECK(same);
        CHECK(most >= true_most);
        CHECK(most <= true_most + 1);
        kr::from_fixed_raw(r64.data(), r64.size(), frac, trip.data());
        kr::round_to_fixed(x.data(), x.size(), frac, bits, fast.data());
        bool bits_equal = true;
        for (std::size_t i = 0; i < x.size(); ++i) {
            bits_equal = bits_equal && std::memcmp(&trip[i], &fast[i], sizeof(float)) == 0;
        }
        CHECK(bits_equal);
    }
    // a NaN anywhere: reported by the int32 conversion, 0 in the round trip (as from_fixed_raw(0))
    for (const std::size_t at : {std::size_t{0}, std::size_t{5}, x.size() - 1}) {
        auto bad = x;
        bad[at] = std::numeric_limits<float>::quiet_NaN();
        std::vector<std::int32_t> r32(bad.size());
        CHECK(kr::to_fixed_raw32(bad.data(), bad.size(), 16, 32, r32.data()) == -1);
        std::vector<float> y(bad.size());
        kr::round_to_fixed(bad.data(), bad.size(), 16, 32, y.data());
        CHECK(y[at] == 0.0f);
        CHECK_FALSE(std::signbit(y[at]));
    }
}

TEST_CASE("shift layer fixed-point forward is exact on both integer kernels") {
    using big = boost::multiprecision::cpp_int;
    fr::rng g(37);
    fr::shift_options o;
    o.padding = 1;
    fr::shift_conv2d s(3, 4, 3, o);
    s.reset_parameters(g);
    s.refresh_weights();
    REQUIRE(s.nonzeros() > 0);
    // small inputs take the int32 kernel; inputs near the format's top (raw up
    // to 2^31) would overflow an int32 run sum, so the layer takes the int64 kernel
    for (const float scale : {3.0f, 30000.0f}) {
        CAPTURE(scale);
        const fr::tensor4 x = random_tensor({2, 3, 5, 4}, g, scale);
        fr::context ctx;
        const fr::tensor4 y = s.forward(ctx, x);
        bool exact = true;
        for (std::size_t n = 0; n < 2; ++n) {
            for (std::size_t oc = 0; oc < 4; ++oc) {
                for (std::size_t yy = 0; yy < 5; ++yy) {
                    for (std::size_t xx = 0; xx < 4; ++xx) {
                        big sum = 0; // in units of 2^-30: raw (2^-16) times 2^(e + 14)
                        for (std::size_t c = 0; c < 3; ++c) {
                            for (std::size_t ky = 0; ky < 3; ++ky) {
                                for (std::size_t kx = 0; kx < 3; ++kx) {
                                    const long iy = static_cast<long>(yy + ky) - 1, ix = static_cast<long>(xx + kx) - 1;
                                    const float wv = s.weight()(oc, c, ky, kx);
                                    if (iy < 0 || ix < 0 || iy >= 5 || ix >= 4 || wv == 0.0f) {
                                        continue;
                                    }
                                    const double v = std::nearbyint(static_cast<double>(x(n, c, static_cast<std::size_t>(iy), static_cast<std::size_t>(ix))) * 65536.0);
                                    const big raw(static_cast<std::int64_t>(std::clamp(v, -2147483648.0, 2147483647.0)));
                                    const int e = std::ilogb(wv);
                                    sum += (wv > 0 ? raw : big(-raw)) * (big(1) << (e + 14));
                                }
                            }
                        }
                        const float want = std::ldexp(static_cast<float>(static_cast<std::int64_t>(sum)), -30);
                        exact = exact && y(n, oc, yy, xx) == want;
                    }
                }
            }
        }
        CHECK(exact);
    }
}

TEST_CASE("fixed-point conversion rounds to nearest even and saturates") {
    const float x[] = {1.5f / 65536, 2.5f / 65536, -1.5f / 65536, 40000.0f, -40000.0f, 0.25f};
    std::int64_t raw[6];
    REQUIRE(kr::to_fixed_raw(x, 6, 16, 32, raw));
    CHECK(raw[0] == 2);
    CHECK(raw[1] == 2);
    CHECK(raw[2] == -2);
    CHECK(raw[3] == std::numeric_limits<std::int32_t>::max());
    CHECK(raw[4] == std::numeric_limits<std::int32_t>::min());
    CHECK(raw[5] == 16384);
    const float nan[] = {0.0f, std::numeric_limits<float>::quiet_NaN()};
    CHECK_FALSE(kr::to_fixed_raw(nan, 2, 16, 32, raw));
}

TEST_CASE("shift kernel float path equals ldexp") {
    fr::rng g(4);
    for (const std::size_t n : {1, 3, 17, 65}) {
        for (const std::size_t k : {1, 3, 17, 65}) {
            const std::size_t m = 7;
            std::vector<std::int8_t> sign, exp;
            random_codes(m * k, -14, g, sign, exp);
            const auto x = random_floats(k * n, g, 3.0f);
            kr::shift_matrix w;
            w.pack(m, k, sign.data(), exp.data(), k);
            std::vector<float> y(m * n), yp(m * n), yr(m * n);
            kr::shift_float(w, n, x.data(), n, y.data(), n);
            kr::shift_float_parallel(w, n, x.data(), n, yp.data(), n);
            kr::shift_float_reference(m, n, k, sign.data(), exp.data(), k, x.data(), n, yr.data(), n);
            double worst = 0.0;
            for (std::size_t i = 0; i < m * n; ++i) {
                worst = std::max({worst, std::fabs(double(y[i]) - yr[i]), std::fabs(double(yp[i]) - yr[i])});
            }
            CHECK(worst < 1e-5 * static_cast<double>(k)); // the order of the float sum differs
        }
    }
    // one nonzero weight per row: the product itself, bit for bit
    const std::int8_t sign[] = {0, -1, 0, 0, 0, 1};
    const std::int8_t exp[] = {0, -3, 0, 0, 0, -14};
    const float x[] = {1.1f, 3.3f, -7.7f};
    kr::shift_matrix w;
    w.pack(2, 3, sign, exp, 3);
    CHECK(w.nonzeros() == 2);
    float y[2];
    kr::shift_float(w, 1, x, 1, y, 1);
    CHECK(y[0] == -3.3f / 8.0f);
    CHECK(y[1] == std::ldexp(-7.7f, -14));
}

TEST_CASE("adder kernel equals its reference on odd shapes") {
    fr::rng g(8);
    const std::size_t sizes[] = {1, 3, 17, 65};
    for (const std::size_t m : sizes) {
        for (const std::size_t n : sizes) {
            for (const std::size_t k : sizes) {
                CAPTURE(m);
                CAPTURE(n);
                CAPTURE(k);
                const auto a = random_floats(m * k, g, 2.0f), b = random_floats(k * n, g, 2.0f);
                std::vector<float> c(m * n), cp(m * n), cr(m * n);
                kr::l1_distance(m, n, k, a.data(), k, b.data(), n, c.data(), n);
                kr::l1_distance_parallel(m, n, k, a.data(), k, b.data(), n, cp.data(), n);
                kr::l1_distance_reference(m, n, k, a.data(), k, b.data(), n, cr.data(), n);
                CHECK(c == cr); // same summation order: bit for bit
                CHECK(cp == cr);
                // integer codes (the FIX8 path)
                std::vector<std::int32_t> ia(m * k), ib(k * n), ic(m * n), icr(m * n);
                for (auto& v : ia) v = static_cast<std::int32_t>(g.below(255)) - 127;
                for (auto& v : ib) v = static_cast<std::int32_t>(g.below(255)) - 127;
                kr::l1_distance(m, n, k, ia.data(), k, ib.data(), n, ic.data(), n);
                kr::l1_distance_reference(m, n, k, ia.data(), k, ib.data(), n, icr.data(), n);
                CHECK(ic == icr);
                // the backward products, both rules
                const auto dy = random_floats(m * n, g);
                for (const auto wr : {kr::l1_weight_rule::difference, kr::l1_weight_rule::sign}) {
                    std::vector<float> dw(m * k, 0.5f), dwp(m * k, 0.5f), dwr(m * k, 0.5f);
                    kr::l1_weight_grad(m, k, n, dy.data(), n, a.data(), k, b.data(), n, dw.data(), k, wr);
                    kr::l1_weight_grad_parallel(m, k, n, dy.data(), n, a.data(), k, b.data(), n, dwp.data(), k, wr);
                    kr::l1_weight_grad_reference(m, k, n, dy.data(), n, a.data(), k, b.data(), n, dwr.data(), k, wr);
                    for (std::size_t i = 0; i < m * k; ++i) {
                        CHECK(close(dw[i], dwr[i], 1e-4, 1e-5));
                        CHECK(close(dwp[i], dwr[i], 1e-4, 1e-5));
                    }
                }
                for (const auto ir : {kr::l1_input_rule::hardtanh, kr::l1_input_rule::sign}) {
                    std::vector<float> db(k * n, 9.0f), dbp(k * n, 9.0f), dbr(k * n, 9.0f);
                    kr::l1_input_grad(k, n, m, dy.data(), n, a.data(), k, b.data(), n, db.data(), n, ir);
                    kr::l1_input_grad_parallel(k, n, m, dy.data(), n, a.data(), k, b.data(), n, dbp.data(), n, ir);
                    kr::l1_input_grad_reference(k, n, m, dy.data(), n, a.data(), k, b.data(), n, dbr.data(), n, ir);
                    for (std::size_t i = 0; i < k * n; ++i) {
                        CHECK(close(db[i], dbr[i], 1e-4, 1e-5));
                        CHECK(close(dbp[i], dbr[i], 1e-4, 1e-5));
                    }
                }
            }
        }
    }
}

TEST_CASE("adder backward rule matches a hand-computed example") {
    // y_o = -sum_i |x_i - W_oi|, dW = dy (x - W), dx = sum_o dy_o clamp(W_o - x, -1, 1)
    fr::adder_options o;
    o.eta = 0.0f;
    fr::adder_dense d(3, 2, o);
    const float w[] = {1.0f, 0.25f, -1.0f, 0.0f, 0.0f, 3.0f};
    std::copy(w, w + 6, d.core().weight().begin());
    fr::tensor4 x = fr::tensor4::from_shape({1, 3, 1, 1});
    x(0, 0, 0, 0) = 0.5f;
    x(0, 1, 0, 0) = -2.0f;
    x(0, 2, 0, 0) = 1.0f;
    fr::context ctx;
    const auto& y = d.forward(ctx, x);
    CHECK(y(0, 0, 0, 0) == -4.75f);
    CHECK(y(0, 1, 0, 0) == -4.5f);
    fr::tensor4 dy = fr::tensor4::from_shape({1, 2, 1, 1});
    dy(0, 0, 0, 0) = 1.0f;
    dy(0, 1, 0, 0) = -2.0f;
    const auto dx = d.backward(ctx, dy);
    const float dw_expected[] = {-0.5f, -2.25f, 2.0f, -1.0f, 4.0f, 4.0f};
    for (std::size_t i = 0; i < 6; ++i) {
        CHECK(d.core().weight_grad().data()[i] == dw_expected[i]);
    }
    CHECK(dx(0, 0, 0, 0) == 1.5f);
    CHECK(dx(0, 1, 0, 0) == -1.0f);
    CHECK(dx(0, 2, 0, 0) == -3.0f);

    // the adaptive scaling: the same direction with norm eta * sqrt(6)
    fr::adder_dense s(3, 2);
    std::copy(w, w + 6, s.core().weight().begin());
    (void)s.forward(ctx, x);
    (void)s.backward(ctx, dy);
    const double norm = std::sqrt(42.3125); // ||dW|| of the example
    CHECK(s.core().raw_grad_norm() == doctest::Approx(norm));
    double sq = 0.0;
    for (std::size_t i = 0; i < 6; ++i) {
        const double v = s.core().weight_grad().data()[i];
        sq += v * v;
        CHECK(v == doctest::Approx(dw_expected[i] * 0.2 * std::sqrt(6.0) / norm));
    }
    CHECK(std::sqrt(sq) == doctest::Approx(0.2 * std::sqrt(6.0)));
    // a zero gradient stays zero (no division by zero)
    fr::tensor4 zero = fr::tensor4::from_shape({1, 2, 1, 1});
    zero.fill(0.0f);
    (void)s.backward(ctx, zero);
    CHECK(s.core().weight_grad()(0, 0, 0, 0) == 0.0f);
    CHECK(std::isfinite(s.core().weight_grad()(1, 2, 0, 0)));

    // zero padding is an input value 0: one pixel, a 3x3 window
    fr::adder_conv2d c(1, 1, 3, {1, 1, 0.0f});
    c.weight().fill(0.0f);
    c.weight()(0, 0, 1, 1) = 1.0f;
    c.weight()(0, 0, 0, 0) = 0.5f;
    fr::tensor4 one = fr::tensor4::from_shape({1, 1, 1, 1});
    one(0, 0, 0, 0) = 2.0f;
    CHECK(c.forward(ctx, one)(0, 0, 0, 0) == -1.5f);
}

TEST_CASE("adder full-difference weight gradient equals its definition with padding and strides") {
    // dW[o,c,i,j] = sum_{n,y,x} dY[n,o,y,x] * (X[n,c,y*s+i-pad,x*s+j-pad] - W[o,c,i,j]), X = 0 outside
    fr::rng g(41);
    for (const auto prec : {fr::adder_precision::fp32, fr::adder_precision::fix8}) {
        for (const std::size_t stride : {1, 2}) {
            CAPTURE(static_cast<int>(prec));
            CAPTURE(stride);
            fr::adder_options o;
            o.stride = stride;
            o.padding = 1;
            o.eta = 0.0f;
            o.precision = prec;
            fr::adder_conv2d a(3, 4, 3, o);
            a.reset_parameters(g);
            const fr::tensor4 x = random_tensor({3, 3, 7, 6}, g, 2.0f);
            fr::context ctx;
            const fr::tensor4 y = a.forward(ctx, x);
            const fr::tensor4 dy = random_tensor(fr::shape_of(y), g);
            (void)a.backward(ctx, dy);
            // FIX8 differentiates at the rounded values: recover them from the grid
            const float sc = a.fix8_scale();
            auto q = [&](float v) {
                return prec == fr::adder_precision::fix8 ? std::clamp(std::nearbyint(v / sc), -127.0f, 127.0f) * sc : v;
            };
            const fr::shape4 ys = fr::shape_of(y);
            double worst = 0.0, scale = 0.0;
            for (std::size_t oc = 0; oc < 4; ++oc) {
                for (std::size_t c = 0; c < 3; ++c) {
                    for (std::size_t i = 0; i < 3; ++i) {
                        for (std::size_t j = 0; j < 3; ++j) {
                            const double wv = q(a.weight()(oc, c, i, j));
                            double sum = 0.0;
                            for (std::size_t n = 0; n < ys.n; ++n) {
                                for (std::size_t yy = 0; yy < ys.h; ++yy) {
                                    for (std::size_t xx = 0; xx < ys.w; ++xx) {
                                        const long iy = static_cast<long>(yy * stride + i) - 1;
                                        const long ix = static_cast<long>(xx * stride + j) - 1;
                                        const bool in = iy >= 0 && ix >= 0 && iy < 7 && ix < 6;
                                        const double xv = in ? q(x(n, c, static_cast<std::size_t>(iy), static_cast<std::size_t>(ix))) : 0.0;
                                        sum += dy(n, oc, yy, xx) * (xv - wv);
                                    }
                                }
                            }
                            worst = std::max(worst, std::fabs(sum - a.weight_grad()(oc, c, i, j)));
                            scale = std::max(scale, std::fabs(sum));
                        }
                    }
                }
            }
            INFO("worst " << worst << " of " << scale);
            CHECK(worst <= 1e-5 * std::max(1.0, scale));
        }
    }
}

TEST_CASE("adder layer gradients against finite differences where they are derivatives") {
    fr::rng g(13);
    // kernel 3 with padding and stride 2 exercise im2col and col2im
    for (const auto& [stride, pad] : {std::pair<std::size_t, std::size_t>{1, 1}, {2, 1}, {1, 0}}) {
        CAPTURE(stride);
        CAPTURE(pad);
        fr::tensor4 x = random_tensor({2, 2, 5, 6}, g, 1.5f);
        // 1) the true-derivative rules (sign): every gradient is a derivative;
        //    x and W on offset grids keep |x - w| >= 1/16 away from the kinks
        fr::adder_options o;
        o.stride = stride;
        o.padding = pad;
        o.eta = 0.0f;
        o.weight_rule = kr::l1_weight_rule::sign;
        o.input_rule = kr::l1_input_rule::sign;
        fr::adder_conv2d exact(2, 3, 3, o);
        fr::rng wg(5);
        exact.reset_parameters(wg);
        snap(exact.weight(), 0.25f, 0.0625f);
        snap(x, 0.25f, 0.1875f);
        gradcheck::options go;
        go.h = 1e-2;
        go.samples = 30;
        gradcheck::check(exact, x, go);

        // 2) AdderNet's rules. The input rule HT(W - X) is the derivative where
        //    every |W - X| >= 1: inputs in [-0.5, 0.5], weights beyond +-1.6.
        fr::adder_options a = o;
        a.weight_rule = kr::l1_weight_rule::difference;
        a.input_rule = kr::l1_input_rule::hardtanh;
        fr::adder_conv2d net(2, 3, 3, a);
        net.reset_parameters(wg);
        for (auto& v : net.weight()) {
            v = v < 0 ? v - 1.6f : v + 1.6f;
        }
        fr::tensor4 xs = random_tensor({2, 2, 5, 6}, g, 0.5f);
        fr::context ctx;
        const fr::tensor4 r = random_tensor(fr::shape_of(net.forward(ctx, xs)), g);
        (void)net.forward(ctx, xs);
        const fr::tensor4 dx = net.backward(ctx, r);
        const fr::tensor4 dw = net.weight_grad();
        auto objective = [&] { return dot(net.forward(ctx, xs), r); };
        for (std::size_t i = 0; i < xs.size(); i += 3) {
            const double fd = central(objective, xs.data()[i], 1e-2);
            INFO("dx[" << i << "] " << dx.data()[i] << " vs " << fd);
            CHECK(close(dx.data()[i], fd));
        }
        // 3) the weight rule, sum dY (X - W), is the derivative of the L2
        //    surrogate -1/2 sum (X - W)^2 (zero padding included), not of -|X - W|
        const std::size_t ho = (5 + 2 * pad - 3) / stride + 1, wo = (6 + 2 * pad - 3) / stride + 1;
        auto surrogate = [&] {
            double s = 0.0;
            for (std::size_t n = 0; n < 2; ++n)
                for (std::size_t oc = 0; oc < 3; ++oc)
                    for (std::size_t oy = 0; oy < ho; ++oy)
                        for (std::size_t ox = 0; ox < wo; ++ox) {
                            double v = 0.0;
                            for (std::size_t c = 0; c < 2; ++c)
                                for (std::size_t ky = 0; ky < 3; ++ky)
                                    for (std::size_t kx = 0; kx < 3; ++kx) {
                                        const long iy = static_cast<long>(oy * stride + ky) - static_cast<long>(pad);
                                        const long ix = static_cast<long>(ox * stride + kx) - static_cast<long>(pad);
                                        const bool in = iy >= 0 && ix >= 0 && iy < 5 && ix < 6;
                                        const double xv = in ? xs(n, c, static_cast<std::size_t>(iy),
                                                                  static_cast<std::size_t>(ix))
                                                             : 0.0;
                                        const double d = xv - net.weight()(oc, c, ky, kx);
                                        v -= 0.5 * d * d;
                                    }
                            s += v * r(n, oc, oy, ox);
                        }
            return s;
        };
        for (std::size_t i = 0; i < dw.size(); i += 2) {
            const double fd = central(surrogate, net.weight().data()[i], 1e-2);
            INFO("dW[" << i << "] " << dw.data()[i] << " vs " << fd);
            CHECK(close(dw.data()[i], fd));
        }
    }
}

TEST_CASE("adder FIX8 computes the distance of the 8-bit codes") {
    fr::rng g(17);
    fr::adder_options o;
    o.padding = 1;
    o.precision = fr::adder_precision::fix8;
    fr::adder_conv2d q(2, 3, 3, o);
    o.precision = fr::adder_precision::fp32;
    fr::adder_conv2d f(2, 3, 3, o);
    q.reset_parameters(g);
    fr::tensor4 x = random_tensor({2, 2, 6, 5}, g, 3.0f);
    fr::context ctx;
    (void)q.forward(ctx, x);
    // the grid: a power of two with max(|x|, |w|) / scale in (63.5, 127]
    float range = 0.0f;
    for (const float v : x) range = std::max(range, std::fabs(v));
    for (const float v : q.weight()) range = std::max(range, std::fabs(v));
    const float scale = q.fix8_scale();
    CHECK(std::exp2(std::round(std::log2(scale))) == scale);
    CHECK(range / scale <= 127.0f);
    CHECK(range / scale > 63.5f);
    // oracle: the FP32 layer on the values rounded to that grid
    fr::tensor4 xq = x;
    for (auto& v : xq) v = std::clamp(std::nearbyint(v / scale), -127.0f, 127.0f) * scale;
    for (std::size_t i = 0; i < q.weight().size(); ++i) {
        f.weight().data()[i] = std::clamp(std::nearbyint(q.weight().data()[i] / scale), -127.0f, 127.0f) * scale;
    }
    const fr::tensor4 yq = q.forward(ctx, x);
    const fr::tensor4& yf = f.forward(ctx, xq);
    CHECK(yq == yf); // sums of at most 18 * 254 grid steps: exact in both
    // backward on the quantized values (straight-through)
    const fr::tensor4 r = random_tensor(fr::shape_of(yq), g);
    const fr::tensor4 dxq = q.backward(ctx, r);
    const fr::tensor4 dxf = f.backward(ctx, r);
    for (std::size_t i = 0; i < dxq.size(); ++i) {
        CHECK(close(dxq.data()[i], dxf.data()[i], 1e-5, 1e-5));
    }
}

TEST_CASE("shift layer latent weight gradient path") {
    fr::rng g(31);
    for (const auto arith : {fr::shift_arithmetic::floating, fr::shift_arithmetic::fixed}) {
        CAPTURE(static_cast<int>(arith));
        fr::shift_options o;
        o.stride = 1;
        o.padding = 1;
        o.arithmetic = arith;
        fr::shift_conv2d s(2, 3, 3, o);
        s.reset_parameters(g);
        // integer P (the surrogate below is differentiable there), all three signs
        for (std::size_t i = 0; i < s.shift().size(); ++i) {
            s.shift().data()[i] = -static_cast<float>(g.below(6));
            s.sign().data()[i] = i % 5 == 0 ? 0.1f : (i % 2 == 0 ? 0.9f : -1.2f);
        }
        fr::tensor4 x = random_tensor({2, 2, 5, 6}, g, 2.0f);
        fr::context ctx;
        const fr::tensor4 r = random_tensor(fr::shape_of(s.forward(ctx, x)), g);
        const fr::tensor4 dx = s.backward(ctx, r);
        // the same function as a float convolution with weights sign * 2^P
        fr::conv2d ref(2, 3, 3, {1, 1, false});
        auto set_ref = [&] {
            for (std::size_t i = 0; i < ref.weight().size(); ++i) {
                const float sg = s.sign().data()[i] > 0.5f ? 1.0f : (s.sign().data()[i] < -0.5f ? -1.0f : 0.0f);
                ref.weight().data()[i] = sg * std::exp2(s.shift().data()[i]);
            }
        };
        set_ref();
        for (std::size_t i = 0; i < ref.weight().size(); ++i) {
            REQUIRE(ref.weight().data()[i] == s.weight().data()[i]);
        }
        // forward equals the convolution (fixed point: within the input rounding 2^-17 per term)
        const fr::tensor4 y = s.forward(ctx, x);
        const fr::tensor4& yr = ref.forward(ctx, x);
        for (std::size_t i = 0; i < y.size(); ++i) {
            CHECK(close(y.data()[i], yr.data()[i], 5e-4, 1e-5));
        }
        auto objective = [&] { return dot(ref.forward(ctx, x), r); };
        // dL/dW against a finite difference of the float convolution
        for (std::size_t i = 0; i < ref.weight().size(); i += 2) {
            const double fd = central(objective, ref.weight().data()[i], 1e-2);
            CHECK(close(s.weight_grad()[i], fd));
        }
        for (std::size_t i = 0; i < ref.weight().size(); ++i) {
            const float dw = s.weight_grad()[i];
            // dL/dS is dL/dW, unscaled, whatever the sign
            CHECK(s.sign_grad().data()[i] == dw);
            // dL/dP = dL/dW * sign * 2^P * ln 2: the derivative of sign * 2^P at integer P
            const float sg = ref.weight().data()[i] == 0.0f ? 0.0f : (ref.weight().data()[i] > 0 ? 1.0f : -1.0f);
            float& p = s.shift().data()[i];
            const float keep = p;
            auto surrogate = [&] {
                ref.weight().data()[i] = sg * std::exp2(p);
                return objective();
            };
            const double fd = central(surrogate, p, 1e-2);
            p = keep;
            set_ref();
            INFO("dP[" << i << "] " << s.shift_grad().data()[i] << " vs " << fd);
            CHECK(close(s.shift_grad().data()[i], fd));
            if (sg == 0.0f) {
                CHECK(s.shift_grad().data()[i] == 0.0f);
            }
        }
        // dx against a finite difference of the shift layer itself: it is linear
        // in x, so a large step keeps the fixed-point rounding (2^-17) negligible
        auto own = [&] { return dot(s.forward(ctx, x), r); };
        for (std::size_t i = 0; i < x.size(); i += 3) {
            CHECK(close(dx.data()[i], central(own, x.data()[i], 0.25)));
        }
    }
}

TEST_CASE("shift layer's weight gradient sees the inputs as the fixed-point forward rounded them") {
    // a coarse grid (quarter steps) makes the rounding visible: dW = dY Xr^T with Xr = round(4 x) / 4
    fr::rng g(43);
    fr::shift_options o;
    o.padding = 1;
    o.input_int_bits = 10;
    o.input_frac_bits = 2;
    fr::shift_conv2d s(2, 3, 3, o);
    s.reset_parameters(g);
    const fr::tensor4 x = random_tensor({2, 2, 5, 4}, g, 3.0f);
    fr::tensor4 xr = x;
    for (auto& v : xr) {
        v = std::nearbyint(v * 4.0f) / 4.0f;
    }
    fr::context ctx;
    const fr::tensor4 y = s.forward(ctx, x);
    const fr::tensor4 r = random_tensor(fr::shape_of(y), g);
    const fr::tensor4 dx = s.backward(ctx, r);
    fr::conv2d ref(2, 3, 3, {1, 1, false});
    std::copy(s.weight().begin(), s.weight().end(), ref.weight().begin());
    const fr::tensor4 yr = ref.forward(ctx, xr);
    const fr::tensor4 dxr = ref.backward(ctx, r);
    double fwd = 0.0, dw = 0.0, dwx = 0.0, back = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) {
        fwd = std::max(fwd, std::fabs(double(y.data()[i]) - yr.data()[i]));
    }
    for (std::size_t i = 0; i < ref.weight_grad().size(); ++i) {
        dw = std::max(dw, std::fabs(double(s.weight_grad()[i]) - ref.weight_grad().data()[i]));
        dwx = std::max(dwx, std::fabs(double(ref.weight_grad().data()[i])));
    }
    for (std::size_t i = 0; i < dx.size(); ++i) {
        back = std::max(back, std::fabs(double(dx.data()[i]) - dxr.data()[i]));
    }
    CHECK(fwd < 1e-5);
    CHECK(dw < 1e-5 * std::max(1.0, dwx));
    CHECK(back < 1e-5);
    // and the unrounded inputs would give another gradient (the check above can fail)
    fr::conv2d raw(2, 3, 3, {1, 1, false});
    std::copy(s.weight().begin(), s.weight().end(), raw.weight().begin());
    (void)raw.forward(ctx, x);
    (void)raw.backward(ctx, r);
    double apart = 0.0;
    for (std::size_t i = 0; i < raw.weight_grad().size(); ++i) {
        apart = std::max(apart, std::fabs(double(raw.weight_grad().data()[i]) - ref.weight_grad().data()[i]));
    }
    CHECK(apart > 1e-2);
}

TEST_CASE("shift layer clamps P in place and reads ternary signs") {
    fr::shift_conv2d s(1, 1, 2);
    const float p[] = {0.4f, -20.0f, -3.5f, -2.5f};
    const float sg[] = {0.6f, -0.6f, 0.5f, -0.2f};
    std::copy(p, p + 4, s.shift().begin());
    std::copy(sg, sg + 4, s.sign().begin());
    s.refresh_weights();
    CHECK(s.shift()(0, 0, 0, 0) == 0.0f);    // clamped to 0
    CHECK(s.shift()(0, 0, 0, 1) == -14.0f);  // clamped to -14
    CHECK(s.weight()(0, 0, 0, 0) == 1.0f);
    CHECK(s.weight()(0, 0, 0, 1) == -std::ldexp(1.0f, -14));
    CHECK(s.weight()(0, 0, 1, 0) == 0.0f);   // round(0.5) = 0 (ties to even): a zero weight
    CHECK(s.weight()(0, 0, 1, 1) == 0.0f);
    CHECK(s.nonzeros() == 2);
    fr::shift_options t;
    t.sign = fr::sign_rule::threshold;
    t.threshold = 0.3f;
    fr::shift_conv2d th(1, 1, 2, t);
    std::copy(p, p + 4, th.shift().begin());
    std::copy(sg, sg + 4, th.sign().begin());
    th.refresh_weights();
    CHECK(th.weight()(0, 0, 1, 0) == std::ldexp(1.0f, -4)); // 0.5 > 0.3, round(-3.5) = -4
    CHECK(th.weight()(0, 0, 1, 1) == 0.0f);                 // |-0.2| <= 0.3
    // frozen variants expose fewer parameters and do no weight-gradient work
    fr::shift_options fs;
    fs.freeze_sign = true;
    fr::shift_conv2d a(1, 2, 3, fs);
    std::vector<fr::parameter> ps;
    a.collect_parameters(ps);
    REQUIRE(ps.size() == 1);
    CHECK(ps[0].name.ends_with(".shift"));
    CHECK_FALSE(ps[0].decay);
    fs.freeze_shift = true;
    fr::shift_conv2d b(1, 2, 3, fs);
    fr::rng g(1);
    b.reset_parameters(g);
    ps.clear();
    b.collect_parameters(ps);
    CHECK(ps.empty());
    fr::cost_meter m;
    fr::context ctx;
    ctx.meter = &m;
    const fr::tensor4 x = random_tensor({1, 1, 4, 4}, g);
    const fr::tensor4 y = b.forward(ctx, x);
    (void)b.backward(ctx, y);
    CHECK(costs_of(m, b.name())[fr::phase::weight_gradient].ops.empty());
    CHECK_FALSE(costs_of(m, b.name())[fr::phase::backward_input].ops.empty());
}

TEST_CASE("the meter records shifts and adds at their formats") {
    fr::rng g(2);
    const fr::tensor4 x = random_tensor({2, 2, 4, 5}, g); // 2 images, 20 output pixels each (3x3, pad 1)
    fr::shift_options so;
    so.padding = 1;
    fr::shift_conv2d s(2, 3, 3, so); // 54 weights
    s.set_name("s");
    s.shift().fill(-2.0f);
    s.sign().fill(0.0f);
    for (std::size_t i = 0; i < 10; ++i) {
        s.sign().data()[i * 5] = i % 2 == 0 ? 1.0f : -1.0f; // 10 nonzero weights
    }
    fr::cost_meter m;
    fr::context ctx;
    ctx.meter = &m;
    const fr::tensor4 y = s.forward(ctx, x);
    (void)s.backward(ctx, y);
    const auto& sc = costs_of(m, "s");
    using fr::op_format;
    using fr::op_kind;
    // forward: 2 images x 20 pixels x 10 nonzero weights = 400 shifts of int32 inputs, 400 int64 adds
    CHECK(count_of(sc[fr::phase::forward], op_kind::shift, op_format::integer(32)) == 400);
    CHECK(count_of(sc[fr::phase::forward], op_kind::add, op_format::integer(64)) == 400);
    CHECK(sc[fr::phase::forward].count(op_kind::mac) == 0);
    CHECK(sc[fr::phase::forward].ops.size() == 2);
    // backward to inputs: the float shift path, same counts
    CHECK(count_of(sc[fr::phase::backward_input], op_kind::shift, fr::fp32) == 400);
    CHECK(count_of(sc[fr::phase::backward_input], op_kind::add, fr::fp32) == 400);
    CHECK(sc[fr::phase::backward_input].ops.size() == 2);
    // weight gradient: 2 x 3 x 18 x 20 = 2160 fp32 MACs, 2 x 54 multiplies for dP and dS
    const fr::op_key mac{op_kind::mac, fr::fp32, fr::fp32};
    CHECK(sc[fr::phase::weight_gradient].ops.at(mac) == 2160);
    CHECK(count_of(sc[fr::phase::weight_gradient], op_kind::multiply, fr::fp32) == 108);

    for (const auto prec : {fr::adder_precision::fp32, fr::adder_precision::fix8}) {
        fr::adder_options ao;
        ao.padding = 1;
        ao.precision = prec;
        fr::adder_conv2d a(2, 3, 3, ao);
        a.reset_parameters(g);
        a.set_name("a");
        fr::cost_meter am;
        ctx.meter = &am;
        const fr::tensor4 ya = a.forward(ctx, x);
        (void)a.backward(ctx, ya);
        const auto& ac = costs_of(am, "a");
        // F = 2 images x 3 outputs x 20 pixels x 18 taps = 2160
        if (prec == fr::adder_precision::fp32) {
            CHECK(count_of(ac[fr::phase::forward], op_kind::add, fr::fp32) == 4320);
            CHECK(count_of(ac[fr::phase::forward], op_kind::abs, fr::fp32) == 2160);
            CHECK(ac[fr::phase::forward].ops.size() == 2);
        } else {
            CHECK(count_of(ac[fr::phase::forward], op_kind::add, op_format::integer(8)) == 2160);
            CHECK(count_of(ac[fr::phase::forward], op_kind::abs, op_format::integer(8)) == 2160);
            CHECK(count_of(ac[fr::phase::forward], op_kind::add, op_format::integer(32)) == 2160);
            CHECK(ac[fr::phase::forward].ops.size() == 3);
        }
        CHECK(ac[fr::phase::forward].count(op_kind::mac) == 0);
        CHECK(count_of(ac[fr::phase::weight_gradient], op_kind::add, fr::fp32) == 2160);
        CHECK(ac[fr::phase::weight_gradient].ops.at(mac) == 2160 + 54); // + the norm of the scaling
        CHECK(count_of(ac[fr::phase::weight_gradient], op_kind::multiply, fr::fp32) == 54);
        CHECK(count_of(ac[fr::phase::backward_input], op_kind::add, fr::fp32) == 2160);
        CHECK(count_of(ac[fr::phase::backward_input], op_kind::compare, fr::fp32) == 4320);
        CHECK(ac[fr::phase::backward_input].ops.at(mac) == 2160);
    }
}

TEST_CASE("shift and adder dense layers flatten their input") {
    fr::rng g(6);
    fr::shift_options so;
    so.arithmetic = fr::shift_arithmetic::floating;
    fr::shift_dense s(6, 4, so);
    s.reset_parameters(g);
    fr::adder_options ao;
    ao.eta = 0.0f;
    ao.weight_rule = kr::l1_weight_rule::sign;
    ao.input_rule = kr::l1_input_rule::sign;
    fr::adder_dense a(6, 4, ao);
    a.reset_parameters(g);
    fr::tensor4 x = random_tensor({3, 2, 1, 3}, g);
    fr::context ctx;
    const auto& ys = s.forward(ctx, x);
    REQUIRE(fr::shape_of(ys) == fr::shape4{3, 4, 1, 1});
    for (std::size_t n = 0; n < 3; ++n) {
        for (std::size_t o = 0; o < 4; ++o) {
            double ref = 0.0;
            for (std::size_t i = 0; i < 6; ++i) {
                ref += static_cast<double>(s.core().weight().data()[o * 6 + i]) * x.data()[n * 6 + i];
            }
            CHECK(close(ys(n, o, 0, 0), ref, 1e-6, 1e-6));
        }
    }
    snap(a.core().weight(), 0.25f, 0.0625f);
    snap(x, 0.25f, 0.1875f);
    gradcheck::check(a, x);
    CHECK_THROWS_AS(s.forward(ctx, random_tensor({1, 5, 1, 1}, g)), fr::shape_error);
}

TEST_CASE("shiftaddnet resnet-20 structure and save load") {
    auto net = fr::shiftaddnet_resnet(20, 1, 10, 3);
    std::size_t shifts = 0, adders = 0;
    std::vector<fr::parameter> ps;
    net.collect_parameters(ps);
    for (const auto& p : ps) {
        shifts += p.name.ends_with(".shift.shift") ? 1 : 0;
        adders += p.name.ends_with(".adder.weight") ? 1 : 0;
    }
    CHECK(shifts == 20); // 18 block convolutions and 2 projection shortcuts
    CHECK(adders == 20);
    CHECK(net.output_shape({2, 1, 28, 28}) == fr::shape4{2, 10, 1, 1});
    CHECK(net.get<2>()[3].conv1().shift_layer().in_channels() == 16);
    CHECK(net.get<2>()[3].conv1().adder_layer().in_channels() == 32);
    CHECK(net.get<2>()[3].conv1().shift_layer().options().stride == 2);
    CHECK(net.get<2>()[3].conv1().adder_layer().options().stride == 1);
    auto twin = fr::shiftaddnet_resnet(20, 1, 10, 4);
    fr::archive_writer w;
    net.save(w);
    fr::archive_reader r(w.bytes(), "test archive");
    twin.load(r);
    CHECK(r.remaining() == 0);
    std::vector<fr::parameter> pt;
    twin.collect_parameters(pt);
    REQUIRE(pt.size() == ps.size());
    for (std::size_t i = 0; i < ps.size(); ++i) {
        CHECK(std::equal(ps[i].value.begin(), ps[i].value.end(), pt[i].value.begin()));
    }
    auto adder_only = fr::adder_resnet(20, 1, 10, 3);
    fr::archive_reader r2(w.bytes(), "test archive");
    CHECK_THROWS_AS(adder_only.load(r2), fr::io_error);
}

TEST_CASE("a tiny shiftaddnet and its ablations learn a small batch") {
    fr::rng g(9);
    const fr::tensor4 x = random_tensor({16, 1, 10, 10}, g);
    frugal::tensor<std::int32_t, 1> labels = frugal::tensor<std::int32_t, 1>::from_shape({16});
    for (std::size_t i = 0; i < 16; ++i) {
        labels(i) = static_cast<std::int32_t>(i % 4);
    }
    auto run = [&](auto net, const std::string& what) {
        CAPTURE(what);
        fr::optimizer<> opt(fr::parameters_of(net), fr::sgd{0.9f, 1e-4f, false});
        fr::softmax_cross_entropy loss;
        fr::cost_meter m;
        fr::context ctx;
        ctx.meter = &m;
        float first = 0.0f, last = 0.0f;
        for (int step = 0; step < 12; ++step) {
            const float l = loss.forward(net.forward(ctx, x), labels);
            REQUIRE(std::isfinite(l));
            if (step == 0) {
                first = l;
            }
            last = l;
            (void)net.backward(ctx, loss.backward());
            opt.step(ctx, 0.05f);
        }
        MESSAGE(what << ": loss " << first << " -> " << last);
        CHECK(last < 0.7f * first);
        return m.all_ops();
    };
    const auto ops = run(fr::shiftaddnet_resnet(8, 1, 4, 2, 4), "shiftaddnet");
    // the blocks ran on shifts and adds
    CHECK(ops.at(fr::op_key{fr::op_kind::shift, fr::op_format::integer(32), fr::op_format::integer(32)}) > 0);
    CHECK(ops.at(fr::op_key{fr::op_kind::abs, fr::fp32, fr::fp32}) > 0);
    (void)run(fr::shift_resnet(8, 1, 4, 2, 4), "shift only");
    (void)run(fr::adder_resnet(8, 1, 4, 2, 4), "adder only");
    (void)run(fr::shiftaddnet_resnet<fr::shiftadd_config<fr::adder_precision::fix8>>(8, 1, 4, 2, 4), "fix8");
    (void)run(fr::shiftaddnet_resnet<fr::shiftadd_config<fr::adder_precision::fp32, true>>(8, 1, 4, 2, 4),
              "fixed shift");
}

// ---------------------------------------------------------------- fixed-point backward

namespace {
/// dY with integer values in [-127, 127] and max |dY| = 127: on the 8-bit
/// error grid exactly (scale 1), so stochastic rounding changes nothing.
fr::tensor4 integer_errors(const fr::shape4& s, fr::rng& g) {
    fr::tensor4 t = fr::tensor4::from_shape({s.n, s.c, s.h, s.w});
    for (auto& v : t) {
        v = static_cast<float>(static_cast<int>(g.below(255)) - 127);
    }
    t.data()[t.size() / 2] = -127.0f;
    return t;
}
} // namespace

TEST_CASE("int8 weight-gradient product equals its reference on odd shapes") {
    fr::rng g(91);
    for (const std::size_t out : {1u, 5u, 17u}) {
        for (const std::size_t kk : {1u, 9u, 27u}) {
            for (const std::size_t ld : {1u, 7u, 300u}) {
                for (const std::int32_t z : {0, 128}) {
                    CAPTURE(out);
                    CAPTURE(kk);
                    CAPTURE(ld);
                    CAPTURE(z);
                    std::vector<std::int8_t> et(ld * out);
                    std::vector<std::uint8_t> u(kk * ld);
                    std::vector<std::int32_t> wc(out * kk);
                    for (auto& v : et) v = static_cast<std::int8_t>(static_cast<int>(g.below(255)) - 127);
                    for (auto& v : u) v = static_cast<std::uint8_t>(g.below(256));
                    for (auto& v : wc) v = static_cast<std::int32_t>(g.below(255)) - 127;
                    for (const bool with_w : {false, true}) {
                        std::vector<std::int64_t> a(out * kk, 5), r(out * kk, 5); // accumulates onto 5
                        fr::detail::int8_wgrad_scratch s;
                        fr::detail::int8_weight_grad(out, kk, ld, et.data(), u.data(), z, with_w ? wc.data() : nullptr,
                                                     a.data(), s);
                        fr::detail::int8_weight_grad_reference(out, kk, ld, et.data(), u.data(), z,
                                                               with_w ? wc.data() : nullptr, r.data());
                        CHECK(a == r);
                    }
                }
            }
        }
    }
}

TEST_CASE("adder fixed-point backward equals the float rule on the codes") {
    // oracle: the FP32 layer's backward on the FIX8 forward's quantized x and
    // W, with errors that lie on the 8-bit grid; three grid regimes: scale < 1
    // (HardTanh at 1/scale codes), scale > 1 (every nonzero difference clips:
    // the sign), and a layer wide enough (600 outputs, scale 2^-8) that the
    // input-gradient sums run in row chunks
    struct regime {
        std::size_t in, out, k;
        float xs, ws;
        const char* what;
    };
    for (const regime rg : {regime{2, 3, 3, 2.0f, 1.0f, "scale < 1"}, regime{3, 4, 3, 400.0f, 1.0f, "scale > 1"},
                            regime{2, 600, 1, 0.3f, 0.1f, "row chunks"}}) {
        CAPTURE(rg.what);
        fr::rng g(23);
        fr::adder_options o;
        o.padding = rg.k / 2;
        o.precision = fr::adder_precision::fix8;
        o.error_bits = 8;
        fr::adder_conv2d q(rg.in, rg.out, rg.k, o);
        o.precision = fr::adder_precision::fp32;
        o.error_bits = 0;
        fr::adder_conv2d f(rg.in, rg.out, rg.k, o);
        q.reset_parameters(g);
        for (auto& v : q.weight()) v *= rg.ws;
        const fr::tensor4 x = random_tensor({2, rg.in, 5, 4}, g, rg.xs);
        fr::context ctx;
        const fr::tensor4 yq = q.forward(ctx, x);
        const float scale = q.fix8_scale();
        if (std::string(rg.what) == "scale > 1") {
            REQUIRE(scale > 1.0f);
        } else {
            REQUIRE(scale < 1.0f);
        }
        if (std::string(rg.what) == "row chunks") {
            REQUIRE(scale <= 1.0f / 256.0f); // HardTanh bound 256 codes: 16777215 / (127 * 254) = 520 rows per chunk
        }
        fr::tensor4 xq = x;
        for (auto& v : xq) v = std::clamp(std::nearbyint(v / scale), -127.0f, 127.0f) * scale;
        for (std::size_t i = 0; i < q.weight().size(); ++i) {
            f.weight().data()[i] = std::clamp(std::nearbyint(q.weight().data()[i] / scale), -127.0f, 127.0f) * scale;
        }
        (void)f.forward(ctx, xq);
        const fr::tensor4 r = integer_errors(fr::shape_of(yq), g);
        const fr::tensor4 dxq = q.backward(ctx, r);
        const fr::tensor4 dxf = f.backward(ctx, r);
        REQUIRE(dxq.size() == dxf.size());
        for (std::size_t i = 0; i < dxq.size(); ++i) {
            CHECK(close(dxq.data()[i], dxf.data()[i], 1e-4, 1e-5));
        }
        CHECK(close(q.raw_grad_norm(), f.raw_grad_norm(), 1e-6, 1e-5));
        for (std::size_t i = 0; i < q.weight_grad().size(); ++i) {
            CHECK(close(q.weight_grad().data()[i], f.weight_grad().data()[i], 1e-5, 1e-5));
        }
    }
}

TEST_CASE("adder fixed-point backward is unbiased: stochastic errors average to the float gradient") {
    fr::rng g(5);
    fr::adder_options o;
    o.padding = 1;
    o.precision = fr::adder_precision::fix8;
    o.error_bits = 4; // coarse: 7 levels per sign, so rounding matters
    o.eta = 0.0f;     // raw gradients
    fr::adder_conv2d q(2, 3, 3, o);
    o.error_bits = 0;
    fr::adder_conv2d f(2, 3, 3, o); // FIX8 forward, float backward
    q.reset_parameters(g);
    f.weight() = q.weight();
    const fr::tensor4 x = random_tensor({2, 2, 4, 4}, g, 2.0f);
    const fr::tensor4 r = random_tensor({2, 3, 4, 4}, g, 1.0f);
    fr::context ctx;
    (void)f.forward(ctx, x);
    const fr::tensor4 dxf = f.backward(ctx, r);
    const std::vector<float> dwf(f.weight_grad().begin(), f.weight_grad().end());
    const int draws = 400;
    std::vector<double> dx_sum(dxf.size(), 0.0), dx_sq(dxf.size(), 0.0), dw_sum(dwf.size(), 0.0),
        dw_sq(dwf.size(), 0.0);
    for (int d = 0; d < draws; ++d) {
        ctx.random = fr::rng(1000 + static_cast<std::uint64_t>(d));
        (void)q.forward(ctx, x);
        const fr::tensor4& dx = q.backward(ctx, r);
        for (std::size_t i = 0; i < dx.size(); ++i) {
            dx_sum[i] += dx.data()[i];
            dx_sq[i] += static_cast<double>(dx.data()[i]) * dx.data()[i];
        }
        for (std::size_t i = 0; i < dwf.size(); ++i) {
            const double v = q.weight_grad().data()[i];
            dw_sum[i] += v;
            dw_sq[i] += v * v;
        }
    }
    // every mean within 5 standard errors (+ float slack) of the float gradient
    auto within = [&](const std::vector<double>& sum, const std::vector<double>& sq, const float* want, const char* what) {
        int bad = 0;
        for (std::size_t i = 0; i < sum.size(); ++i) {
            const double mean = sum[i] / draws, var = std::max(0.0, sq[i] / draws - mean * mean);
            const double se = std::sqrt(var / draws);
            if (std::fabs(mean - want[i]) > 5.0 * se + 1e-4 * (1.0 + std::fabs(want[i]))) {
                ++bad;
                INFO(what << "[" << i << "] mean " << mean << " vs " << want[i] << " (se " << se << ")");
                CHECK(false);
            }
        }
        return bad;
    };
    CHECK(within(dx_sum, dx_sq, dxf.data(), "dX") == 0);
    CHECK(within(dw_sum, dw_sq, dwf.data(), "dW") == 0);
}

TEST_CASE("shift fixed-point backward: dX exact shifts, dW the int8 product") {
    for (const bool signed_x : {false, true}) {
        CAPTURE(signed_x);
        fr::rng g(47);
        fr::shift_options o;
        o.padding = 1;
        o.arithmetic = fr::shift_arithmetic::floating;
        o.error_bits = 8;
        fr::shift_conv2d q(3, 4, 3, o);
        o.error_bits = 0;
        fr::shift_conv2d f(3, 4, 3, o);
        q.reset_parameters(g);
        f.shift() = q.shift();
        f.sign() = q.sign();
        // inputs on their own 8-bit grid: unsigned (0..255 steps of max/255) or symmetric (+-127)
        fr::tensor4 x = random_tensor({2, 3, 5, 4}, g, 1.5f);
        float mx = 0.0f;
        for (auto& v : x) {
            if (!signed_x) v = std::fabs(v);
            mx = std::max(mx, std::fabs(v));
        }
        const float sx = mx / (signed_x ? 127.0f : 255.0f);
        for (auto& v : x) v = std::nearbyint(v / sx) * sx;
        fr::context ctx;
        const fr::tensor4 yq = q.forward(ctx, x);
        (void)f.forward(ctx, x);
        const fr::tensor4 r = integer_errors(fr::shape_of(yq), g);
        const fr::tensor4 dxq = q.backward(ctx, r);
        const fr::tensor4 dxf = f.backward(ctx, r);
        for (std::size_t i = 0; i < dxq.size(); ++i) {
            CHECK(dxq.data()[i] == dxf.data()[i]); // integer errors times powers of two: exact in both
        }
        for (std::size_t i = 0; i < q.shift_grad().size(); ++i) {
            CHECK(close(q.shift_grad().data()[i], f.shift_grad().data()[i], 1e-4, 1e-5));
            CHECK(close(q.sign_grad().data()[i], f.sign_grad().data()[i], 1e-4, 1e-5));
        }
    }
}

TEST_CASE("fixed-point backward counts integer operations at their widths") {
    fr::rng g(3);
    fr::context ctx;
    const fr::tensor4 x = random_tensor({2, 2, 5, 4}, g, 1.0f);
    using fr::op_format;
    using fr::op_kind;
    // adder: F = 2 images x 3 outputs x 20 pixels x 18 taps = 2160
    fr::adder_options ao;
    ao.padding = 1;
    ao.precision = fr::adder_precision::fix8;
    ao.error_bits = 8;
    fr::adder_conv2d a(2, 3, 3, ao);
    a.reset_parameters(g);
    a.set_name("a");
    fr::cost_meter am;
    ctx.meter = &am;
    (void)a.backward(ctx, a.forward(ctx, x));
    const auto& ac = costs_of(am, "a");
    const fr::op_key wmac{op_kind::mac, op_format::integer(8), op_format::integer(8)};
    CHECK(ac[fr::phase::weight_gradient].ops.at(wmac) == 2160);
    CHECK(ac[fr::phase::weight_gradient].count(op_kind::add) == 0);
    CHECK(count_of(ac[fr::phase::backward_input], op_kind::add, op_format::integer(8)) == 2160);
    CHECK(count_of(ac[fr::phase::backward_input], op_kind::compare, op_format::integer(9)) == 4320);
    std::uint64_t int_macs = 0, fp_macs = 0;
    for (const auto& [k, n] : ac[fr::phase::backward_input].ops) {
        if (k.kind == op_kind::mac) {
            (k.a.floating ? fp_macs : int_macs) += n;
            CHECK((!k.a.floating && k.a.bits == 8));
        }
    }
    CHECK(int_macs == 2160);
    CHECK(fp_macs == 0);
    // shift: 2 images x 20 pixels x nonzero weights shifts of 8-bit errors; dW 2 x 3 x 18 x 20 int8 MACs
    fr::shift_options so;
    so.padding = 1;
    so.error_bits = 8;
    fr::shift_conv2d s(2, 3, 3, so);
    s.reset_parameters(g);
    s.set_name("s");
    fr::cost_meter sm;
    ctx.meter = &sm;
    (void)s.backward(ctx, s.forward(ctx, x));
    const auto& sc = costs_of(sm, "s");
    const std::uint64_t nz = s.nonzeros();
    CHECK(count_of(sc[fr::phase::backward_input], op_kind::shift, op_format::integer(8)) == 40 * nz);
    CHECK(count_of(sc[fr::phase::backward_input], op_kind::add, op_format::integer(32)) == 40 * nz);
    CHECK(sc[fr::phase::weight_gradient].ops.at(wmac) == 2160);
    CHECK(sc[fr::phase::weight_gradient].count(op_kind::mac) == 2160);
}

TEST_CASE("fixed-point backward rejects bad settings and non-finite errors") {
    fr::adder_options ao;
    ao.error_bits = 9;
    ao.precision = fr::adder_precision::fix8;
    CHECK_THROWS_WITH_AS(fr::adder_conv2d(2, 3, 3, ao), doctest::Contains("error_bits"), fr::error);
    ao.error_bits = 8;
    ao.precision = fr::adder_precision::fp32;
    CHECK_THROWS_WITH_AS(fr::adder_conv2d(2, 3, 3, ao), doctest::Contains("FIX8"), fr::error);
    fr::shift_options so;
    so.error_bits = 1;
    CHECK_THROWS_WITH_AS(fr::shift_conv2d(2, 3, 3, so), doctest::Contains("error_bits"), fr::error);

    fr::rng g(8);
    fr::context ctx;
    ao.precision = fr::adder_precision::fix8;
    fr::adder_conv2d a(2, 3, 3, ao);
    a.reset_parameters(g);
    a.set_name("blk.adder");
    const fr::tensor4 x = random_tensor({1, 2, 4, 4}, g, 1.0f);
    fr::tensor4 dy = a.forward(ctx, x);
    dy.data()[3] = std::numeric_limits<float>::quiet_NaN();
    CHECK_THROWS_WITH_AS(a.backward(ctx, dy), doctest::Contains("blk.adder.backward: the gradient dY"),
                         fr::numeric_error);
    so.error_bits = 8;
    so.padding = 1;
    fr::shift_conv2d s(2, 3, 3, so);
    s.reset_parameters(g);
    s.set_name("blk.shift");
    fr::tensor4 ds = s.forward(ctx, x);
    ds.data()[0] = std::numeric_limits<float>::infinity();
    CHECK_THROWS_WITH_AS(s.backward(ctx, ds), doctest::Contains("blk.shift.backward: the gradient dY"),
                         fr::numeric_error);
}

} // TEST_SUITE
