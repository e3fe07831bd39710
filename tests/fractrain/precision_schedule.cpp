// Precision schedules: PFQ's turning-point indicator on hand-made loss
// curves (where it must fire, and that it never fires before its window is
// full), the eps shrink after the first two turning points only, fixed
// switch steps, CPT's cosine widths against hand-computed values, the
// checkpoint round trip, bad input, and fit() driving a quantized ResNet
// through the stages (the meter sees each stage's widths) and resuming a
// scheduled run bit for bit.

#include <doctest/doctest.h>

#include <cstring>
#include <vector>

#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/layers/quantized_conv.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/train/precision_schedule.hpp>
#include <frugal/train/trainer.hpp>

#include "temp_dir.hpp"

namespace fr = frugal;

namespace {

/// Feeds one loss per step (steps 0, 1, ...) and returns the stage after each.
std::vector<std::size_t> stages_after(fr::progressive_precision& p, const std::vector<double>& losses,
                                      std::uint64_t first_step = 0) {
    std::vector<std::size_t> out;
    for (std::size_t i = 0; i < losses.size(); ++i) {
        p.observe(first_step + i, losses[i]);
        out.push_back(p.stage_at(first_step + i + 1));
    }
    return out;
}

} // namespace

TEST_SUITE("fractrain/precision_schedule") {

TEST_CASE("PFQ: the turning point fires where the hand computation says, eps shrinks twice") {
    fr::pfq_indicator ind;
    ind.chunk = 1;
    ind.scale_chunks = 3; // L_scale = (4 + 3 + 2) / 3 = 3
    fr::progressive_precision p(fr::progressive_precision::default_stages(), ind);
    CHECK(p.at(0) == fr::bit_widths{3, 3, 6});
    // eps 0.05: a window is flat when every |L_i - L_5| <= 0.15
    // windows: (4 3 2 1.5 1.2) .. (1.2 1.1 1.05 1.04 1.03): 0.17 > 0.15; (1.1 .. 1.02): 0.08: fires at the 10th
    const std::vector<double> first{4, 3, 2, 1.5, 1.2, 1.1, 1.05, 1.04, 1.03, 1.02};
    const auto s1 = stages_after(p, first);
    CHECK(s1 == std::vector<std::size_t>{0, 0, 0, 0, 0, 0, 0, 0, 0, 1});
    CHECK(p.loss_scale() == doctest::Approx(3.0));
    CHECK(p.eps() == doctest::Approx(0.015)); // x alpha 0.3
    REQUIRE(p.turning_points() == std::vector<std::uint64_t>{10});
    CHECK(p.at(10) == fr::bit_widths{4, 4, 6});
    // eps 0.015: threshold 0.045; the window was cleared, so 4 flat losses are not enough
    const auto s2 = stages_after(p, {1.0, 1.0, 1.0, 1.0}, 10);
    CHECK(s2 == std::vector<std::size_t>{1, 1, 1, 1});
    // a 0.05 step is above 0.045: the window (1 1 1 1 0.95) is not flat; then (1 1 1 0.95 0.95) neither
    const auto s3 = stages_after(p, {0.95, 0.95, 0.95, 0.95, 0.95}, 14);
    CHECK(s3 == std::vector<std::size_t>{1, 1, 1, 1, 2}); // (0.95 x 5) at step 18
    CHECK(p.turning_points() == std::vector<std::uint64_t>{10, 19});
    CHECK(p.eps() == doctest::Approx(0.0045));
    // eps 0.0045: threshold 0.0135; a drift of 0.02 per chunk keeps every window unflat until five
    // equal losses fill it ((0.89 0.87 0.87 0.87 0.87) is still 0.02 apart); the third turning point
    // leaves eps alone
    const auto s4 = stages_after(p, {0.95, 0.93, 0.91, 0.89, 0.87, 0.87, 0.87, 0.87, 0.87}, 19);
    CHECK(s4 == std::vector<std::size_t>{2, 2, 2, 2, 2, 2, 2, 2, 3});
    CHECK(p.turning_points() == std::vector<std::uint64_t>{10, 19, 28});
    CHECK(p.eps() == doctest::Approx(0.0045));
    CHECK(p.at(28) == fr::bit_widths{8, 8, 8});
    // the last stage stays
    (void)stages_after(p, std::vector<double>(20, 0.5), 28);
    CHECK(p.turning_points().size() == 3);
    CHECK(p.stage_at(1000) == 3);
}

TEST_CASE("PFQ: never before the window is full; chunk means are true means") {
    fr::pfq_indicator ind;
    ind.chunk = 3;
    fr::progressive_precision p(fr::progressive_precision::default_stages(), ind);
    // constant loss: flat from the start, but the window needs 5 chunks = 15 steps
    const auto s = stages_after(p, std::vector<double>(15, 2.0));
    for (std::size_t i = 0; i < 14; ++i) {
        CHECK(s[i] == 0);
    }
    CHECK(s[14] == 1);
    // chunks alternate within (3, 1, 2) -> mean 2 each: flat; a loss window of raw values would not be
    fr::progressive_precision q(fr::progressive_precision::default_stages(), ind);
    std::vector<double> zig;
    for (int c = 0; c < 5; ++c) {
        zig.insert(zig.end(), {3.0, 1.0, 2.0});
    }
    CHECK(stages_after(q, zig).back() == 1);
    // but a chunk whose mean is off by more than eps * L_scale blocks it
    fr::progressive_precision r(fr::progressive_precision::default_stages(), ind);
    zig[1] = 0.5; // first chunk's mean 1.833: |1.833 - 2| / 1.97 = 0.085 > 0.05
    CHECK(stages_after(r, zig).back() == 0);
}

TEST_CASE("PFQ at fixed steps, CPT's cosine widths, bad input") {
    const auto p = fr::progressive_precision::at_steps(fr::progressive_precision::default_stages(), {10, 20, 35});
    CHECK(p.at(0) == fr::bit_widths{3, 3, 6});
    CHECK(p.at(9) == fr::bit_widths{3, 3, 6});
    CHECK(p.at(10) == fr::bit_widths{4, 4, 6});
    CHECK(p.at(34) == fr::bit_widths{6, 6, 8});
    CHECK(p.at(35) == fr::bit_widths{8, 8, 8});
    CHECK(p.at(1u << 30) == fr::bit_widths{8, 8, 8});

    // b(t) = ceil(3 + 2.5 (1 - cos(pi t / 8))): 3, 3.19, 3.73, 4.54, 5.5, 6.46, 7.27, 7.81
    const fr::cyclic_precision c(3, 8, 8, 6);
    const int expected[] = {3, 4, 4, 5, 6, 7, 8, 8, 3, 4};
    for (std::uint64_t t = 0; t < 10; ++t) {
        CHECK(c.forward_bits(t) == expected[t]);
        CHECK(c.at(t) == fr::bit_widths{expected[t], expected[t], 6});
    }
    const fr::cyclic_precision flat(8, 8, 5);
    CHECK(flat.at(3) == fr::bit_widths{8, 8, 8});

    CHECK_THROWS_WITH_AS(fr::progressive_precision::at_steps(fr::progressive_precision::default_stages(), {10, 5, 20}),
                         doctest::Contains("must increase"), fr::error);
    CHECK_THROWS_WITH_AS(fr::progressive_precision::at_steps(fr::progressive_precision::default_stages(), {10}),
                         doctest::Contains("need 3 switch steps"), fr::error);
    CHECK_THROWS_WITH_AS(fr::progressive_precision({{3, 3, 6}, {9, 8, 8}}), doctest::Contains("stage 2"), fr::error);
    CHECK_THROWS_WITH_AS(fr::progressive_precision(std::vector<fr::bit_widths>{}), doctest::Contains("at least one stage"), fr::error);
    fr::pfq_indicator bad;
    bad.chunk = 0;
    CHECK_THROWS_WITH_AS(fr::progressive_precision(fr::progressive_precision::default_stages(), bad),
                         doctest::Contains("chunk >= 1"), fr::error);
    CHECK_THROWS_WITH_AS(fr::cyclic_precision(5, 3, 10), doctest::Contains("b_min"), fr::error);
    CHECK_THROWS_WITH_AS(fr::cyclic_precision(3, 8, 0), doctest::Contains("cycle"), fr::error);
    CHECK_THROWS_WITH_AS(fr::fixed_precision({8, 8, 17}), doctest::Contains("errors 17) must be in [2, 8]"), fr::error);
    CHECK(fr::fixed_precision({8, 8, 12}).at(0).error == 12); // 9..16-bit errors run as two 8-bit limbs
    CHECK(fr::fixed_precision(fr::bit_widths::full()).at(5).is_full());
}

TEST_CASE("PFQ: a saved and reloaded indicator continues exactly like the original") {
    fr::pfq_indicator ind;
    ind.chunk = 2;
    ind.scale_chunks = 4;
    fr::progressive_precision a(fr::progressive_precision::default_stages(), ind);
    std::vector<double> curve;
    for (int i = 0; i < 200; ++i) {
        curve.push_back(1.0 + 2.0 / (1.0 + 0.1 * i) + 0.01 * ((i * 7) % 3));
    }
    (void)stages_after(a, std::vector<double>(curve.begin(), curve.begin() + 57));
    fr::archive_writer w;
    a.save(w);
    fr::progressive_precision b(fr::progressive_precision::default_stages(), ind);
    fr::archive_reader r(w.bytes(), "test");
    b.load(r);
    const std::vector<double> rest(curve.begin() + 57, curve.end());
    const auto sa = stages_after(a, rest, 57);
    const auto sb = stages_after(b, rest, 57);
    CHECK(sa == sb);
    CHECK(a.turning_points() == b.turning_points());
    REQUIRE(!a.turning_points().empty());
    CHECK(a.turning_points().back() > 57); // the curve flattens further: a switch after the reload is compared
    // a schedule with another number of stages refuses the checkpoint
    fr::progressive_precision c({{4, 4, 8}, {8, 8, 8}}, ind);
    fr::archive_reader r2(w.bytes(), "test");
    CHECK_THROWS_WITH_AS(c.load(r2), doctest::Contains("(4 stages), this one 1 (2 stages)"), fr::io_error);
}

TEST_CASE("fit drives a quantized ResNet through the stages and resumes a scheduled run bit for bit") {
    using qblock = fr::basic_block<fr::quantized_conv_maker>;
    const auto data = fr::subset(fr::load_fashion_mnist(fr::data_split::train), 128, 5);
    fr::batch_options bo;
    bo.batch_size = 32; // 4 steps per epoch
    bo.seed = 3;
    fr::batch_loader loader(data, fr::normalization::from_dataset(data), bo);

    struct outcome {
        std::vector<float> weights;
        fr::fit_result fit;
        std::vector<std::uint64_t> turns;
    };
    auto run = [&](const std::filesystem::path& dir, std::uint64_t stop_after, bool indicator) {
        auto net = fr::cifar_resnet<qblock>(8, 1, 10, 4, 4);
        fr::optimizer<> opt(fr::parameters_of(net), fr::sgd{0.9f, 1e-4f, true});
        fr::fit_options o;
        o.epochs = 3;
        o.out_dir = dir;
        o.seed = 2;
        o.progress = false;
        o.stop_after = stop_after;
        o.schedule = fr::lr_schedule::constant(0.02f);
        fr::pfq_indicator ind;
        ind.chunk = 1;
        ind.window = 2;
        ind.eps = 10.0; // flat after every 2 chunks: a turning point every 2 steps
        auto pfq = indicator ? fr::progressive_precision(fr::progressive_precision::default_stages(), ind)
                             : fr::progressive_precision::at_steps(fr::progressive_precision::default_stages(), {4, 8, 10});
        outcome out;
        out.fit = fr::fit(net, opt, loader, nullptr, o, fr::every_batch{}, &pfq);
        for (const auto& p : fr::parameters_of(net)) {
            out.weights.insert(out.weights.end(), p.value.begin(), p.value.end());
        }
        out.turns = pfq.turning_points();
        return out;
    };

    SUBCASE("the meter sees each stage's widths in its epochs") {
        test::temp_dir d;
        const auto r = run(d.path(), 0, false);
        REQUIRE(r.fit.history.size() == 3);
        auto has = [](const fr::op_counts& ops, int a, int w) {
            for (const auto& [k, n] : ops) {
                if (k.kind == fr::op_kind::mac && k.a.bits == a && k.b.bits == w && !k.a.floating && n > 0) {
                    return true;
                }
            }
            return false;
        };
        // epoch 1 = steps 0-3: stage 1 only (forward a3 x w3)
        CHECK(has(r.fit.history[0].ops, 3, 3));
        CHECK_FALSE(has(r.fit.history[0].ops, 4, 4));
        // epoch 2 = steps 4-7: stage 2 only
        CHECK(has(r.fit.history[1].ops, 4, 4));
        CHECK_FALSE(has(r.fit.history[1].ops, 3, 3));
        // epoch 3 = steps 8-11: stage 3 (8, 9) and stage 4 (10, 11)
        CHECK(has(r.fit.history[2].ops, 6, 6));
        CHECK(has(r.fit.history[2].ops, 8, 8));
    }
    SUBCASE("stopped after one epoch and resumed: same weights, same turning points") {
        test::temp_dir a, b;
        const auto whole = run(a.path(), 0, true);
        CHECK(whole.turns == std::vector<std::uint64_t>{2, 4, 6});
        (void)run(b.path(), 1, true);
        const auto rest = run(b.path(), 0, true);
        CHECK(rest.fit.resumed);
        CHECK(rest.turns == whole.turns);
        REQUIRE(rest.weights.size() == whole.weights.size());
        CHECK(std::memcmp(rest.weights.data(), whole.weights.data(), whole.weights.size() * sizeof(float)) == 0);
    }
}

} // TEST_SUITE
