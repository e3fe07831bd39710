// The cost meter: counts equal hand-computed values for a convolution, a
// dense layer and a whole LeNet-5 step, phase by phase; layers that do not
// run (the first layer's input gradient, a dropped mini-batch) record
// nothing; time is recorded per layer and phase.

#include <doctest/doctest.h>

#include <cstdint>
#include <stdexcept>
#include <string>

#include <frugal/cost/energy.hpp>
#include <frugal/cost/meter.hpp>
#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/dense.hpp>
#include <frugal/layers/loss.hpp>
#include <frugal/model/zoo/lenet.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/train/trainer.hpp>

namespace fr = frugal;
using fr::op_kind;
using fr::phase;

namespace {

fr::tensor4 filled(fr::shape4 s, std::uint64_t seed) {
    fr::tensor4 t = fr::tensor4::from_shape({s.n, s.c, s.h, s.w});
    fr::rng g(seed);
    for (auto& v : t) {
        v = 2.0f * g.uniform() - 1.0f;
    }
    return t;
}

std::uint64_t macs(const fr::cost_meter& m, phase p) { return m.totals()[static_cast<std::size_t>(p)].count(op_kind::mac); }
std::uint64_t ops(const fr::cost_meter& m, phase p, op_kind k) {
    return m.totals()[static_cast<std::size_t>(p)].count(k);
}

/// Drops the batches of epoch 2 entirely and every odd batch of epoch 3.
struct test_dropper {
    static constexpr const char* name = "test_dropper";
    [[nodiscard]] bool take(std::uint64_t epoch, std::uint64_t batch) const noexcept {
        return epoch == 1 || (epoch == 3 && batch % 2 == 0);
    }
};

} // namespace

TEST_SUITE("cost/meter") {

TEST_CASE("a strided padded convolution counts N Cout Hout Wout Cin k k MACs in every phase") {
    // N=3, Cin=2, Cout=5, k=3, stride 2, pad 1, 9x9 input -> 5x5 output
    fr::conv2d conv(2, 5, 3, {2, 1, true});
    conv.set_name("c");
    fr::rng g(3);
    conv.reset_parameters(g);
    fr::cost_meter meter;
    fr::context ctx;
    ctx.meter = &meter;
    const fr::tensor4 x = filled({3, 2, 9, 9}, 1);
    const auto& y = conv.forward(ctx, x);
    REQUIRE(fr::shape_of(y) == fr::shape4{3, 5, 5, 5});
    const std::uint64_t expected = 3ull * 5 * 5 * 5 * 2 * 3 * 3;
    CHECK(macs(meter, phase::forward) == expected);
    CHECK(ops(meter, phase::forward, op_kind::add) == 3ull * 5 * 5 * 5); // the bias
    CHECK(macs(meter, phase::backward_input) == 0);
    (void)conv.backward(ctx, filled({3, 5, 5, 5}, 2));
    CHECK(macs(meter, phase::backward_input) == expected);
    CHECK(macs(meter, phase::weight_gradient) == expected);
    CHECK(ops(meter, phase::weight_gradient, op_kind::add) == 3ull * 5 * 5 * 5); // bias gradient
    // everything is fp32 x fp32 and sits under the layer's name
    REQUIRE(meter.layers().size() == 1);
    CHECK(meter.layers()[0].name == "c");
    const auto all = meter.all_ops();
    CHECK(all.at(fr::op_key{op_kind::mac, fr::fp32, fr::fp32}) == 3 * expected);
    // bytes: x, w and b read, y written
    const auto& f = meter.layers()[0][phase::forward];
    CHECK(f.bytes_read == 4ull * (3 * 2 * 9 * 9 + 5 * 2 * 9 + 5));
    CHECK(f.bytes_written == 4ull * 3 * 5 * 5 * 5);
    CHECK(f.calls == 1);
    CHECK(f.seconds > 0.0);

    // a layer told that nobody needs its input gradient does not compute or count it
    fr::cost_meter m2;
    ctx.meter = &m2;
    conv.set_input_grad(false);
    (void)conv.forward(ctx, x);
    (void)conv.backward(ctx, filled({3, 5, 5, 5}, 2));
    CHECK(macs(m2, phase::backward_input) == 0);
    CHECK(macs(m2, phase::weight_gradient) == expected);
    // without a meter nothing is recorded anywhere
    ctx.meter = nullptr;
    (void)conv.forward(ctx, x);
    CHECK(macs(m2, phase::forward) == expected);
}

TEST_CASE("a dense layer counts N in out MACs per phase") {
    fr::dense d(13, 5);
    d.set_name("fc");
    fr::rng g(4);
    d.reset_parameters(g);
    fr::cost_meter meter;
    fr::context ctx;
    ctx.meter = &meter;
    const fr::tensor4 x = filled({7, 13, 1, 1}, 5); // the layer keeps a reference to its input
    (void)d.forward(ctx, x);
    (void)d.backward(ctx, filled({7, 5, 1, 1}, 6));
    CHECK(macs(meter, phase::forward) == 7 * 13 * 5);
    CHECK(macs(meter, phase::backward_input) == 7 * 13 * 5);
    CHECK(macs(meter, phase::weight_gradient) == 7 * 13 * 5);
    CHECK(ops(meter, phase::forward, op_kind::add) == 7 * 5);
    CHECK(meter.layers().at(0).name == "fc");
}

TEST_CASE("a layer re-registers with every new meter, even one at a freed meter's address") {
    fr::dense d(3, 2);
    d.set_name("fc");
    fr::rng g(5);
    d.reset_parameters(g);
    const fr::tensor4 x = filled({2, 3, 1, 1}, 1);
    fr::context ctx;
    for (int round = 0; round < 3; ++round) {
        fr::cost_meter meter; // likely the same stack slot each round
        if (round == 0) {
            (void)meter.layer("an earlier layer"); // shifts fc's id under this meter to 1
        }
        ctx.meter = &meter;
        (void)d.forward(ctx, x);
        REQUIRE(meter.layers().size() == (round == 0 ? 2u : 1u));
        CHECK(meter.layers().back().name == "fc");
        CHECK(macs(meter, phase::forward) == 2 * 3 * 2);
    }
    // a copy is a different meter too: recording into it leaves the original alone
    fr::cost_meter a;
    ctx.meter = &a;
    (void)d.forward(ctx, x);
    fr::cost_meter b = a;
    b.reset();
    ctx.meter = &b;
    (void)d.forward(ctx, x);
    CHECK(macs(a, phase::forward) == 12);
    CHECK(macs(b, phase::forward) == 12);
    CHECK(a.serial() != b.serial());
    CHECK_THROWS_AS(a.time(7, phase::forward, 1.0), std::out_of_range);
}

TEST_CASE("a whole lenet-5 step costs what the hand count says") {
    auto net = fr::lenet5(1, 28, 10, 2);
    fr::optimizer<> opt(fr::parameters_of(net), fr::sgd{0.9f, 5e-4f, false});
    fr::cost_meter meter;
    fr::context ctx;
    ctx.meter = &meter;
    constexpr std::uint64_t n = 4;
    const fr::tensor4 x = filled({n, 1, 28, 28}, 7);
    frugal::tensor<std::int32_t, 1> labels = {1, 3, 5, 7};
    fr::softmax_cross_entropy loss;
    (void)loss.forward(net.forward(ctx, x), labels);
    net.backward(ctx, loss.backward());
    opt.step(ctx, 0.01f);
    // per image: conv1 6x28x28x(1x5x5) = 117600, conv2 16x10x10x(6x5x5) = 240000,
    // fc 400x120 + 120x84 + 84x10 = 58920
    const std::uint64_t conv1 = 6 * 28 * 28 * 25, conv2 = 16 * 10 * 10 * 6 * 25, fc = 400 * 120 + 120 * 84 + 84 * 10;
    CHECK(conv1 + conv2 + fc == 416520);
    CHECK(macs(meter, phase::forward) == n * 416520);
    CHECK(macs(meter, phase::weight_gradient) == n * 416520);
    // the first convolution's input gradient is never needed
    CHECK(macs(meter, phase::backward_input) == n * (416520 - conv1));
    // SGD with momentum and weight decay: 3 MACs per parameter
    CHECK(macs(meter, phase::update) == 3 * 61706);
    // ReLU and max-pool comparisons: relu outputs 6x28x28 + 16x10x10 + 120 + 84, pool windows 4 per output
    const std::uint64_t relu = 6 * 28 * 28 + 16 * 10 * 10 + 120 + 84;
    const std::uint64_t pool = 4 * (6 * 14 * 14 + 16 * 5 * 5);
    CHECK(ops(meter, phase::forward, op_kind::compare) == n * (relu + pool));
    // every entry is named, and the optimizer has its own
    bool has_optimizer = false;
    for (const auto& l : meter.layers()) {
        has_optimizer = has_optimizer || l.name == "optimizer";
        CHECK_FALSE(l.name.empty());
    }
    CHECK(has_optimizer);
}

TEST_CASE("dropped mini-batches record nothing and half the batches cost half") {
    static const auto train = fr::subset(fr::load_fashion_mnist(fr::data_split::train), 512, 3);
    fr::batch_options bo;
    bo.batch_size = 64; // 8 full batches per epoch
    bo.seed = 1;
    fr::batch_loader loader(train, fr::normalization::from_dataset(train), bo);
    auto net = fr::lenet5(1, 28, 10, 4);
    fr::optimizer<> opt(fr::parameters_of(net), fr::sgd{0.9f, 5e-4f, true});
    fr::fit_options o;
    o.epochs = 3;
    o.progress = false;
    o.schedule = fr::lr_schedule::constant(0.01f);
    const auto r = fr::fit(net, opt, loader, nullptr, o, test_dropper{});
    REQUIRE(r.history.size() == 3);
    CHECK(r.history[0].executed == 8);
    CHECK(r.history[1].executed == 0);
    CHECK(r.history[2].executed == 4);
    CHECK(r.history[1].ops.empty());
    CHECK(r.history[1].bytes == 0);
    const auto full = fr::macs_of(r.history[0].ops);
    CHECK(full == doctest::Approx(8.0 * (64.0 * 2 * 416520 + 64.0 * (416520 - 117600) + 3.0 * 61706)).epsilon(1e-12));
    CHECK(fr::macs_of(r.history[2].ops) == full / 2);
    // the nominal step count still advances over dropped batches
    CHECK(r.history[2].step == 24);
}

} // TEST_SUITE
