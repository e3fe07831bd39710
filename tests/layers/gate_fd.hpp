#ifndef FRUGAL_TESTS_LAYERS_GATE_FD_HPP
#define FRUGAL_TESTS_LAYERS_GATE_FD_HPP

// Finite-difference check of a recurrent gate (any basic_recurrent_gate):
// three steps, each from its own unit over its own feature map, objective
// sum_t sum_n sum_k r_tnk p_tnk; every parameter (every third entry) and
// every fifth input value is compared with a central difference.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <string>
#include <vector>

#include <frugal/layers/gate.hpp>

#include "layers/gradcheck.hpp"

namespace gate_fd {

template <class Gate>
void check(Gate& gate, frugal::rng& g) {
    namespace fr = frugal;
    constexpr std::size_t K = Gate::outputs;
    const std::size_t n = 3;
    gate.reset_parameters(g);
    std::vector<typename Gate::unit> units{gate.make_unit(3), gate.make_unit(2), gate.make_unit(4)};
    for (auto& u : units) {
        u.reset_parameters(g);
    }
    std::vector<fr::tensor4> xs{gradcheck::random_tensor({n, 3, 4, 4}, g, 2.0f),
                                gradcheck::random_tensor({n, 2, 3, 3}, g, 2.0f),
                                gradcheck::random_tensor({n, 4, 2, 2}, g, 2.0f)};
    std::vector<std::vector<float>> r(3, std::vector<float>(n * K));
    for (auto& v : r) {
        for (auto& e : v) {
            e = 2.0f * g.uniform() - 1.0f;
        }
    }
    fr::context ctx;
    auto objective = [&]() {
        gate.begin(n);
        double s = 0.0;
        for (std::size_t t = 0; t < 3; ++t) {
            const auto& p = gate.step(ctx, units[t].forward(ctx, xs[t]));
            REQUIRE(p.size() == n * K);
            for (std::size_t i = 0; i < n * K; ++i) {
                s += static_cast<double>(r[t][i]) * p[i];
            }
        }
        return s;
    };
    (void)objective();
    gate.begin_backward();
    std::vector<fr::tensor4> dxs;
    for (auto& x : xs) {
        dxs.push_back(fr::tensor4(fr::tensor4::from_shape(x.shape())));
        dxs.back().fill(0.0f);
    }
    for (std::size_t t = 3; t-- > 0;) {
        const auto& d = gate.step_backward(ctx, r[t].data());
        units[t].backward(ctx, d.data(), &dxs[t]);
    }
    std::vector<fr::parameter> ps;
    gate.collect_parameters(ps);
    for (auto& u : units) {
        u.collect_parameters(ps);
    }
    std::vector<std::vector<float>> grads;
    for (const auto& p : ps) {
        grads.emplace_back(p.grad.begin(), p.grad.end());
    }
    const double h = 1e-2; // a large step keeps float rounding out of the difference
    std::size_t compared = 0, mismatched = 0, nonzero = 0;
    auto compare = [&](const std::string& what, double analytic, double numeric) {
        ++compared;
        if (std::fabs(analytic - numeric) <= 2e-5 + 2e-2 * std::max(std::fabs(analytic), std::fabs(numeric))) {
            return;
        }
        ++mismatched;
        MESSAGE(what << ": analytic " << analytic << ", finite difference " << numeric);
    };
    // the central difference of the objective in one value (restored afterwards)
    const auto central = [&](float& v) {
        const float keep = v;
        v = static_cast<float>(keep + h);
        const double up = objective();
        v = static_cast<float>(keep - h);
        const double down = objective();
        v = keep;
        return (up - down) / (2 * h);
    };
    for (std::size_t pi = 0; pi < ps.size(); ++pi) {
        for (std::size_t i = 0; i < ps[pi].value.size(); i += 3) {
            compare(ps[pi].name + "[" + std::to_string(i) + "]", grads[pi][i], central(ps[pi].value[i]));
            nonzero += grads[pi][i] != 0.0f ? 1 : 0;
        }
    }
    CHECK(nonzero > 20);
    for (std::size_t t = 0; t < 3; ++t) {
        for (std::size_t i = 0; i < xs[t].size(); i += 5) {
            const double numeric = central(xs[t].data()[i]);
            char name[48]; // (a string concatenation here trips a GCC 12 -Wstringop-overflow false positive)
            std::snprintf(name, sizeof name, "x%zu[%zu]", static_cast<std::size_t>(t), i);
            compare(name, dxs[t].data()[i], numeric);
        }
    }
    // a unit with a ReLU (Mid > 0) has kinks a step of h may cross: allow one in a hundred there
    const std::size_t allowed = Gate::mid > 0 ? compared / 100 : 0;
    CHECK(mismatched <= allowed);
    CHECK(compared > 50);
}

} // namespace gate_fd

#endif
