// Stochastic mini-batch dropping (SPEC §1.2(a)): the drop rate, determinism
// per (seed, epoch, batch), and both modes inside frugal::fit.

#include <doctest/doctest.h>

#include <cmath>
#include <cstdint>
#include <vector>

#include <frugal/data/batch.hpp>
#include <frugal/layers/dense.hpp>
#include <frugal/layers/layer.hpp>
#include <frugal/model/sequential.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/train/sampler.hpp>
#include <frugal/train/trainer.hpp>

namespace fr = frugal;

namespace {
/// A tiny in-memory data set: 64 images of 1 x 2 x 2, two classes.
fr::image_dataset toy_data() {
    fr::image_dataset d;
    d.name = "toy";
    d.classes = 2;
    d.images = fr::u8tensor4::from_shape({64, 1, 2, 2});
    d.labels = decltype(d.labels)::from_shape({64});
    fr::rng g(5);
    for (std::size_t i = 0; i < 64; ++i) {
        d.labels(i) = static_cast<std::uint8_t>(i % 2);
        for (std::size_t p = 0; p < 4; ++p) {
            d.images(i, 0, p / 2, p % 2) = static_cast<std::uint8_t>(g.below(128) + (i % 2) * 100);
        }
    }
    return d;
}
} // namespace

TEST_SUITE("e2train") {

TEST_CASE("smd drop rate is within 3 standard errors of p") {
    for (const double p : {0.5, 0.3, 0.8}) {
        CAPTURE(p);
        const fr::stochastic_drop s(p, 17);
        const std::uint64_t epochs = 40, per = 500;
        std::uint64_t dropped = 0;
        for (std::uint64_t e = 1; e <= epochs; ++e) {
            for (std::uint64_t b = 0; b < per; ++b) {
                dropped += s.take(e, b) ? 0 : 1;
            }
        }
        const double n = static_cast<double>(epochs * per);
        const double rate = static_cast<double>(dropped) / n;
        const double se = std::sqrt(p * (1.0 - p) / n);
        CHECK(std::fabs(rate - p) <= 3.0 * se);
    }
}

TEST_CASE("smd drops nothing at p 0 and everything at p 1") {
    const fr::stochastic_drop none(0.0, 3), all(1.0, 3);
    for (std::uint64_t b = 0; b < 1000; ++b) {
        CHECK(none.take(1, b));
        CHECK_FALSE(all.take(1, b));
    }
    CHECK_THROWS_AS(fr::stochastic_drop(1.5), fr::error);
}

TEST_CASE("smd gives the same sequence for the same seed and another for another seed") {
    const fr::stochastic_drop a(0.5, 42), b(0.5, 42), c(0.5, 43);
    std::vector<bool> sa, sb, sc, reversed;
    for (std::uint64_t e = 1; e <= 3; ++e) {
        for (std::uint64_t i = 0; i < 300; ++i) {
            sa.push_back(a.take(e, i));
            sb.push_back(b.take(e, i));
            sc.push_back(c.take(e, i));
        }
    }
    // asking in another order (as a resumed run does) changes nothing: no hidden state
    for (std::uint64_t e = 3; e >= 1; --e) {
        for (std::uint64_t i = 300; i-- > 0;) {
            reversed.insert(reversed.begin(), b.take(e, i));
        }
    }
    CHECK(sa == sb);
    CHECK(sa == reversed);
    CHECK(sa != sc);
    // epochs differ: batch i of epoch 1 and of epoch 2 are independent draws
    CHECK(std::vector<bool>(sa.begin(), sa.begin() + 300) != std::vector<bool>(sa.begin() + 300, sa.begin() + 600));
}

TEST_CASE("smd in fit runs only the batches the sampler takes and keeps nominal steps") {
    const auto data = toy_data();
    fr::batch_options bo;
    bo.batch_size = 4;
    fr::batch_loader loader(data, fr::normalization::from_dataset(data), bo);
    const std::uint64_t per = loader.batches_per_epoch();
    const fr::stochastic_drop smd(0.5, 7);

    auto run = [&](bool momentum_step, std::vector<float>& weights) {
        fr::sequential<fr::dense> net(fr::dense(4, 2));
        fr::rng g(1);
        net.reset_parameters(g);
        fr::optimizer<> opt(fr::parameters_of(net), fr::sgd{0.9f, 0.0f, false});
        fr::fit_options o;
        o.epochs = 2;
        o.progress = false;
        o.schedule = fr::lr_schedule::constant(0.1f);
        auto r = fr::fit(net, opt, loader, nullptr, o, fr::stochastic_drop(0.5, 7, momentum_step));
        weights.clear();
        for (const auto& p : fr::parameters_of(net)) {
            weights.insert(weights.end(), p.value.begin(), p.value.end());
        }
        return r;
    };
    std::vector<float> w_plain, w_momentum;
    const auto plain = run(false, w_plain);
    const auto momentum = run(true, w_momentum);
    std::uint64_t expected = 0;
    for (std::uint64_t i = 0; i < per; ++i) {
        expected += smd.take(1, i) ? 1 : 0;
    }
    REQUIRE(plain.history.size() == 2);
    CHECK(plain.history[0].executed == expected);
    CHECK(plain.history[0].nominal == per);
    CHECK(plain.history[1].step == 2 * per); // the schedule sees nominal iterations
    CHECK(momentum.history[0].executed == expected);
    // the forward of a dropped batch never ran: the dense layer's forward calls count executed batches only
    std::uint64_t forward_calls = 0, update_calls_plain = 0, update_calls_momentum = 0;
    for (const auto& l : plain.meter.layers()) {
        forward_calls += l[fr::phase::forward].calls;
        update_calls_plain += l[fr::phase::update].calls;
    }
    for (const auto& l : momentum.meter.layers()) {
        update_calls_momentum += l[fr::phase::update].calls;
    }
    const std::uint64_t executed = plain.history[0].executed + plain.history[1].executed;
    CHECK(forward_calls == executed);
    CHECK(update_calls_plain == executed);
    CHECK(update_calls_momentum == 2 * per); // a (zero-gradient) step for every nominal batch
    CHECK(w_plain != w_momentum);            // momentum kept moving the weights on dropped batches
}

} // TEST_SUITE
