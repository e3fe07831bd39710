// Selective layer update (SPEC §1.2(b)): the gated block's skip is exact and
// real, its gradients (fixed decisions) and the straight-through gradient of
// the gate are checked by finite differences, the meter records only what ran.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdint>
#include <string>
#include <vector>

#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/gate.hpp>
#include <frugal/layers/gated.hpp>
#include <frugal/layers/residual.hpp>
#include <frugal/tensor/kernels/elementwise.hpp>
#include <frugal/model/sequential.hpp>
#include <frugal/model/zoo/gated_resnet.hpp>

#include "layers/gate_fd.hpp"
#include "layers/gradcheck.hpp"

namespace fr = frugal;
using gradcheck::random_tensor;

namespace {
using block = fr::basic_block<>;

block make_block(std::size_t in, std::size_t out, std::size_t stride, std::uint64_t seed) {
    block b(in, out, stride);
    fr::rng g(seed);
    b.reset_parameters(g);
    // non-trivial batch-norm scales and shifts
    std::vector<fr::parameter> ps;
    b.collect_parameters(ps);
    for (auto& p : ps) {
        if (p.role == fr::param_role::bn_scale || p.role == fr::param_role::bn_shift) {
            for (auto& v : p.value) {
                v = (p.role == fr::param_role::bn_scale ? 1.0f : 0.0f) + 0.3f * (2.0f * g.uniform() - 1.0f);
            }
        }
    }
    return b;
}

bool same(const fr::tensor4& a, const fr::tensor4& b) {
    return a.shape() == b.shape() && std::equal(a.begin(), a.end(), b.begin());
}

double max_diff(const fr::tensor4& a, const fr::tensor4& b) {
    REQUIRE(a.shape() == b.shape());
    double d = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        d = std::max(d, std::fabs(static_cast<double>(a.data()[i]) - b.data()[i]));
    }
    return d;
}

std::uint64_t macs_of(const fr::cost_meter& m, const std::string& suffix, fr::phase p) {
    std::uint64_t s = 0;
    for (const auto& l : m.layers()) {
        if (l.name.size() >= suffix.size() && l.name.compare(l.name.size() - suffix.size(), suffix.size(), suffix) == 0) {
            s += l[p].count(fr::op_kind::mac);
        }
    }
    return s;
}

double dot(const fr::tensor4& a, const fr::tensor4& b) {
    double s = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        s += static_cast<double>(a.data()[i]) * b.data()[i];
    }
    return s;
}
} // namespace

TEST_SUITE("e2train") {

TEST_CASE("only residual blocks with a shortcut can be gated") {
    static_assert(fr::gatable_block<block>);
    static_assert(!fr::gatable_block<fr::conv2d>); // gated_block<conv2d> is a static_assert with a plain message
    static_assert(!fr::detail::has_shortcut_flag<fr::conv2d>());
    CHECK(fr::detail::has_shortcut_flag<block>());
}

TEST_CASE("a gated block with every gate off returns its shortcut exactly and its body gets zero gradient") {
    for (const auto mode : {fr::slu_mode::execute, fr::slu_mode::simulate}) {
        for (const auto& [in, out, stride] : {std::tuple{4, 4, 1}, std::tuple{3, 6, 2}}) {
            CAPTURE(static_cast<int>(mode));
            CAPTURE(out);
            fr::rng g(3);
            const fr::tensor4 x = random_tensor({5, static_cast<std::size_t>(in), 8, 8}, g);
            fr::gated_block<block> gb(make_block(in, out, stride, 4));
            block ref = gb.block();
            gb.set_mode(mode);
            fr::context ctx;
            // one step with every gate on first, so stale gradients would show
            const fr::tensor4 y_on = gb.forward(ctx, x);
            const fr::tensor4 dy = random_tensor(fr::shape_of(y_on), g);
            (void)gb.backward(ctx, dy);
            gb.set_decisions(std::vector<std::uint8_t>(5, 0));
            const fr::tensor4 y = gb.forward(ctx, x);
            const fr::tensor4 s = ref.forward_shortcut(ctx, x);
            CHECK(same(y, s));
            const fr::tensor4 dx = gb.backward(ctx, dy);
            CHECK(same(dx, ref.backward_shortcut(ctx, dy)));
            CHECK(gb.executed() == 0);
            std::vector<fr::parameter> ps;
            gb.collect_parameters(ps);
            for (const auto& p : ps) {
                CAPTURE(p.name);
                const bool shortcut = p.name.find("shortcut") != std::string::npos;
                bool all_zero = true;
                for (const float v : p.grad) {
                    all_zero = all_zero && v == 0.0f;
                }
                CHECK(all_zero != shortcut); // the projection shortcut always runs and learns
            }
        }
    }
}

TEST_CASE("a gated block with every gate on equals the plain block") {
    for (const auto& [in, out, stride] : {std::tuple{4, 4, 1}, std::tuple{3, 6, 2}}) {
        fr::rng g(5);
        const fr::tensor4 x = random_tensor({6, static_cast<std::size_t>(in), 8, 8}, g);
        block plain = make_block(in, out, stride, 6);
        fr::gated_block<block> gb(plain);
        gb.set_decisions(std::vector<std::uint8_t>(6, 1));
        fr::context ctx;
        const fr::tensor4 y0 = plain.forward(ctx, x);
        const fr::tensor4 y1 = gb.forward(ctx, x);
        CHECK(max_diff(y0, y1) <= 1e-6);
        const fr::tensor4 dy = random_tensor(fr::shape_of(y0), g);
        const fr::tensor4 dx0 = plain.backward(ctx, dy);
        const fr::tensor4 dx1 = gb.backward(ctx, dy);
        CHECK(max_diff(dx0, dx1) <= 1e-5);
        std::vector<fr::parameter> p0, p1;
        plain.collect_parameters(p0);
        gb.collect_parameters(p1);
        REQUIRE(p0.size() == p1.size());
        for (std::size_t i = 0; i < p0.size(); ++i) {
            for (std::size_t j = 0; j < p0[i].grad.size(); ++j) {
                REQUIRE(std::fabs(p0[i].grad[j] - p1[i].grad[j]) <= 1e-5f * (1.0f + std::fabs(p0[i].grad[j])));
            }
        }
    }
}

TEST_CASE("gated block gradients for fixed gate decisions by finite differences") {
    gradcheck::options o;
    o.h = 1e-3;
    for (const auto mode : {fr::slu_mode::execute, fr::slu_mode::simulate}) {
        CAPTURE(static_cast<int>(mode));
        fr::rng g(8);
        fr::gated_block<block> same_width(make_block(3, 3, 1, 9));
        same_width.set_mode(mode);
        same_width.set_decisions(std::vector<std::uint8_t>{1, 0, 1, 1, 0});
        gradcheck::check(same_width, random_tensor({5, 3, 5, 5}, g), o);
        fr::gated_block<block> down(make_block(2, 4, 2, 10));
        down.set_mode(mode);
        down.set_decisions(std::vector<std::uint8_t>{0, 1, 0, 1});
        gradcheck::check(down, random_tensor({4, 2, 6, 6}, g), o);
    }
}

TEST_CASE("the decision gradient is the exact change of the objective between skip and run") {
    // simulate mode computes the body for every sample, so the output is linear in each m
    fr::rng g(12);
    const fr::tensor4 x = random_tensor({4, 3, 6, 6}, g);
    fr::gated_block<block> gb(make_block(3, 5, 2, 13));
    gb.set_mode(fr::slu_mode::simulate);
    std::vector<std::uint8_t> m{1, 0, 1, 0};
    fr::context ctx;
    gb.set_decisions(m);
    const fr::tensor4 r = random_tensor(fr::shape_of(gb.forward(ctx, x)), g);
    (void)gb.backward(ctx, r);
    const std::vector<float> dm = gb.decision_grad();
    for (std::size_t n = 0; n < 4; ++n) {
        auto on = m, off = m;
        on[n] = 1;
        off[n] = 0;
        gb.set_decisions(on);
        const double lon = dot(gb.forward(ctx, x), r);
        gb.set_decisions(off);
        const double loff = dot(gb.forward(ctx, x), r);
        CHECK(dm[n] == doctest::Approx(lon - loff).epsilon(1e-4));
    }
    // execute mode, evaluation statistics (a sample's output does not depend on the others):
    // the same gradient for the executed samples, none for the skipped ones
    fr::context ev;
    ev.mode = fr::run_mode::eval;
    gb.set_decisions(m);
    (void)gb.forward(ev, x);
    (void)gb.backward(ev, r);
    const std::vector<float> sim = gb.decision_grad();
    gb.set_mode(fr::slu_mode::execute);
    (void)gb.forward(ev, x);
    (void)gb.backward(ev, r);
    for (std::size_t n = 0; n < 4; ++n) {
        CAPTURE(n);
        if (m[n]) {
            CHECK(gb.decision_grad()[n] == doctest::Approx(sim[n]).epsilon(1e-5));
        } else {
            CHECK(gb.decision_grad()[n] == 0.0f);
            CHECK(sim[n] != 0.0f);
        }
    }
}

TEST_CASE("recurrent gate gradients by finite differences through time") {
    fr::rng g(21);
    fr::recurrent_gate gate;
    gate_fd::check(gate, g);
}

TEST_CASE("the straight-through gradient reaches the shared gate of a gated stack") {
    // with the decisions fixed, the gate parameters influence the loss only through p,
    // with slope dL/dp (straight-through): compare with a finite difference of sum_i dL/dp_i . p_i
    std::vector<block> blocks;
    blocks.push_back(make_block(3, 3, 1, 30));
    blocks.push_back(make_block(3, 3, 1, 31));
    blocks.push_back(make_block(3, 6, 2, 32));
    blocks.push_back(make_block(6, 6, 1, 33));
    fr::slu_options so;
    so.alpha = 1e-3f;
    fr::gated<block> net(std::move(blocks), so, fr::recurrent_gate(0.0f));
    fr::rng g(34);
    for (std::size_t i = 1; i < net.size(); ++i) {
        net.unit(i).reset_parameters(g);
    }
    net.gate().reset_parameters(g);
    const fr::tensor4 x = random_tensor({6, 3, 6, 6}, g);
    fr::context ctx;
    ctx.random = fr::rng(99);
    const fr::tensor4 y = net.forward(ctx, x);
    const fr::tensor4 r = random_tensor(fr::shape_of(y), g);
    (void)net.backward(ctx, r);
    std::vector<std::vector<float>> dp, p0;
    std::vector<std::vector<std::uint8_t>> m0;
    std::size_t mixed = 0;
    for (std::size_t i = 0; i < net.size(); ++i) {
        dp.push_back(net.probability_grad(i));
        p0.push_back(net.probabilities(i));
        m0.push_back(net[i].decisions());
        const auto on = std::count(m0.back().begin(), m0.back().end(), 1);
        mixed += (on > 0 && on < 6) ? 1 : 0;
        if (i > 0) {
            for (std::size_t s = 0; s < dp[i].size(); ++s) {
                // straight-through + regularizer
                CHECK(dp[i][s] == doctest::Approx(net[i].decision_grad()[s] + so.alpha * net.regularizer_sign()));
            }
        }
    }
    CHECK(mixed >= 1); // the test exercises real skips
    auto surrogate = [&](bool& same_decisions) {
        ctx.random = fr::rng(99);
        (void)net.forward(ctx, x);
        double s = 0.0;
        same_decisions = true;
        for (std::size_t i = 1; i < net.size(); ++i) {
            same_decisions = same_decisions && net[i].decisions() == m0[i];
            for (std::size_t n = 0; n < 6; ++n) {
                s += static_cast<double>(dp[i][n]) * net.probabilities(i)[n];
            }
        }
        return s;
    };
    std::vector<fr::parameter> ps;
    net.gate().collect_parameters(ps);
    for (std::size_t i = 1; i < net.size(); ++i) {
        net.unit(i).collect_parameters(ps);
    }
    std::vector<std::vector<float>> grads;
    for (const auto& p : ps) {
        grads.emplace_back(p.grad.begin(), p.grad.end());
    }
    const double h = 1e-2; // dL/dp is O(1): float rounding of p needs a large step
    std::size_t checked = 0;
    for (std::size_t pi = 0; pi < ps.size(); ++pi) {
        for (std::size_t i = 0; i < ps[pi].value.size(); i += 7) {
            float& v = ps[pi].value[i];
            const float keep = v;
            bool same_up = false, same_down = false;
            v = static_cast<float>(keep + h);
            const double up = surrogate(same_up);
            v = static_cast<float>(keep - h);
            const double down = surrogate(same_down);
            v = keep;
            if (!same_up || !same_down) {
                continue; // a decision flipped: the surrogate is not smooth there
            }
            ++checked;
            const double numeric = (up - down) / (2 * h);
            INFO(ps[pi].name << "[" << i << "]: analytic " << grads[pi][i] << ", finite difference " << numeric);
            const double analytic = grads[pi][i];
            CHECK(std::fabs(analytic - numeric) <= 1e-4 + 2e-2 * std::max(std::fabs(analytic), std::fabs(numeric)));
        }
    }
    CHECK(checked > 30);
}

TEST_CASE("a gated stack's fused gate passes equal the unfused composition, value for value") {
    // the stack pools each gate's input from sums the previous block kept while writing it, and
    // adds each unit's input gradient in its block's last backward pass; the reference runs the
    // same steps one by one: block backward, gate step, unit backward adding into dh
    const auto make_net = [] {
        std::vector<block> blocks;
        blocks.push_back(make_block(3, 3, 1, 40));
        blocks.push_back(make_block(3, 3, 1, 41));
        blocks.push_back(make_block(3, 6, 2, 42)); // a projection shortcut
        blocks.push_back(make_block(6, 6, 1, 43));
        fr::slu_options so;
        so.alpha = 1e-3f;
        fr::gated<block> net(std::move(blocks), so, fr::recurrent_gate(0.0f));
        fr::rng g(44);
        for (std::size_t i = 1; i < net.size(); ++i) {
            net.unit(i).reset_parameters(g);
        }
        net.gate().reset_parameters(g);
        return net;
    };
    fr::gated<block> a = make_net(), b = make_net();
    for (std::size_t i = 0; i < b.size(); ++i) {
        b[i].keep_plane_sums(false); // the reference's units pool by reading their input
    }
    fr::rng g(45);
    const fr::tensor4 x = random_tensor({7, 3, 6, 6}, g);
    fr::context ca, cb;
    ca.random = fr::rng(5);
    cb.random = fr::rng(5);
    const fr::tensor4 ya = a.forward(ca, x);
    const fr::tensor4 yb = b.forward(cb, x);
    REQUIRE(same(ya, yb));
    std::size_t mixed = 0;
    for (std::size_t i = 0; i + 1 < a.size(); ++i) {
        const auto* sums = a[i].plane_sums();
        REQUIRE(sums != nullptr);
        const std::size_t on = static_cast<std::size_t>(std::count(a[i + 1].decisions().begin(),
                                                                    a[i + 1].decisions().end(), 1));
        mixed += on > 0 && on < 7 && i + 1 != 2 ? 1 : 0; // block 2 has the projection
    }
    CHECK(mixed >= 1); // an identity block with samples that ran and samples that skipped
    CHECK(a[a.size() - 1].plane_sums() == nullptr); // the last block feeds no gate
    {
        // the last forward's sums of block 0, against its output read again
        fr::gated<block> c = make_net();
        fr::context cc;
        cc.random = fr::rng(5);
        (void)c.forward(cc, x);
        fr::context single;
        single.random = fr::rng(5);
        fr::gated_block<block>& b0 = c[0];
        const fr::tensor4 y0 = b0.forward(single, x); // block 0 always runs
        const fr::shape4 s0 = fr::shape_of(y0);
        const auto& sums = *b0.plane_sums();
        REQUIRE(sums.size() == s0.n * s0.c);
        for (std::size_t i = 0; i < sums.size(); ++i) {
            CHECK(sums[i] == fr::kernels::lane_sum(y0.data() + i * s0.h * s0.w, s0.h * s0.w));
        }
    }
    const fr::tensor4 dy = random_tensor(fr::shape_of(ya), g);
    const fr::tensor4 dxa = a.backward(ca, dy);
    // the reference
    b.gate().begin_backward();
    const fr::tensor4* gr = &dy;
    for (std::size_t i = b.size(); i-- > 1;) {
        (void)b[i].backward(cb, *gr);
        const std::vector<float>& dm = b[i].decision_grad();
        std::vector<float> dp(dm.size());
        for (std::size_t n = 0; n < dm.size(); ++n) {
            dp[n] = dm[n] + b.options().effective_alpha() * b.regularizer_sign() * 1.0f;
        }
        const std::vector<float>& dfeat = b.gate().step_backward(cb, dp.data());
        fr::tensor4& dh = b[i].input_grad_buffer();
        b.unit(i).backward(cb, dfeat.data(), &dh);
        gr = &dh;
    }
    const fr::tensor4 dxb = b[0].backward(cb, *gr);
    CHECK(same(dxa, dxb));
    gradcheck::check_same_gradients(a, b);
}

TEST_CASE("the meter records only the executed samples of a gated block") {
    fr::rng g(40);
    const fr::tensor4 x = random_tensor({10, 4, 8, 8}, g);
    auto run = [&](const std::vector<std::uint8_t>& m, fr::slu_mode mode) {
        fr::gated_block<block> gb(make_block(4, 4, 1, 41));
        gb.set_name("b");
        gb.set_mode(mode);
        gb.set_decisions(m);
        fr::cost_meter meter;
        fr::context ctx;
        ctx.meter = &meter;
        const fr::tensor4 y = gb.forward(ctx, x);
        (void)gb.backward(ctx, y);
        return meter;
    };
    const std::vector<std::uint8_t> all(10, 1), some{1, 0, 0, 1, 0, 1, 0, 0, 1, 0}; // 4 of 10
    const auto full = run(all, fr::slu_mode::execute);
    const auto part = run(some, fr::slu_mode::execute);
    const auto sim = run(some, fr::slu_mode::simulate);
    for (const auto ph : {fr::phase::forward, fr::phase::weight_gradient, fr::phase::backward_input}) {
        for (const char* conv : {"conv1", "conv2"}) {
            CAPTURE(conv);
            const std::uint64_t f = macs_of(full, conv, ph), p = macs_of(part, conv, ph);
            CHECK(f > 0);
            CHECK(p * 10 == f * 4);
            CHECK(macs_of(sim, conv, ph) == p); // simulate computes all, counts the executed share
        }
    }
}

TEST_CASE("a gated stack forced all on equals the plain blocks and forced all off skips every gated block") {
    std::vector<block> blocks;
    blocks.push_back(make_block(3, 3, 1, 50));
    blocks.push_back(make_block(3, 5, 2, 51));
    blocks.push_back(make_block(5, 5, 1, 52));
    fr::repeated<block> plain(blocks);
    fr::slu_options so;
    so.force = fr::gate_override::all_on;
    fr::gated<block> net(blocks, so);
    fr::rng g(53);
    const fr::tensor4 x = random_tensor({4, 3, 8, 8}, g);
    fr::context ctx;
    const fr::tensor4 y0 = plain.forward(ctx, x);
    CHECK(max_diff(net.forward(ctx, x), y0) <= 1e-6);
    CHECK(net.executed_share() == 1.0);
    CHECK(net.regularizer_sign() == 1.0f); // 100% executed is above the 60% target

    so.force = fr::gate_override::all_off;
    net.set_options(so);
    block b0 = blocks[0], b1 = blocks[1], b2 = blocks[2];
    const fr::tensor4 h0 = b0.forward(ctx, x);
    const fr::tensor4 h1 = b1.forward_shortcut(ctx, h0);
    const fr::tensor4 h2 = b2.forward_shortcut(ctx, h1);
    const fr::tensor4 y = net.forward(ctx, x);
    CHECK(max_diff(y, h2) <= 1e-6);
    CHECK(net.executed_share() == 0.0);
    CHECK(net.regularizer_sign() == -1.0f);
    (void)net.backward(ctx, random_tensor(fr::shape_of(y), g));
    std::vector<fr::parameter> ps;
    net[2].collect_parameters(ps);
    for (const auto& p : ps) {
        for (const float v : p.grad) {
            REQUIRE(v == 0.0f);
        }
    }
    // evaluation report: block 0 always runs, the others never (forced)
    fr::context ev;
    ev.mode = fr::run_mode::eval;
    net.reset_eval_report();
    (void)net.forward(ev, x);
    const auto f = net.eval_executed_fraction();
    CHECK(f[0] == 1.0);
    CHECK(f[1] == 0.0);
    CHECK(f[2] == 0.0);
}

TEST_CASE("gated stack evaluation thresholds p at one half and reports the executed fraction") {
    std::vector<block> blocks;
    for (std::uint64_t i = 0; i < 4; ++i) {
        blocks.push_back(make_block(3, 3, 1, 60 + i));
    }
    fr::gated<block> net(std::move(blocks), {}, fr::recurrent_gate(0.0f));
    fr::rng g(64);
    for (std::size_t i = 1; i < net.size(); ++i) {
        net.unit(i).reset_parameters(g);
    }
    net.gate().reset_parameters(g);
    fr::context ev;
    ev.mode = fr::run_mode::eval;
    std::vector<double> expected(4, 0.0);
    for (int b = 0; b < 3; ++b) {
        const fr::tensor4 x = random_tensor({8, 3, 5, 5}, g, 3.0f);
        (void)net.forward(ev, x);
        for (std::size_t i = 1; i < 4; ++i) {
            for (std::size_t n = 0; n < 8; ++n) {
                const bool run = net.probabilities(i)[n] > 0.5f;
                CHECK(static_cast<bool>(net[i].decisions()[n]) == run);
                expected[i] += run ? 1.0 / 24.0 : 0.0;
            }
        }
    }
    const auto f = net.eval_executed_fraction();
    CHECK(f[0] == 1.0);
    for (std::size_t i = 1; i < 4; ++i) {
        CHECK(f[i] == doctest::Approx(expected[i]));
    }
}

TEST_CASE("gated resnet trains a step and round-trips through a checkpoint") {
    auto net = fr::gated_cifar_resnet(20, {}, 1, 10, 3);
    auto other = fr::gated_cifar_resnet(20, {}, 1, 10, 4);
    fr::rng g(70);
    const fr::tensor4 x = random_tensor({4, 1, 28, 28}, g);
    fr::context ctx;
    const fr::tensor4 y = net.forward(ctx, x);
    CHECK(fr::shape_of(y) == fr::shape4{4, 10, 1, 1});
    (void)net.backward(ctx, random_tensor(fr::shape_of(y), g));
    fr::archive_writer w;
    net.save(w);
    fr::archive_reader r(w.bytes(), "test");
    other.load(r);
    CHECK(r.remaining() == 0);
    fr::context ev;
    ev.mode = fr::run_mode::eval;
    CHECK(same(net.forward(ev, x), other.forward(ev, x)));
}

TEST_CASE("the regularizer weight defaults by mode and a given one is kept") {
    fr::slu_options o;
    CHECK(o.mode == fr::slu_mode::execute);
    CHECK(o.effective_alpha() == 1e-3f); // execute: the controller must beat the lean towards skipping
    o.mode = fr::slu_mode::simulate;
    CHECK(o.effective_alpha() == 1e-5f); // SPEC's value
    o.alpha = 2e-4f;
    CHECK(o.effective_alpha() == 2e-4f);
    o.mode = fr::slu_mode::execute;
    CHECK(o.effective_alpha() == 2e-4f);
}

TEST_CASE("SLU options out of range are refused with the field's name") {
    std::vector<block> blocks;
    blocks.push_back(make_block(3, 3, 1, 60));
    blocks.push_back(make_block(3, 3, 1, 61));
    auto refused = [&](fr::slu_options o, const char* field) {
        CHECK_THROWS_WITH_AS(fr::gated<block>(blocks, o), doctest::Contains(field), fr::error);
        fr::gated<block> net(blocks);
        CHECK_THROWS_WITH_AS(net.set_options(o), doctest::Contains(field), fr::error);
    };
    fr::slu_options o;
    o.alpha = -1e-3f;
    refused(o, "alpha");
    o.alpha = std::nanf("");
    refused(o, "alpha");
    o = {};
    o.target_exec = 0.0f;
    refused(o, "target_exec");
    o = {};
    o.eval_threshold = 1.5f;
    refused(o, "eval_threshold");
    o = {};
    o.forced_rate = -0.1f;
    refused(o, "forced_rate");
}

TEST_CASE("a gated stack forced to a random rate runs that share of the pairs") {
    std::vector<block> blocks;
    for (int i = 0; i < 4; ++i) {
        blocks.push_back(make_block(3, 3, 1, 70 + static_cast<std::uint64_t>(i)));
    }
    fr::slu_options so;
    so.force = fr::gate_override::random;
    so.forced_rate = 0.3f;
    fr::gated<block> net(blocks, so);
    fr::rng g(71);
    const fr::tensor4 x = random_tensor({50, 3, 4, 4}, g);
    fr::context ctx;
    ctx.random = fr::rng(72);
    double share = 0.0;
    constexpr int steps = 40;
    for (int i = 0; i < steps; ++i) {
        (void)net.forward(ctx, x);
        share += net.executed_share() / steps;
    }
    // 40 x 3 x 50 = 6000 Bernoulli(0.3) pairs: standard error 0.006
    CHECK(share == doctest::Approx(0.3).epsilon(0.06));
    CHECK(net[0].executed() == 50); // the first block always runs
}

} // TEST_SUITE
