// Physical shrink: the shrunk model computes what the masked model computes,
// has the hand-computed parameter count and forward multiply-accumulates,
// trains, saves and reloads; masks of another model are refused.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <type_traits>
#include <vector>

#include <frugal/layers/batchnorm.hpp>
#include <frugal/layers/loss.hpp>
#include <frugal/model/zoo/dfq_resnet.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/model/zoo/vgg.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/prune/mask.hpp>
#include <frugal/prune/shrink.hpp>
#include <frugal/prune/slimming.hpp>

#include "layers/gradcheck.hpp"

namespace fr = frugal;

namespace {

template <class M>
std::size_t count_parameters(M& m) {
    std::size_t n = 0;
    for (const auto& p : fr::parameters_of(m)) {
        n += p.value.size();
    }
    return n;
}

/// Random batch-norm scales (both signs), shifts and running statistics, so
/// that every channel computes something different.
template <class M>
void randomize_batchnorms(M& net, std::uint64_t seed) {
    fr::rng g(seed);
    net.for_each_layer([&](auto& l) {
        if constexpr (std::is_same_v<std::decay_t<decltype(l)>, fr::batchnorm>) {
            for (std::size_t c = 0; c < l.channels(); ++c) {
                const float s = g.uniform() < 0.5f ? -1.0f : 1.0f;
                l.gamma()(c) = s * (0.2f + g.uniform());
                l.beta()(c) = g.uniform() - 0.5f;
                l.running_mean()(c) = g.uniform() - 0.5f;
                l.running_var()(c) = 0.5f + g.uniform();
            }
        }
    });
}

template <class M>
fr::tensor4 eval(M& net, const fr::tensor4& x, fr::cost_meter* meter = nullptr) {
    fr::context ctx;
    ctx.mode = fr::run_mode::eval;
    ctx.meter = meter;
    return net.forward(ctx, x);
}

double max_abs(const fr::tensor4& t) {
    double m = 0.0;
    for (const float v : t) {
        m = std::max(m, static_cast<double>(std::fabs(v)));
    }
    return m;
}

double max_diff(const fr::tensor4& a, const fr::tensor4& b) {
    REQUIRE(a.shape() == b.shape());
    double m = 0.0;
    for (std::size_t i = 0; i < a.size(); ++i) {
        m = std::max(m, static_cast<double>(std::fabs(a.data()[i] - b.data()[i])));
    }
    return m;
}

/// Forward multiply-accumulates of one evaluation pass.
template <class M>
std::uint64_t forward_macs(M& net, const fr::tensor4& x) {
    fr::cost_meter meter;
    (void)eval(net, x, &meter);
    std::uint64_t n = 0;
    for (const auto& l : meter.layers()) {
        n += l[fr::phase::forward].count(fr::op_kind::mac);
    }
    return n;
}

/// One SGD step with the slimming rule on a random batch.
template <class M>
void train_step(M& net, fr::rng& g) {
    fr::optimizer<fr::slimming<>, fr::sgd> opt(fr::parameters_of(net), fr::sgd{0.9f, 1e-4f, false});
    fr::context ctx;
    const fr::tensor4 x = gradcheck::random_tensor({4, 1, 8, 8}, g);
    frugal::tensor<std::int32_t, 1> y = frugal::tensor<std::int32_t, 1>::from_shape({4});
    for (std::size_t i = 0; i < 4; ++i) {
        y(i) = static_cast<std::int32_t>(i % 3);
    }
    fr::softmax_cross_entropy loss;
    const float l = loss.forward(net.forward(ctx, x), y);
    CHECK(std::isfinite(l));
    net.backward(ctx, loss.backward());
    opt.step(ctx, 0.05f);
}

template <class M>
void check_reload(M& trained, M& fresh, const fr::tensor4& x) {
    fr::archive_writer w;
    trained.save(w);
    fr::archive_reader r(w.bytes(), "memory");
    fresh.load(r);
    CHECK(r.remaining() == 0);
    CHECK(max_diff(eval(trained, x), eval(fresh, x)) == 0.0);
}

/// Sets the scales of the prunable layers: pruned channels get 0.01, 0.02, ...
/// (all below the threshold), kept ones 1, 2, ...; `keep[i]` channels of layer
/// i survive (its first ones).
template <class M>
void set_scales(M& net, const std::vector<std::size_t>& keep) {
    std::size_t layer = 0;
    float small = 0.01f, big = 1.0f;
    fr::prune_rules<M>::for_each(net, [&](fr::batchnorm& bn) {
        for (std::size_t c = 0; c < bn.channels(); ++c) {
            bn.gamma()(c) = c < keep[layer] ? big++ : small;
            small += c < keep[layer] ? 0.0f : 0.01f;
        }
        ++layer;
    });
}

} // namespace

TEST_SUITE("prune/shrink") {

TEST_CASE("a shrunk vgg computes what the masked vgg computes") {
    const std::vector<std::size_t> cfg = {6, 0, 8, 8, 0, 10};
    auto net = fr::vgg(cfg, 2, 8, 5, 3);
    randomize_batchnorms(net, 11);
    fr::rng g(5);
    const fr::tensor4 x = gradcheck::random_tensor({3, 2, 8, 8}, g);
    const fr::tensor4 full = eval(net, x);
    const auto mask = fr::ticket_mask(net, 0.5);
    REQUIRE(mask.kept() < mask.size());
    auto small = fr::shrink(net, mask);
    auto& units = small.get<0>();
    for (std::size_t i = 0; i < units.size(); ++i) {
        CHECK(units[i].conv().out_channels() == mask.kept(i));
        CHECK(units[i].bn().channels() == mask.kept(i));
        CHECK(units[i].pooled() == net.get<0>()[i].pooled());
    }
    CHECK(small.get<2>().in_features() == mask.kept(units.size() - 1));
    fr::apply_mask(net, mask);
    const fr::tensor4 masked = eval(net, x);
    const fr::tensor4 shrunk = eval(small, x);
    CHECK(max_diff(masked, full) > 1e-3); // the pruned channels mattered
    CHECK(max_diff(masked, shrunk) <= 1e-5 * (1.0 + max_abs(masked)));
}

TEST_CASE("a shrunk resnet computes what the masked resnet computes") {
    auto net = fr::cifar_resnet(14, 1, 5, 4, 4); // 2 blocks per stage, widths 4 8 16
    randomize_batchnorms(net, 12);
    fr::rng g(6);
    const fr::tensor4 x = gradcheck::random_tensor({3, 1, 8, 8}, g);
    const fr::tensor4 full = eval(net, x);
    const auto mask = fr::ticket_mask(net, 0.5);
    REQUIRE(mask.layers() == 6);
    auto small = fr::shrink(net, mask);
    auto& blocks = small.get<2>();
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        CHECK(blocks[i].mid_channels() == mask.kept(i));
        CHECK(blocks[i].out_channels() == net.get<2>()[i].out_channels());
        CHECK(blocks[i].has_projection() == net.get<2>()[i].has_projection());
    }
    fr::apply_mask(net, mask);
    const fr::tensor4 masked = eval(net, x);
    const fr::tensor4 shrunk = eval(small, x);
    CHECK(max_diff(masked, full) > 1e-3);
    CHECK(max_diff(masked, shrunk) <= 1e-5 * (1.0 + max_abs(masked)));
}

TEST_CASE("a resnet of quantized blocks (a low-precision search) shrinks to the float network it masks") {
    // at full precision a quantized_conv is its float master convolution, bit for bit, so the masked
    // quantized network and the shrunk float one compute the same function
    auto net = fr::cifar_resnet<fr::quantized_block>(14, 1, 5, 4, 4);
    randomize_batchnorms(net, 13);
    fr::set_model_precision(net, fr::bit_widths::full());
    fr::rng g(8);
    const fr::tensor4 x = gradcheck::random_tensor({3, 1, 8, 8}, g);
    const auto mask = fr::ticket_mask(net, 0.5);
    auto small = fr::shrink(net, mask);
    static_assert(std::is_same_v<decltype(small), fr::cifar_resnet_t<fr::basic_block<>>>);
    for (std::size_t i = 0; i < small.get<2>().size(); ++i) {
        CHECK(small.get<2>()[i].mid_channels() == mask.kept(i));
    }
    fr::apply_mask(net, mask);
    const fr::tensor4 masked = eval(net, x);
    const fr::tensor4 shrunk = eval(small, x);
    CHECK(max_diff(masked, shrunk) <= 1e-5 * (1.0 + max_abs(masked)));
    // at 8 bits the masked network computes nearly the same (the quantization error only)
    fr::set_model_precision(net, fr::bit_widths{8, 8, 8});
    const fr::tensor4 masked8 = eval(net, x);
    CHECK(max_diff(masked8, shrunk) <= 0.1 * (1.0 + max_abs(masked)));
}

TEST_CASE("a vgg of quantized convolutions (a low-precision search) shrinks to the float network it masks") {
    const std::vector<std::size_t> cfg = {6, 0, 8, 8, 0, 10};
    auto net = fr::vgg<fr::quantized_conv_maker>(cfg, 1, 8, 5, 3);
    static_assert(std::is_same_v<decltype(net.get<0>()[0].conv()), fr::quantized_conv&>);
    randomize_batchnorms(net, 14);
    fr::set_model_precision(net, fr::bit_widths::full());
    fr::rng g(9);
    const fr::tensor4 x = gradcheck::random_tensor({3, 1, 8, 8}, g);
    const auto mask = fr::ticket_mask(net, 0.5);
    REQUIRE(mask.layers() == 4);
    REQUIRE(mask.kept() < mask.size());
    auto small = fr::shrink(net, mask);
    static_assert(std::is_same_v<decltype(small), fr::vgg_t>);
    for (std::size_t i = 0; i < small.get<0>().size(); ++i) {
        CHECK(small.get<0>()[i].conv().out_channels() == mask.kept(i));
    }
    // the same float network built from the master weights, masked
    auto plain = fr::vgg(cfg, 1, 8, 5, 3);
    for (std::size_t i = 0; i < plain.get<0>().size(); ++i) {
        auto& to = plain.get<0>()[i];
        const auto& from = net.get<0>()[i];
        to.conv().weight() = from.conv().float_conv().weight();
        to.bn().gamma() = from.bn().gamma();
        to.bn().beta() = from.bn().beta();
        to.bn().running_mean() = from.bn().running_mean();
        to.bn().running_var() = from.bn().running_var();
    }
    plain.get<2>().weight() = net.get<2>().weight();
    plain.get<2>().bias() = net.get<2>().bias();
    fr::apply_mask(plain, mask);
    fr::apply_mask(net, mask);
    const fr::tensor4 masked_float = eval(plain, x);
    const fr::tensor4 masked = eval(net, x); // full precision: the master convolutions
    const fr::tensor4 shrunk = eval(small, x);
    CHECK(max_diff(masked, masked_float) == 0.0);
    CHECK(max_diff(masked, shrunk) <= 1e-5 * (1.0 + max_abs(masked)));
    // at 8 bits (the search) the masked network computes nearly the same: the quantization error only
    fr::set_model_precision(net, fr::bit_widths{8, 8, 8});
    const fr::tensor4 masked8 = eval(net, x);
    CHECK(max_diff(masked8, shrunk) > 0.0);
    CHECK(max_diff(masked8, shrunk) <= 0.1 * (1.0 + max_abs(masked)));
}

TEST_CASE("parameter counts and forward multiply-accumulates of shrunk models by hand") {
    fr::rng g(7);
    const fr::tensor4 x = gradcheck::random_tensor({2, 1, 8, 8}, g);
    {
        INFO("vgg 4 pool 6 pool 8 on 1 x 8 x 8, 3 classes");
        auto net = fr::vgg({4, 0, 6, 0, 8}, 1, 8, 3);
        // conv 1->4 + bn, conv 4->6 + bn, conv 6->8 + bn, dense 8->3
        CHECK(count_parameters(net) == 36 + 8 + 216 + 12 + 432 + 16 + 24 + 3);
        // batch 2; 8x8, pool, 4x4, pool, 2x2; batch norm: one MAC per value in evaluation
        CHECK(forward_macs(net, x) == 2 * 4 * 64 * 9 + 2 * 4 * 64 + 2 * 6 * 16 * 4 * 9 + 2 * 6 * 16 +
                                          2 * 8 * 4 * 6 * 9 + 2 * 8 * 4 + 2 * 8 * 3);
        set_scales(net, {3, 4, 5}); // 6 of 18 pruned: floor(18 * 0.3) + 1
        const auto mask = fr::ticket_mask(net, 0.3);
        REQUIRE(mask.kept_per_layer() == std::vector<std::size_t>{3, 4, 5});
        auto small = fr::shrink(net, mask);
        CHECK(count_parameters(small) == 27 + 6 + 108 + 8 + 180 + 10 + 15 + 3);
        CHECK(forward_macs(small, x) == 2 * 3 * 64 * 9 + 2 * 3 * 64 + 2 * 4 * 16 * 3 * 9 + 2 * 4 * 16 +
                                            2 * 5 * 4 * 4 * 9 + 2 * 5 * 4 + 2 * 5 * 3);
    }
    {
        INFO("resnet-8 of width 4 on 1 x 8 x 8, 3 classes");
        auto net = fr::cifar_resnet(8, 1, 3, 1, 4);
        set_scales(net, {2, 5, 9}); // 12 of 28 pruned: floor(28 * 0.4) + 1
        const auto mask = fr::ticket_mask(net, 0.4);
        REQUIRE(mask.kept_per_layer() == std::vector<std::size_t>{2, 5, 9});
        auto small = fr::shrink(net, mask);
        const std::size_t stem = 36 + 8;
        const std::size_t b0 = 4 * 2 * 9 + 4 + 2 * 4 * 9 + 8;                      // 4 -> (2) -> 4
        const std::size_t b1 = 4 * 5 * 9 + 10 + 5 * 8 * 9 + 16 + 4 * 8 + 16;       // 4 -> (5) -> 8, projection
        const std::size_t b2 = 8 * 9 * 9 + 18 + 9 * 16 * 9 + 32 + 8 * 16 + 32;     // 8 -> (9) -> 16, projection
        CHECK(count_parameters(small) == stem + b0 + b1 + b2 + 16 * 3 + 3);
        CHECK(count_parameters(small) == 3019);
        // stem 8x8; block 0 at 8x8; block 1 at 4x4; block 2 at 2x2 (batch 2)
        const std::uint64_t m_stem = 2 * 4 * 64 * 9 + 2 * 4 * 64;
        const std::uint64_t m0 = 2 * 2 * 64 * 4 * 9 + 2 * 2 * 64 + 2 * 4 * 64 * 2 * 9 + 2 * 4 * 64;
        const std::uint64_t m1 = 2 * 5 * 16 * 4 * 9 + 2 * 5 * 16 + 2 * 8 * 16 * 5 * 9 + 2 * 8 * 16 + 2 * 8 * 16 * 4 +
                                 2 * 8 * 16;
        const std::uint64_t m2 = 2 * 9 * 4 * 8 * 9 + 2 * 9 * 4 + 2 * 16 * 4 * 9 * 9 + 2 * 16 * 4 + 2 * 16 * 4 * 8 +
                                 2 * 16 * 4;
        CHECK(forward_macs(small, x) == m_stem + m0 + m1 + m2 + 2 * 16 * 3);
        CHECK(forward_macs(small, x) == 60296);
    }
}

TEST_CASE("a shrunk model trains and reloads into a model built from the mask") {
    fr::rng g(8);
    const fr::tensor4 x = gradcheck::random_tensor({2, 1, 8, 8}, g);
    {
        INFO("vgg");
        const std::vector<std::size_t> cfg = {4, 0, 6, 0, 8};
        auto net = fr::vgg(cfg, 1, 8, 3);
        randomize_batchnorms(net, 13);
        const auto mask = fr::ticket_mask(net, 0.5);
        auto small = fr::shrink(net, mask);
        const fr::tensor4 before = eval(small, x);
        train_step(small, g);
        CHECK(max_diff(before, eval(small, x)) > 0.0);
        auto fresh = fr::vgg(fr::pruned_vgg_config(cfg, mask), 1, 8, 3, 99);
        check_reload(small, fresh, x);
        fr::archive_writer w;
        small.save(w);
        fr::archive_reader r(w.bytes(), "memory");
        CHECK_THROWS_AS(net.load(r), fr::io_error); // the unpruned shape refuses it
    }
    {
        INFO("resnet");
        auto net = fr::cifar_resnet(8, 1, 3, 1, 4);
        randomize_batchnorms(net, 14);
        const auto mask = fr::ticket_mask(net, 0.5);
        auto small = fr::shrink(net, mask);
        const fr::tensor4 before = eval(small, x);
        train_step(small, g);
        CHECK(max_diff(before, eval(small, x)) > 0.0);
        auto fresh = fr::pruned_cifar_resnet(8, mask.kept_per_layer(), 1, 3, 99, 4);
        check_reload(small, fresh, x);
        fr::archive_writer w;
        small.save(w);
        fr::archive_reader r(w.bytes(), "memory");
        CHECK_THROWS_AS(net.load(r), fr::io_error);
    }
}

TEST_CASE("a vgg of quantized convolutions trains, saves and reloads; a float vgg refuses its checkpoint") {
    // what examples/early_bird --search-bits 8 relies on to resume a VGG search
    fr::rng g(10);
    const fr::tensor4 x = gradcheck::random_tensor({2, 1, 8, 8}, g);
    const std::vector<std::size_t> cfg = {4, 0, 6, 0, 8};
    auto net = fr::vgg<fr::quantized_conv_maker>(cfg, 1, 8, 3);
    fr::set_model_precision(net, fr::bit_widths{8, 8, 8});
    const fr::tensor4 before = eval(net, x);
    train_step(net, g);
    CHECK(max_diff(before, eval(net, x)) > 0.0);
    auto fresh = fr::vgg<fr::quantized_conv_maker>(cfg, 1, 8, 3, 99);
    fr::set_model_precision(fresh, fr::bit_widths{8, 8, 8});
    check_reload(net, fresh, x);
    fr::archive_writer w;
    net.save(w);
    fr::archive_reader r(w.bytes(), "memory");
    auto plain = fr::vgg(cfg, 1, 8, 3);
    CHECK_THROWS_AS(plain.load(r), fr::io_error);
}

TEST_CASE("shrink refuses a mask of another model") {
    auto a = fr::vgg({4, 0, 6}, 1, 8, 3);
    auto b = fr::vgg({4, 0, 8}, 1, 8, 3);
    const auto mb = fr::ticket_mask(b, 0.5);
    CHECK_THROWS_AS((void)fr::shrink(a, mb), fr::prune_error);
    auto r = fr::cifar_resnet(8, 1, 3, 1, 4);
    CHECK_THROWS_AS((void)fr::shrink(r, mb), fr::prune_error);
    auto emptied = fr::ticket_mask(a, 0.0);
    std::fill(emptied.keep.begin(), emptied.keep.begin() + 4, std::uint8_t{0});
    CHECK_THROWS_AS((void)fr::shrink(a, emptied), fr::prune_error);
    CHECK_THROWS_AS((void)fr::pruned_vgg_config({4, 0, 8}, fr::ticket_mask(a, 0.5)), fr::prune_error);
    CHECK_THROWS_AS((void)fr::pruned_cifar_resnet(8, {1, 2}), fr::prune_error);
}

} // TEST_SUITE
