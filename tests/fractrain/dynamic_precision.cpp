// DFQ: the precision gate's gradients by finite differences; each sample
// runs at exactly the option the gate chose (per-sample evaluation against
// copies of the blocks set to that option, the meter's counts per group);
// the sorted batch's backward against a hand-made permutation; the cost
// percentage and the sign rules on hand-computed cases; the cost term moving
// the gate toward cheaper or dearer options; checkpoints; bad options; and
// FracTrain's rising target driven by fit.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstring>
#include <map>
#include <vector>

#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/layers/dynamic_precision.hpp>
#include <frugal/model/zoo/dfq_resnet.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/train/precision_schedule.hpp>
#include <frugal/train/trainer.hpp>

#include "layers/gate_fd.hpp"
#include "layers/gradcheck.hpp"
#include "temp_dir.hpp"

namespace fr = frugal;

namespace {

using set3 = fr::precision_set<fr::precision<4, 3, 6>, fr::precision<4, 6, 8>, fr::precision<4, 8, 8>>;
using block = fr::quantized_block;
using stack3 = fr::dynamic_precision<block, set3>;

stack3 make_stack(std::size_t blocks, std::uint64_t seed, fr::dfq_options o = {}, bool strong_head = true) {
    std::vector<block> bs;
    bs.emplace_back(3, 4, 1); // a projection shortcut (3 -> 4)
    for (std::size_t i = 1; i < blocks; ++i) {
        bs.emplace_back(4, 4, 1);
    }
    stack3 s(std::move(bs), o);
    fr::rng g(seed);
    s.reset_parameters(g);
    if (!strong_head) {
        return s;
    }
    // a gate whose choice varies between samples: a strong head
    std::vector<fr::parameter> ps;
    s.gate().collect_parameters(ps);
    for (auto& p : ps) {
        if (p.name.find("linear.weight") != std::string::npos) {
            for (auto& v : p.value) {
                v *= 40.0f;
            }
        }
    }
    return s;
}

std::size_t distinct(const std::vector<std::uint8_t>& c) {
    std::vector<std::uint8_t> u(c);
    std::sort(u.begin(), u.end());
    return static_cast<std::size_t>(std::unique(u.begin(), u.end()) - u.begin());
}

} // namespace

TEST_SUITE("fractrain/dynamic_precision") {

TEST_CASE("the precision gate's gradients by finite differences (softmax head, two-layer unit)") {
    fr::rng g(5);
    fr::precision_gate<3> gate;
    gate_fd::check(gate, g);
}

TEST_CASE("DFQ: every sample runs at exactly the option its gate chose") {
    auto s = make_stack(2, 7);
    fr::rng g(8);
    fr::tensor4 x = gradcheck::random_tensor({12, 3, 6, 6}, g, 1.5f);
    for (std::size_t i = 0; i < x.size(); ++i) { // samples of different means: pooled features that differ
        x.data()[i] += 0.4f * static_cast<float>(i / (3 * 36)) - 2.0f;
    }
    fr::cost_meter m;
    fr::context ctx;
    ctx.meter = &m;
    (void)s.forward(ctx, x); // a training forward: sets the running ranges and statistics
    std::size_t mixed = 0;
    for (std::size_t i = 0; i < 2; ++i) {
        const auto& c = s.choices(i);
        const auto& p = s.probabilities(i);
        REQUIRE(c.size() == 12);
        for (std::size_t n = 0; n < 12; ++n) {
            const float* pn = p.data() + n * 3;
            CHECK(c[n] == static_cast<std::size_t>(std::max_element(pn, pn + 3) - pn));
        }
        mixed += distinct(c) > 1 ? 1 : 0;
    }
    // block 0 sees several options (the sort and the groups), block 1 one (the in-place path)
    REQUIRE(distinct(s.choices(0)) > 1);
    REQUIRE(mixed >= 1);

    // the meter: forward MACs of the quantized convolutions at int(a) x int4, per group
    std::map<int, std::uint64_t> expected;
    for (std::size_t i = 0; i < 2; ++i) {
        for (auto k : s.choices(i)) {
            expected[stack3::widths(k).act] += static_cast<std::uint64_t>(s.block_macs()[i]);
        }
    }
    const fr::op_counts ops = m.all_ops();
    for (const auto& [a, macs] : expected) {
        CAPTURE(a);
        const auto it = ops.find(fr::op_key{fr::op_kind::mac, fr::op_format::integer(a), fr::op_format::integer(4)});
        REQUIRE(it != ops.end());
        // forward only: the backward products are (4, g) and (a, g)
        CHECK(it->second == macs);
    }

    // evaluation: samples are independent (running statistics and ranges), so each output must equal the
    // sample run alone through copies of the blocks set to its options
    fr::context ev;
    ev.mode = fr::run_mode::eval;
    const fr::tensor4 y = s.forward(ev, x);
    const std::vector<std::uint8_t> c0 = s.choices(0), c1 = s.choices(1);
    CHECK(distinct(c0) + distinct(c1) > 2);
    const std::size_t per_x = 3 * 36, per_y = y.size() / 12;
    for (std::size_t n = 0; n < 12; ++n) {
        CAPTURE(n);
        block b0 = s[0], b1 = s[1];
        for (auto* b : {&b0, &b1}) {
            b->conv1().set_groups({});
            b->conv2().set_groups({});
        }
        b0.conv1().set_precision(stack3::widths(c0[n]));
        b0.conv2().set_precision(stack3::widths(c0[n]));
        b1.conv1().set_precision(stack3::widths(c1[n]));
        b1.conv2().set_precision(stack3::widths(c1[n]));
        fr::tensor4 xn = fr::tensor4::from_shape({1, 3, 6, 6});
        std::copy(x.data() + n * per_x, x.data() + (n + 1) * per_x, xn.data());
        const fr::tensor4 h = b0.forward(ev, xn);
        const fr::tensor4& yn = b1.forward(ev, h);
        for (std::size_t j = 0; j < per_y; ++j) {
            REQUIRE(yn.data()[j] == doctest::Approx(y.data()[n * per_y + j]).epsilon(1e-5));
        }
    }
    // a different option for one sample would give a different output: the comparison can fail
    {
        block b0 = s[0];
        b0.conv1().set_groups({});
        b0.conv2().set_groups({});
        const std::size_t other = (c0[0] + 1) % 3;
        b0.conv1().set_precision(stack3::widths(other));
        b0.conv2().set_precision(stack3::widths(other));
        block b0r = s[0];
        b0r.conv1().set_groups({});
        b0r.conv2().set_groups({});
        b0r.conv1().set_precision(stack3::widths(c0[0]));
        b0r.conv2().set_precision(stack3::widths(c0[0]));
        fr::tensor4 xn = fr::tensor4::from_shape({1, 3, 6, 6});
        std::copy(x.data(), x.data() + per_x, xn.data());
        const fr::tensor4 a = b0.forward(ev, xn);
        const fr::tensor4& b = b0r.forward(ev, xn);
        double diff = 0.0;
        for (std::size_t j = 0; j < a.size(); ++j) {
            diff = std::max(diff, static_cast<double>(std::fabs(a.data()[j] - b.data()[j])));
        }
        CHECK(diff > 1e-3);
    }
    // the evaluation report counts the options
    const auto f = s.eval_option_fraction();
    double total = 0.0;
    for (double v : f[0]) {
        total += v;
    }
    CHECK(total == doctest::Approx(1.0));
}

TEST_CASE("DFQ: the sorted batch's backward equals a hand-made permutation of the block's") {
    fr::dfq_options o;
    o.beta = 0.0f; // no cost term: the gate units add nothing to dx
    auto s = make_stack(1, 11, o);
    block ref = s[0]; // the same weights, before any forward
    fr::rng g(12);
    const fr::tensor4 x = gradcheck::random_tensor({9, 3, 5, 5}, g, 1.5f);
    fr::context ctx;
    ctx.random = fr::rng(99);
    const fr::tensor4 y = s.forward(ctx, x);
    const fr::tensor4 dy = gradcheck::random_tensor(fr::shape_of(y), g, 1.0f);
    const fr::tensor4 dx = s.backward(ctx, dy);
    const auto c = s.choices(0);
    REQUIRE(distinct(c) > 1);

    // the reference: sort by option by hand, run the block on the sorted batch with its groups, unsort
    std::vector<std::size_t> order;
    std::vector<fr::precision_group> groups;
    for (std::size_t k = 0; k < 3; ++k) {
        std::size_t count = 0;
        for (std::size_t n = 0; n < c.size(); ++n) {
            if (c[n] == k) {
                order.push_back(n);
                ++count;
            }
        }
        groups.push_back({count, stack3::widths(k)});
    }
    auto permute = [&](const fr::tensor4& t, bool inverse) {
        fr::tensor4 r = fr::tensor4::from_shape(t.shape());
        const std::size_t per = t.size() / t.shape()[0];
        for (std::size_t j = 0; j < order.size(); ++j) {
            const std::size_t from = inverse ? j : order[j], to = inverse ? order[j] : j;
            std::copy(t.data() + from * per, t.data() + (from + 1) * per, r.data() + to * per);
        }
        return r;
    };
    ref.conv1().set_groups(groups);
    ref.conv2().set_groups(groups);
    fr::context rc;
    rc.random = fr::rng(99);
    const fr::tensor4 xs = permute(x, false), dys = permute(dy, false); // alive until the backward
    const fr::tensor4 yr = permute(ref.forward(rc, xs), true);
    const fr::tensor4 dxr = permute(ref.backward(rc, dys), true);
    for (std::size_t i = 0; i < y.size(); ++i) {
        REQUIRE(y.data()[i] == doctest::Approx(yr.data()[i]).epsilon(1e-5));
    }
    for (std::size_t i = 0; i < dx.size(); ++i) {
        REQUIRE(dx.data()[i] == doctest::Approx(dxr.data()[i]).epsilon(1e-4).scale(1e-3));
    }
    const auto& dw = s[0].conv1().weight_grad();
    const auto& dwr = ref.conv1().weight_grad();
    for (std::size_t i = 0; i < dw.size(); ++i) {
        REQUIRE(dw.data()[i] == doctest::Approx(dwr.data()[i]).epsilon(1e-4).scale(1e-3));
    }
}

TEST_CASE("DFQ: cost percentage and sign rules on hand-computed cases; bad options") {
    using dflt = fr::dynamic_precision<block>;
    // (a, g) = (3, 6) at w = 4: (12 + 24 + 18) / 1024; cp = 100 c / 3
    CHECK(dflt::option_cost(0) == doctest::Approx(54.0 / 1024.0));
    // SPEC's (6, 12) at w = 4: (24 + 48 + 72) / 1024
    CHECK(dflt::option_cost(4) == doctest::Approx(144.0 / 1024.0));
    for (const int k : {0, 2, 4}) {
        fr::dfq_options o;
        o.force = k;
        std::vector<block> bs;
        bs.emplace_back(2, 4, 2);
        bs.emplace_back(4, 4, 1);
        dflt s(std::move(bs), o);
        fr::rng g(3);
        s.reset_parameters(g);
        fr::context ctx;
        (void)s.forward(ctx, gradcheck::random_tensor({5, 2, 8, 8}, g, 1.0f));
        CHECK(s.cost_percent() == doctest::Approx(100.0 * dflt::option_cost(static_cast<std::size_t>(k)) / 3.0));
        // F: block 0 = 4 x 2 x 9 x 16 + 4 x 4 x 9 x 16 (stride 2: 4 x 4 outputs), block 1 = 2 x 4 x 4 x 9 x 64
        CHECK(s.block_macs()[0] == doctest::Approx(4.0 * 2 * 9 * 16 + 4.0 * 4 * 9 * 16));
        CHECK(s.block_macs()[1] == doctest::Approx(2.0 * 4 * 4 * 9 * 16));
        const double f0 = s.block_macs()[0], f1 = s.block_macs()[1];
        const double c = 5.0 * (f0 + f1) * dflt::option_cost(static_cast<std::size_t>(k));
        CHECK(s.cost_loss() == doctest::Approx(s.cost_sign() * 1e-3 * c / ((f0 + f1) / 2.0)));
    }
    fr::dfq_options o;
    o.target = 3.0f;
    CHECK(o.sign(2.9) == -1.0f);
    CHECK(o.sign(3.0) == 1.0f);
    o.relax = 0.5f;
    CHECK(o.sign(2.4) == -1.0f);
    CHECK(o.sign(2.7) == -0.1f);
    CHECK(o.sign(3.2) == 0.1f);
    CHECK(o.sign(3.5) == 1.0f);
    o.rule = fr::dfq_sign_rule::fractrain;
    o.range = 1.0f;
    CHECK(o.sign(2.9) == -1.0f);
    CHECK(o.sign(3.5) == 0.0f);
    CHECK(o.sign(4.0) == 1.0f);

    fr::dfq_options bad;
    bad.beta = -1.0f;
    CHECK_THROWS_WITH_AS(bad.validate(5), doctest::Contains("beta (-1)"), fr::error);
    bad = {};
    bad.force = 5;
    CHECK_THROWS_WITH_AS(bad.validate(5), doctest::Contains("force = 5 but the set has 5 options"), fr::error);
    bad.target = std::nanf("");
    bad.force = -1;
    CHECK_THROWS_WITH_AS(bad.validate(5), doctest::Contains("target (nan)"), fr::error);
    CHECK_THROWS_WITH_AS(dflt(std::vector<block>{}), doctest::Contains("at least one block"), fr::error);
}

TEST_CASE("DFQ: the cost term moves the gate toward cheaper options above the target, dearer below") {
    for (const float target : {0.0f, 100.0f}) {
        CAPTURE(target);
        fr::dfq_options o;
        o.target = target;
        o.beta = 1.0f;
        auto s = make_stack(2, 31, o, false); // a soft gate: the softmax passes gradient
        fr::rng g(32);
        const fr::tensor4 x = gradcheck::random_tensor({16, 3, 6, 6}, g, 1.5f);
        std::vector<fr::parameter> gate_params;
        s.gate().collect_parameters(gate_params);
        // start from the other end: every sample on the dearest option (target 0) or the cheapest (100)
        for (auto& p : gate_params) {
            if (p.name.find("linear.bias") != std::string::npos) {
                std::fill(p.value.begin(), p.value.end(), 0.0f);
                p.value[target == 0.0f ? 2 : 0] = 1.0f;
            }
        }
        s.unit(0).collect_parameters(gate_params);
        s.unit(1).collect_parameters(gate_params);
        fr::context ctx;
        (void)s.forward(ctx, x);
        const double before = s.cost_percent();
        for (int step = 0; step < 30; ++step) {
            const fr::tensor4 y = s.forward(ctx, x);
            fr::tensor4 dy = fr::tensor4::from_shape(y.shape());
            dy.fill(0.0f); // the cost term alone
            (void)s.backward(ctx, dy);
            for (auto& p : gate_params) {
                for (std::size_t i = 0; i < p.value.size(); ++i) {
                    p.value[i] -= 0.5f * p.grad[i];
                }
            }
        }
        (void)s.forward(ctx, x);
        INFO("cp " << before << " -> " << s.cost_percent());
        CHECK(before == doctest::Approx(100.0 * stack3::option_cost(target == 0.0f ? 2 : 0) / 3.0));
        // still pushing, or held (sign 0) once every sample has reached the other end
        const double other = 100.0 * stack3::option_cost(target == 0.0f ? 0 : 2) / 3.0;
        const bool arrived = std::fabs(s.cost_percent() - other) < 1e-9;
        if (target == 0.0f) {
            CHECK(s.cost_sign() == (arrived ? 0.0f : 1.0f));
            CHECK(s.cost_percent() < before);
        } else {
            CHECK(s.cost_sign() == (arrived ? 0.0f : -1.0f));
            CHECK(s.cost_percent() > before);
        }
    }
}

TEST_CASE("DFQ: the cost term holds still where no choice can move (every sample at the cheapest or dearest)") {
    // target 0 pushes cheaper, target 100 dearer; the gate's bias puts every sample on the option
    // at that end already, so (by default) the term is switched off instead of saturating the gate
    for (const bool hold : {true, false}) {
        for (const float target : {0.0f, 100.0f}) {
            CAPTURE(hold);
            CAPTURE(target);
            fr::dfq_options o;
            o.target = target;
            o.beta = 1.0f;
            o.hold_at_extremes = hold;
            auto s = make_stack(2, 31, o, false);
            fr::rng g(32);
            const fr::tensor4 x = gradcheck::random_tensor({16, 3, 6, 6}, g, 1.5f);
            std::vector<fr::parameter> gate_params;
            s.gate().collect_parameters(gate_params);
            const std::size_t end = target == 0.0f ? 0 : 2; // the cheapest / dearest of set3
            CHECK(stack3::cheapest_option() == 0);
            CHECK(stack3::dearest_option() == 2);
            for (auto& p : gate_params) {
                if (p.name.find("linear.bias") != std::string::npos) {
                    std::fill(p.value.begin(), p.value.end(), 0.0f);
                    p.value[end] = 1.0f;
                }
            }
            fr::context ctx;
            const fr::tensor4 y = s.forward(ctx, x);
            REQUIRE(s.cost_percent() == doctest::Approx(100.0 * stack3::option_cost(end) / 3.0));
            const float pushed = target == 0.0f ? 1.0f : -1.0f;
            CHECK(s.cost_sign() == (hold ? 0.0f : pushed));
            CHECK((s.cost_loss() == 0.0) == hold);
            // the gate's parameters get no gradient from the held term (the output gradient is 0)
            fr::tensor4 dy = fr::tensor4::from_shape(y.shape());
            dy.fill(0.0f);
            for (auto& p : gate_params) {
                std::fill(p.grad.begin(), p.grad.end(), 0.0f);
            }
            (void)s.backward(ctx, dy);
            double norm = 0.0;
            for (const auto& p : gate_params) {
                for (float v : p.grad) {
                    norm += static_cast<double>(v) * v;
                }
            }
            CHECK((norm == 0.0) == hold);
            // from the other end, the term pushes as before (the previous test)
            o.target = 100.0f - target;
            auto t = make_stack(2, 31, o, false);
            std::vector<fr::parameter> tp;
            t.gate().collect_parameters(tp);
            for (auto& p : tp) {
                if (p.name.find("linear.bias") != std::string::npos) {
                    std::fill(p.value.begin(), p.value.end(), 0.0f);
                    p.value[end] = 1.0f;
                }
            }
            (void)t.forward(ctx, x);
            CHECK(t.cost_sign() == -pushed);
        }
    }
}

TEST_CASE("DFQ ResNet: checkpoint round trip, and FracTrain's rising target driven by fit") {
    const auto data = fr::subset(fr::load_fashion_mnist(fr::data_split::train), 96, 5);
    fr::batch_options bo;
    bo.batch_size = 32; // 3 steps per epoch
    bo.seed = 3;
    fr::batch_loader loader(data, fr::normalization::from_dataset(data), bo);
    auto net = fr::dfq_cifar_resnet(8, {}, 1, 10, 4, 4);
    auto& stack = net.get<2>();
    fr::optimizer<> opt(fr::parameters_of(net), fr::sgd{0.9f, 1e-4f, true});
    fr::fit_options o;
    o.epochs = 3;
    o.progress = false;
    o.schedule = fr::lr_schedule::constant(0.02f);
    fr::pfq_indicator ind;
    ind.chunk = 1;
    ind.window = 2;
    ind.eps = 10.0; // a turning point every 2 steps, 3 at most
    fr::rising_target<std::decay_t<decltype(stack)>> target(stack, 1.5f, 0.5f, 3, ind);
    const auto r = fr::fit(net, opt, loader, nullptr, o, fr::every_batch{}, &target);
    CHECK(r.history.size() == 3);
    CHECK(target.turning_points() == std::vector<std::uint64_t>{2, 4, 6});
    CHECK(target.target_at(0) == 1.5f);
    CHECK(target.target_at(5) == 2.5f);
    CHECK(stack.options().target == 3.0f); // set before the last step (8)
    CHECK(stack.cost_percent() > 0.0);

    // checkpoint: a fresh network loads the weights, the gate and the target and evaluates identically
    fr::archive_writer w;
    net.save(w);
    auto other = fr::dfq_cifar_resnet(8, {}, 1, 10, 99, 4);
    fr::archive_reader rd(w.bytes(), "test");
    other.load(rd);
    CHECK(other.get<2>().options().target == 3.0f);
    fr::batch b;
    loader.fill(0, 0, b);
    fr::context ev;
    ev.mode = fr::run_mode::eval;
    const fr::tensor4 y1 = net.forward(ev, b.x);
    const fr::tensor4 y2 = other.forward(ev, b.x);
    for (std::size_t i = 0; i < y1.size(); ++i) {
        REQUIRE(y1.data()[i] == y2.data()[i]);
    }
    // a network of another depth refuses the checkpoint
    auto deeper = fr::dfq_cifar_resnet(14, {}, 1, 10, 1, 4);
    fr::archive_reader rd2(w.bytes(), "test");
    CHECK_THROWS_WITH_AS(deeper.load(rd2), doctest::Contains("holds 3 blocks"), fr::io_error);

    // the target raised at fixed steps instead: +0.5 from step 3 and from step 7 on, set before each step
    auto fixed = fr::rising_target<std::decay_t<decltype(stack)>>::at_steps(stack, 2.0f, 0.5f, {3, 7});
    CHECK(fixed.fixed_steps());
    CHECK(fixed.target_at(0) == 2.0f);
    CHECK(fixed.target_at(2) == 2.0f);
    CHECK(fixed.target_at(3) == 2.5f);
    CHECK(fixed.target_at(6) == 2.5f);
    CHECK(fixed.target_at(7) == 3.0f);
    CHECK(fixed.target_at(1000) == 3.0f);
    fr::optimizer<> opt2(fr::parameters_of(net), fr::sgd{0.9f, 1e-4f, true});
    fr::fit_options o2 = o;
    o2.epochs = 2; // 6 steps: 0..5
    (void)fr::fit(net, opt2, loader, nullptr, o2, fr::every_batch{}, &fixed);
    CHECK(stack.options().target == 2.5f); // set before step 5
    CHECK(fixed.turning_points().empty());
    CHECK_THROWS_AS((void)fr::rising_target<std::decay_t<decltype(stack)>>::at_steps(stack, 2.0f, 0.5f, {5, 5}),
                    fr::error);
}

} // TEST_SUITE
