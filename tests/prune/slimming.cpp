// The network-slimming penalty as a gradient rule of the optimizer.

#include <doctest/doctest.h>

#include <vector>

#include <frugal/layers/batchnorm.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/prune/slimming.hpp>

namespace fr = frugal;

TEST_SUITE("prune/slimming") {

TEST_CASE("the slimming rule adds lambda sign gamma to batch-norm scale gradients only") {
    fr::batchnorm bn(3);
    fr::conv2d conv(1, 2, 1, {1, 0, true});
    std::vector<fr::parameter> ps;
    conv.collect_parameters(ps); // weight (2 values), bias (2)
    bn.collect_parameters(ps);   // gamma (3), beta (3)
    REQUIRE(ps.size() == 4);
    REQUIRE(ps[2].role == fr::param_role::bn_scale);
    const std::vector<float> gamma = {0.5f, -0.25f, 0.0f};
    for (std::size_t i = 0; i < 3; ++i) {
        ps[2].value[i] = gamma[i];
        ps[2].grad[i] = 0.1f * static_cast<float>(i + 1); // 0.1 0.2 0.3
        ps[3].value[i] = 0.1f;
        ps[3].grad[i] = 0.1f;
    }
    for (std::size_t i = 0; i < 2; ++i) {
        ps[0].value[i] = -0.5f;
        ps[0].grad[i] = 0.2f;
        ps[1].value[i] = 0.5f;
        ps[1].grad[i] = 0.2f;
    }
    const float lr = 0.1f, wd = 0.01f, lambda = 0.05f;
    fr::optimizer<fr::slimming<>, fr::sgd> opt(ps, fr::sgd{0.0f, wd, false}, fr::slimming<>{lambda});
    fr::context ctx;
    opt.step(ctx, lr);
    // gamma -= lr * (g + lambda sign(gamma) + wd gamma)
    CHECK(bn.gamma()(0) == doctest::Approx(0.5 - 0.1 * (0.1 + 0.05 + 0.005)).epsilon(1e-6));
    CHECK(bn.gamma()(1) == doctest::Approx(-0.25 - 0.1 * (0.2 - 0.05 - 0.0025)).epsilon(1e-6));
    CHECK(bn.gamma()(2) == doctest::Approx(-0.03).epsilon(1e-6)); // sign(0) = 0
    // the shift, the weight and the bias see no penalty
    for (std::size_t i = 0; i < 3; ++i) {
        CHECK(bn.beta()(i) == doctest::Approx(0.1 - 0.1 * (0.1 + 0.001)).epsilon(1e-6));
    }
    for (std::size_t i = 0; i < 2; ++i) {
        CHECK(ps[0].value[i] == doctest::Approx(-0.5 - 0.1 * (0.2 - 0.005)).epsilon(1e-6));
        CHECK(ps[1].value[i] == doctest::Approx(0.5 - 0.1 * (0.2 + 0.005)).epsilon(1e-6));
    }
    // lambda 0 is the exact gradient
    fr::parameter p{"x.gamma", ps[2].value, ps[2].grad, fr::param_role::bn_scale, true};
    std::vector<float> g = {1.0f, 1.0f, 1.0f};
    fr::slimming<>{0.0f}.apply(p, g);
    CHECK(g == std::vector<float>{1.0f, 1.0f, 1.0f});
    fr::slimming<>{0.5f}.apply(p, g); // gamma is now (0.4845, -0.26475, -0.03)
    CHECK(g == std::vector<float>{1.5f, 0.5f, 0.5f});
}

} // TEST_SUITE
