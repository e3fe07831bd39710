// Predictive sign gradient descent (SPEC §1.2(c)): the MSB estimate, the
// threshold and the full products it triggers, the 8/16-bit forward and
// backward, signSGD, the predictive-sign rule and weight averaging.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <string>
#include <vector>

#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/dense.hpp>
#include <frugal/layers/gated.hpp>
#include <frugal/layers/residual.hpp>
#include <frugal/model/sequential.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/numeric/quantizer.hpp>
#include <frugal/optim/psg.hpp>
#include <frugal/optim/sgd.hpp>

#include "layers/gradcheck.hpp"

namespace fr = frugal;
using gradcheck::random_tensor;

namespace {
struct geom {
    std::size_t k, stride, pad;
};

/// Reference weight gradient in double: dW[o,c,ky,kx] = sum dy[n,o,oy,ox] x[n,c,iy,ix].
std::vector<double> wgrad(const fr::tensor4& x, const fr::tensor4& dy, geom g) {
    const auto n = x.shape()[0], c = x.shape()[1], h = x.shape()[2], w = x.shape()[3];
    const auto o = dy.shape()[1], ho = dy.shape()[2], wo = dy.shape()[3];
    std::vector<double> r(o * c * g.k * g.k, 0.0);
    for (std::size_t s = 0; s < n; ++s) {
        for (std::size_t oc = 0; oc < o; ++oc) {
            for (std::size_t ic = 0; ic < c; ++ic) {
                for (std::size_t ky = 0; ky < g.k; ++ky) {
                    for (std::size_t kx = 0; kx < g.k; ++kx) {
                        double acc = 0.0;
                        for (std::size_t oy = 0; oy < ho; ++oy) {
                            for (std::size_t ox = 0; ox < wo; ++ox) {
                                const long iy = static_cast<long>(oy * g.stride + ky) - static_cast<long>(g.pad);
                                const long ix = static_cast<long>(ox * g.stride + kx) - static_cast<long>(g.pad);
                                if (iy >= 0 && ix >= 0 && iy < static_cast<long>(h) && ix < static_cast<long>(w)) {
                                    acc += static_cast<double>(dy(s, oc, oy, ox)) * x(s, ic, iy, ix);
                                }
                            }
                        }
                        r[((oc * c + ic) * g.k + ky) * g.k + kx] += acc;
                    }
                }
            }
        }
    }
    return r;
}

fr::tensor4 fq(const fr::tensor4& t, int bits) {
    fr::tensor4 out;
    (void)fr::fake_quantize_symmetric(t, out, bits);
    return out;
}

float sgn(double v) { return v > 0.0 ? 1.0f : (v < 0.0 ? -1.0f : 0.0f); }

struct case_data {
    fr::psg_conv conv;
    fr::tensor4 x, dy;
};

/// A 3x3 psg convolution with nearest-rounded errors after one forward and backward.
case_data run_case(float beta, std::uint64_t seed = 5, geom gm = {3, 1, 1}) {
    case_data d{fr::psg_conv(3, 4, gm.k, {gm.stride, gm.pad, false}), {}, {}};
    fr::rng g(seed);
    d.conv.reset_parameters(g);
    fr::psg_options o;
    o.beta = beta;
    o.stochastic_errors = false;
    d.conv.set_psg_options(o);
    d.x = random_tensor({2, 3, 6, 6}, g);
    fr::context ctx;
    const fr::tensor4 y = d.conv.forward(ctx, d.x);
    d.dy = random_tensor(fr::shape_of(y), g);
    (void)d.conv.backward(ctx, d.dy);
    return d;
}
} // namespace

TEST_SUITE("e2train") {

TEST_CASE("psg msb estimate matches hand-computed cases") {
    fr::psg_options o;
    o.stochastic_errors = false;
    auto estimate = [&](std::vector<float> xv, std::vector<float> gv) {
        fr::psg_conv c(1, 1, 1, {1, 0, false});
        c.set_psg_options(o);
        c.weight()(0, 0, 0, 0) = 0.5f;
        fr::tensor4 x = fr::tensor4::from_shape({1, 1, 1, xv.size()});
        fr::tensor4 dy = fr::tensor4::from_shape({1, 1, 1, gv.size()});
        std::copy(xv.begin(), xv.end(), x.begin());
        std::copy(gv.begin(), gv.end(), dy.begin());
        fr::context ctx;
        (void)c.forward(ctx, x);
        (void)c.backward(ctx, dy);
        return static_cast<double>(c.msb_estimate()(0, 0, 0, 0));
    };
    // codes exact at 4 bits (max 7 -> scale 1) and 10 bits (max 511 -> scale 1): 7*511 + 3*100 + 1*3
    CHECK(estimate({7.0f, -3.0f, 1.0f, 0.0f}, {511.0f, -100.0f, 3.0f, 0.0f}) == doctest::Approx(3880.0));
    // x = (1, 0.3): 4-bit codes (7, 2) at scale 1/7; dy = (1, -0.5): 10-bit codes (511, -256) at scale 1/511
    // (-255.5 rounds to the even -256): (7*511 - 2*256) / (7*511) = 3065/3577, not the exact 0.85
    CHECK(estimate({1.0f, 0.3f}, {1.0f, -0.5f}) == doctest::Approx(3065.0 / 3577.0).epsilon(1e-6));
}

TEST_CASE("psg estimate equals the 4x10-bit weight gradient") {
    auto check = [](fr::psg_conv& conv, const fr::tensor4& x, const fr::tensor4& dy, geom gm) {
        const auto ref = wgrad(fq(x, 4), fq(dy, 10), gm);
        double worst = 0.0, scale = 0.0;
        for (std::size_t e = 0; e < ref.size(); ++e) {
            worst = std::max(worst, std::fabs(ref[e] - conv.msb_estimate().data()[e]));
            scale = std::max(scale, std::fabs(ref[e]));
        }
        CHECK(scale > 0.0);
        CHECK(worst <= 1e-5 * scale);
    };
    auto d = run_case(0.05f);
    check(d.conv, d.x, d.dy, {3, 1, 1});
    // channel counts that are not multiples of the 4 x 4 kernel blocks, several samples per group, a
    // stride; and one image per group (28 x 28 outputs)
    for (const auto& [n, h, gm] : {std::tuple{5, 9, geom{3, 2, 1}}, std::tuple{2, 28, geom{3, 1, 1}}}) {
        fr::psg_conv conv(3, 5, gm.k, {gm.stride, gm.pad, false});
        fr::rng g(17);
        conv.reset_parameters(g);
        fr::psg_options o;
        o.stochastic_errors = false;
        conv.set_psg_options(o);
        const fr::tensor4 x = random_tensor({static_cast<std::size_t>(n), 3, static_cast<std::size_t>(h),
                                             static_cast<std::size_t>(h)}, g);
        fr::context ctx;
        const fr::tensor4 dy = random_tensor(fr::shape_of(conv.forward(ctx, x)), g);
        (void)conv.backward(ctx, dy);
        check(conv, x, dy, gm);
    }
}

TEST_CASE("psg with beta 0 takes the sign of the low-precision estimate everywhere") {
    auto d = run_case(0.0f);
    CHECK(d.conv.psg_statistics().full == 0);
    CHECK(d.conv.psg_statistics().entries == 4 * 3 * 9);
    for (std::size_t e = 0; e < d.conv.weight_grad().size(); ++e) {
        REQUIRE(d.conv.weight_grad().data()[e] == sgn(d.conv.msb_estimate().data()[e]));
    }
}

TEST_CASE("psg with tau above every estimate takes the sign of the exact 8x16-bit gradient") {
    auto d = run_case(2.0f);
    CHECK(d.conv.psg_statistics().full == d.conv.psg_statistics().entries);
    const auto ref = wgrad(fq(d.x, 8), fq(d.dy, 16), {3, 1, 1});
    std::size_t differs_from_estimate = 0;
    for (std::size_t e = 0; e < ref.size(); ++e) {
        CAPTURE(e);
        CHECK(d.conv.weight_grad().data()[e] == sgn(ref[e]));
        differs_from_estimate += sgn(d.conv.msb_estimate().data()[e]) != sgn(ref[e]) ? 1 : 0;
    }
    CHECK(differs_from_estimate > 0); // the two precisions do disagree somewhere: the test tells them apart
}

TEST_CASE("psg computes the full product exactly where the estimate is below tau") {
    const auto first = run_case(0.05f);
    const auto ref = wgrad(fq(first.x, 8), fq(first.dy, 16), {3, 1, 1});
    double previous = -1.0;
    for (const float beta : {0.0f, 0.02f, 0.05f, 0.1f, 0.3f, 1.0f}) {
        CAPTURE(beta);
        auto d = run_case(beta);
        const auto& est = d.conv.msb_estimate();
        double max_abs = 0.0;
        for (const float v : est) {
            max_abs = std::max(max_abs, std::fabs(static_cast<double>(v)));
        }
        const double tau = beta * max_abs;
        CHECK(d.conv.last_tau() == doctest::Approx(tau));
        std::uint64_t below = 0;
        for (std::size_t e = 0; e < est.size(); ++e) {
            const bool unsure = std::fabs(static_cast<double>(est.data()[e])) < tau * (1 - 1e-6);
            const bool sure = std::fabs(static_cast<double>(est.data()[e])) >= tau * (1 + 1e-6);
            if (unsure) {
                CHECK(d.conv.full_mask()[e] == 1);
                CHECK(d.conv.weight_grad().data()[e] == sgn(ref[e]));
            } else if (sure) {
                CHECK(d.conv.full_mask()[e] == 0);
                CHECK(d.conv.weight_grad().data()[e] == sgn(est.data()[e]));
            }
            below += d.conv.full_mask()[e];
        }
        const auto& st = d.conv.psg_statistics();
        CHECK(st.full == below);
        CHECK(st.full_fraction() >= previous); // a larger beta never computes fewer full products
        previous = st.full_fraction();
    }
    CHECK(previous > 0.95); // beta 1: only the largest entries are sure
}

TEST_CASE("psg forward and input gradient use 8-bit weights and activations and 16-bit errors") {
    // stride 1 (dx as a convolution with the rotated kernel) and strided (im2col) paths
    for (const geom gm : {geom{3, 1, 1}, geom{3, 2, 1}, geom{1, 2, 0}, geom{3, 1, 0}}) {
        CAPTURE(gm.k);
        CAPTURE(gm.stride);
        CAPTURE(gm.pad);
        auto d = run_case(0.05f, 5, gm);
        fr::conv2d ref(3, 4, gm.k, {gm.stride, gm.pad, false});
        fr::tensor4 wq;
        (void)fr::fake_quantize_symmetric<fr::per_channel>(d.conv.weight(), wq, 8);
        ref.weight() = wq;
        fr::context ctx;
        const fr::tensor4 x8 = fq(d.x, 8); // conv2d keeps a pointer to its input until backward
        const fr::tensor4 yr = ref.forward(ctx, x8);
        const fr::tensor4 y = d.conv.forward(ctx, d.x);
        const fr::tensor4 dxr = ref.backward(ctx, fq(d.dy, 16));
        const fr::tensor4 dx = d.conv.backward(ctx, d.dy);
        REQUIRE(y.shape() == yr.shape());
        REQUIRE(dx.shape() == dxr.shape());
        double ey = 0.0, edx = 0.0;
        for (std::size_t i = 0; i < y.size(); ++i) {
            ey = std::max(ey, std::fabs(static_cast<double>(y.data()[i]) - yr.data()[i]));
        }
        for (std::size_t i = 0; i < dx.size(); ++i) {
            edx = std::max(edx, std::fabs(static_cast<double>(dx.data()[i]) - dxr.data()[i]));
        }
        CHECK(ey <= 1e-5);
        CHECK(edx <= 1e-5);
        // and it differs from the float convolution: the quantization is real
        fr::conv2d flt(3, 4, gm.k, {gm.stride, gm.pad, false});
        flt.weight() = d.conv.weight();
        const fr::tensor4 yf = flt.forward(ctx, d.x);
        double diff = 0.0;
        for (std::size_t i = 0; i < y.size(); ++i) {
            diff = std::max(diff, std::fabs(static_cast<double>(y.data()[i]) - yf.data()[i]));
        }
        CHECK(diff > 1e-4);
        // the weight gradient of other geometries: with tau above every estimate, the sign of the 8x16 product
        auto full = run_case(2.0f, 6, gm);
        const auto r = wgrad(fq(full.x, 8), fq(full.dy, 16), gm);
        for (std::size_t e = 0; e < r.size(); ++e) {
            CHECK(full.conv.weight_grad().data()[e] == sgn(r[e]));
        }
    }
}

TEST_CASE("psg meter counts estimate and full products by bit width") {
    fr::psg_conv c(2, 3, 3, {1, 1, false});
    fr::rng g(9);
    c.reset_parameters(g);
    c.set_name("c");
    fr::cost_meter m;
    fr::context ctx;
    ctx.meter = &m;
    const fr::tensor4 x = random_tensor({2, 2, 5, 5}, g);
    const fr::tensor4 y = c.forward(ctx, x);
    (void)c.backward(ctx, y);
    const auto& wg = m.layers().at(0)[fr::phase::weight_gradient].ops;
    const std::uint64_t positions = 2 * 25, entries = 3 * 2 * 9;
    const fr::op_key est{fr::op_kind::mac, fr::op_format::integer(4), fr::op_format::integer(10)};
    const fr::op_key full{fr::op_kind::mac, fr::op_format::integer(8), fr::op_format::integer(16)};
    CHECK(wg.at(est) == positions * entries);
    CHECK(c.psg_statistics().full > 0);
    CHECK(wg.at(full) == positions * c.psg_statistics().full);
    const fr::op_key fw{fr::op_kind::mac, fr::op_format::integer(8), fr::op_format::integer(8)};
    CHECK(m.layers().at(0)[fr::phase::forward].ops.at(fw) == positions * entries);
}

TEST_CASE("signsgd and the predictive sign rule") {
    const fr::signsgd s{0.9f, 0.01f};
    std::vector<float> w{1.0f, -2.0f, 0.5f}, g{-3.0f, 0.25f, 0.0f}, v{0.0f, 1.0f, 0.0f};
    s.update(w, g, v, 0.1f, true);
    CHECK(v[0] == doctest::Approx(-1.0f + 0.01f));
    CHECK(w[0] == doctest::Approx(1.0f + 0.1f * 0.99f));
    CHECK(v[1] == doctest::Approx(0.9f + 1.0f - 0.02f));
    CHECK(w[1] == doctest::Approx(-2.0f - 0.1f * 1.88f));
    CHECK(v[2] == doctest::Approx(0.005f)); // sign(0) = 0: only the decay
    std::vector<float> grad{-0.3f, 0.0f, 7.0f};
    fr::predictive_sign{}.apply(fr::parameter{}, grad);
    CHECK(grad == std::vector<float>{-1.0f, 0.0f, 1.0f});
    // signSGD with exact gradients is a configuration of the plain optimizer
    fr::dense d(2, 1);
    d.weight()(0, 0) = 1.0f;
    d.weight()(0, 1) = 1.0f;
    fr::optimizer<fr::exact_gradient, fr::signsgd> opt(fr::parameters_of(d), fr::signsgd{0.0f, 0.0f});
    std::vector<fr::parameter> ps;
    d.collect_parameters(ps);
    ps[0].grad[0] = 5.0f;
    ps[0].grad[1] = -1e-3f;
    ps[1].grad[0] = 0.0f;
    fr::context ctx;
    opt.step(ctx, fr::signsgd::default_lr);
    CHECK(d.weight()(0, 0) == doctest::Approx(1.0f - 0.03f));
    CHECK(d.weight()(0, 1) == doctest::Approx(1.0f + 0.03f));
}

TEST_CASE("the sign scope leaves batch norm, biases and the gate network exact; lr_scale scales a parameter's step") {
    std::vector<float> g{-0.3f, 0.0f, 7.0f};
    const fr::predictive_sign weights_only{fr::sign_scope::weights};
    for (const fr::param_role role : {fr::param_role::bias, fr::param_role::bn_scale, fr::param_role::bn_shift,
                                      fr::param_role::gate, fr::param_role::other}) {
        std::vector<float> c = g;
        fr::parameter p;
        p.role = role;
        weights_only.apply(p, c);
        CHECK(c == g);
    }
    std::vector<float> c = g;
    weights_only.apply(fr::parameter{}, c); // role weight
    CHECK(c == std::vector<float>{-1.0f, 0.0f, 1.0f});

    // a gated stack hands its gate parameters over with the role gate and its lr scale
    using block = fr::basic_block<>;
    std::vector<block> blocks{block(2, 2, 1), block(2, 2, 1)};
    fr::slu_options so;
    so.gate_lr_scale = 25.0f;
    fr::gated<block> net(blocks, so);
    std::vector<fr::parameter> ps;
    net.collect_parameters(ps);
    std::size_t gates = 0;
    for (const auto& p : ps) {
        const bool gate = p.name.find("gate") != std::string::npos;
        CHECK((p.role == fr::param_role::gate) == gate);
        CHECK(p.lr_scale == (gate ? 25.0f : 1.0f));
        gates += gate ? 1 : 0;
    }
    CHECK(gates == 2 + 5); // unit 1's weight and bias, the LSTM's three and the linear layer's two

    // the optimizer multiplies the learning rate by lr_scale
    fr::dense d(1, 1, false);
    d.weight()(0, 0) = 1.0f;
    std::vector<fr::parameter> dp;
    d.collect_parameters(dp);
    dp[0].lr_scale = 4.0f;
    fr::optimizer<> opt(dp, fr::sgd{0.0f, 0.0f, false});
    dp[0].grad[0] = 0.5f;
    fr::context ctx;
    opt.step(ctx, 0.1f);
    CHECK(d.weight()(0, 0) == doctest::Approx(1.0f - 4.0f * 0.1f * 0.5f));
}

TEST_CASE("weight average accumulates the running mean and swaps it in and out") {
    std::vector<float> a{1.0f, 2.0f}, ga(2), b{10.0f}, gb(1);
    std::vector<fr::parameter> ps{{"a", a, ga}, {"b", b, gb}};
    fr::weight_average swa(ps);
    CHECK_THROWS_AS(swa.swap(), fr::error);
    swa.accumulate();
    a = {3.0f, 4.0f};
    b = {20.0f};
    swa.accumulate();
    a = {5.0f, 0.0f};
    b = {0.0f};
    swa.accumulate();
    swa.swap();
    CHECK(a[0] == doctest::Approx(3.0f));
    CHECK(a[1] == doctest::Approx(2.0f));
    CHECK(b[0] == doctest::Approx(10.0f));
    swa.swap();
    CHECK(a[0] == 5.0f);
    CHECK(b[0] == 0.0f);
}

TEST_CASE("a psg resnet runs a training step and reports its full-product share") {
    auto net = fr::cifar_resnet<fr::basic_block<fr::psg_conv_maker>>(8, 1, 10, 2);
    fr::psg_options o;
    o.beta = 0.1f;
    fr::configure_psg(net, o);
    fr::rng g(3);
    const fr::tensor4 x = random_tensor({4, 1, 12, 12}, g);
    fr::context ctx;
    const fr::tensor4 y = net.forward(ctx, x);
    (void)net.backward(ctx, random_tensor(fr::shape_of(y), g));
    const auto st = fr::psg_statistics(net);
    // 3 blocks: 16*16*9 * 2 + (16*32*9 + 32*32*9 + 16*32) + (32*64*9 + 64*64*9 + 32*64)
    CHECK(st.entries == 2 * 16 * 16 * 9 + 16 * 32 * 9 + 32 * 32 * 9 + 16 * 32 + 32 * 64 * 9 + 64 * 64 * 9 + 32 * 64);
    CHECK(st.full > 0);
    CHECK(st.full < st.entries);
}

} // TEST_SUITE
