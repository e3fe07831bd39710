#ifndef FRUGAL_TESTS_LAYERS_GRADCHECK_HPP
#define FRUGAL_TESTS_LAYERS_GRADCHECK_HPP

// Finite-difference gradient checks: the oracle for every backward pass.
//
// For a layer f and a fixed random "upstream" tensor r, the scalar
// L(x, theta) = sum(r * f(x)) has dL/dx = backward(r) and dL/dtheta = the
// parameter gradients. Each is compared with a central difference
// (L(v + h) - L(v - h)) / 2h computed in double from float forward passes,
// at a sample of coordinates.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <string>
#include <vector>

#include <frugal/layers/layer.hpp>
#include <frugal/numeric/random.hpp>

namespace gradcheck {

/// Copies every parameter value of `from` into `to` (two layers of the same structure).
template <class A, class B>
void copy_parameters(A& from, B& to) {
    std::vector<frugal::parameter> pa, pb;
    from.collect_parameters(pa);
    to.collect_parameters(pb);
    REQUIRE(pa.size() == pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i) {
        REQUIRE(pa[i].value.size() == pb[i].value.size());
        std::copy(pa[i].value.begin(), pa[i].value.end(), pb[i].value.begin());
    }
}

/// Checks that two layers of the same structure hold the same parameter gradients, bit for bit.
template <class A, class B>
void check_same_gradients(A& a, B& b) {
    std::vector<frugal::parameter> pa, pb;
    a.collect_parameters(pa);
    b.collect_parameters(pb);
    REQUIRE(pa.size() == pb.size());
    for (std::size_t i = 0; i < pa.size(); ++i) {
        CAPTURE(pa[i].name);
        REQUIRE(pa[i].grad.size() == pb[i].grad.size());
        CHECK(std::equal(pa[i].grad.begin(), pa[i].grad.end(), pb[i].grad.begin()));
    }
}

inline frugal::tensor4 random_tensor(const frugal::shape4& s, frugal::rng& g, float scale = 1.0f, float away = 0.0f) {
    frugal::tensor4 t = frugal::tensor4::from_shape({s.n, s.c, s.h, s.w});
    for (auto& v : t) {
        float x = (g.uniform() * 2.0f - 1.0f) * scale;
        // keep values away from 0 (ReLU kinks) when asked
        if (away > 0.0f && std::fabs(x) < away) {
            x = x < 0 ? x - away : x + away;
        }
        v = x;
    }
    return t;
}

template <class Layer>
double objective(Layer& l, frugal::context& ctx, const frugal::tensor4& x, const frugal::tensor4& r) {
    const frugal::tensor4& y = l.forward(ctx, x);
    double s = 0.0;
    for (std::size_t i = 0; i < y.size(); ++i) {
        s += static_cast<double>(y.data()[i]) * static_cast<double>(r.data()[i]);
    }
    return s;
}

struct options {
    double h = 1e-2;        // step (float forward passes: not too small)
    double rtol = 2e-2;     // relative tolerance
    double atol = 2e-3;     // absolute tolerance
    std::size_t samples = 40;
    bool train = true;
    std::uint64_t seed = 7;
};

/// Checks dx and every parameter gradient of `l` at input x.
template <class Layer>
void check(Layer& l, frugal::tensor4 x, const options& o = {}) {
    frugal::context ctx;
    ctx.mode = o.train ? frugal::run_mode::train : frugal::run_mode::eval;
    frugal::rng g(o.seed);
    l.set_input_grad(true);
    const frugal::tensor4 y0 = l.forward(ctx, x);
    const frugal::tensor4 r = random_tensor(frugal::shape_of(y0), g);
    (void)objective(l, ctx, x, r);
    const frugal::tensor4 dx = l.backward(ctx, r);
    std::vector<frugal::parameter> ps;
    l.collect_parameters(ps);
    std::vector<std::vector<float>> grads;
    for (const auto& p : ps) {
        grads.emplace_back(p.grad.begin(), p.grad.end());
    }
    REQUIRE(dx.size() == x.size());

    // f at the unperturbed point: one-sided differences tell a ReLU or
    // max-pool kink inside [x - h, x + h] (the two slopes disagree) from a
    // wrong gradient; at a kink the analytic value must equal one of them.
    const double mid = objective(l, ctx, x, r);
    auto close = [&](double a, double b) {
        return std::fabs(a - b) <= o.atol + o.rtol * std::max(std::fabs(a), std::fabs(b));
    };
    // Float forward passes carry rounding noise of a few ulp of the objective,
    // which a small step amplifies by 1/h; a large step straddles kinks and
    // adds curvature error. A coordinate passes when the central (or, at a
    // kink, a one-sided) difference agrees at step h or at step 5h: a wrong
    // gradient is wrong at both, while noise and kinks rarely hit both.
    auto compare = [&](const char* what, std::size_t i, double analytic, auto&& at) {
        std::string log;
        bool ok = false;
        for (const double step : {o.h, 5 * o.h}) {
            const double up = at(step), down = at(-step);
            const double numeric = (up - down) / (2 * step);
            const double right = (up - mid) / step, left = (mid - down) / step;
            const bool kink = !close(left, right);
            if (close(analytic, numeric) || (kink && (close(analytic, left) || close(analytic, right)))) {
                ok = true;
                break;
            }
            log += " step " + std::to_string(step) + ": finite difference " + std::to_string(numeric) +
                   " (one-sided " + std::to_string(left) + ", " + std::to_string(right) + ");";
        }
        INFO(std::string(what) << "[" << i << "]: analytic " << analytic << "," << log);
        CHECK(ok);
    };
    // input coordinates
    const std::size_t nx = std::min(o.samples, x.size());
    for (std::size_t s = 0; s < nx; ++s) {
        const std::size_t i = nx == x.size() ? s : static_cast<std::size_t>(g.below(x.size()));
        const float keep = x.data()[i];
        compare("dx", i, dx.data()[i], [&](double step) {
            x.data()[i] = static_cast<float>(keep + step);
            const double f = objective(l, ctx, x, r);
            x.data()[i] = keep;
            return f;
        });
    }
    // parameter coordinates
    for (std::size_t pi = 0; pi < ps.size(); ++pi) {
        auto& p = ps[pi];
        const std::size_t np = std::min(o.samples, p.value.size());
        for (std::size_t s = 0; s < np; ++s) {
            const std::size_t i = np == p.value.size() ? s : static_cast<std::size_t>(g.below(p.value.size()));
            const float keep = p.value[i];
            compare(p.name.c_str(), i, grads[pi][i], [&](double step) {
                p.value[i] = static_cast<float>(keep + step);
                const double f = objective(l, ctx, x, r);
                p.value[i] = keep;
                return f;
            });
        }
    }
}

} // namespace gradcheck

#endif
