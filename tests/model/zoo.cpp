// The model zoo and composition: shapes, hand-computed parameter counts,
// naming, save/load, and a finite-difference check through whole networks.

#include <doctest/doctest.h>

#include <frugal/layers/activation.hpp>
#include <frugal/layers/batchnorm.hpp>
#include <frugal/layers/conv2d.hpp>
#include <frugal/layers/dense.hpp>
#include <frugal/layers/pool.hpp>
#include <frugal/model/sequential.hpp>
#include <frugal/model/zoo/lenet.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/model/zoo/vgg.hpp>
#include <frugal/optim/sgd.hpp>

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
} // namespace

TEST_SUITE("model/zoo") {

TEST_CASE("lenet5 has the classic 61706 parameters and maps both image sizes to 10 logits") {
    auto a = fr::lenet5(1, 28);
    CHECK(count_parameters(a) == 156 + 2416 + 48120 + 10164 + 850);
    CHECK(a.output_shape({4, 1, 28, 28}) == fr::shape4{4, 10, 1, 1});
    auto b = fr::lenet5(3, 32);
    CHECK(count_parameters(b) == 456 + 2416 + 48120 + 10164 + 850);
    CHECK(b.output_shape({2, 3, 32, 32}) == fr::shape4{2, 10, 1, 1});
    CHECK_THROWS_AS((void)fr::lenet5(1, 30), fr::error);
}

TEST_CASE("cifar resnet-20 parameter count by hand") {
    auto net = fr::cifar_resnet(20);
    // stem conv + bn; stage 1: 3 blocks of two 16x16x3x3 convs and two bn;
    // stage 2: first block 16->32 with a 1x1 projection, then 2 blocks; stage 3 likewise
    const std::size_t stem = 1 * 16 * 9 + 32;
    const std::size_t stage1 = 3 * (2 * 16 * 16 * 9 + 2 * 32);
    const std::size_t stage2 = (16 * 32 * 9 + 32 * 32 * 9 + 2 * 64 + 16 * 32 + 64) + 2 * (2 * 32 * 32 * 9 + 2 * 64);
    const std::size_t stage3 = (32 * 64 * 9 + 64 * 64 * 9 + 2 * 128 + 32 * 64 + 128) + 2 * (2 * 64 * 64 * 9 + 2 * 128);
    const std::size_t head = 64 * 10 + 10;
    CHECK(count_parameters(net) == stem + stage1 + stage2 + stage3 + head);
    CHECK(count_parameters(net) == 272186);
    CHECK(net.output_shape({8, 1, 28, 28}) == fr::shape4{8, 10, 1, 1});
    auto rgb = fr::cifar_resnet(38, 3, 100);
    CHECK(rgb.get<2>().size() == 18);
    CHECK(rgb.output_shape({2, 3, 32, 32}) == fr::shape4{2, 100, 1, 1});
    CHECK_THROWS_AS((void)fr::cifar_resnet(21), fr::error);
    for (std::size_t depth : {20u, 38u, 56u, 74u, 110u}) {
        CHECK(fr::resnet_blocks_per_stage(depth) == (depth - 2) / 6);
    }
}

TEST_CASE("vgg16 for 28 and 32 pixel images") {
    auto a = fr::vgg16(1, 28);
    auto& units = a.get<0>();
    REQUIRE(units.size() == 13);
    std::size_t pools = 0;
    for (auto& u : units) {
        pools += u.pooled() ? 1 : 0;
    }
    CHECK(pools == 4); // 28 -> 14 -> 7 -> 3 -> 1
    CHECK(a.output_shape({2, 1, 28, 28}) == fr::shape4{2, 10, 1, 1});
    auto b = fr::vgg16(3, 32);
    std::size_t pools32 = 0;
    for (auto& u : b.get<0>()) {
        pools32 += u.pooled() ? 1 : 0;
    }
    CHECK(pools32 == 5);
    // conv weights: sum of in*out*9 over the 13 convolutions, + bn + head
    std::size_t expected = 0, in = 1;
    for (const std::size_t w : fr::vgg16_config()) {
        if (w != 0) {
            expected += in * w * 9 + 2 * w;
            in = w;
        }
    }
    expected += 512 * 10 + 10;
    CHECK(count_parameters(a) == expected);
}

TEST_CASE("children are named by their path") {
    auto net = fr::cifar_resnet(20);
    std::vector<std::string> names;
    for (const auto& p : fr::parameters_of(net)) {
        names.push_back(p.name);
    }
    CHECK(names.front() == "0.conv2d.weight");
    CHECK(std::find(names.begin(), names.end(), "2.3.shortcut.conv.weight") != names.end());
    CHECK(std::find(names.begin(), names.end(), "2.8.bn2.gamma") != names.end());
    CHECK(names.back() == "4.dense.bias");
}

TEST_CASE("a whole small network passes the finite-difference check") {
    // max pooling before the ReLU: after it, windows of exact zeros would tie
    // and the finite difference would straddle a kink
    using net_t = fr::sequential<fr::conv2d, fr::batchnorm, fr::max_pool, fr::relu, fr::conv2d, fr::relu, fr::flatten,
                                 fr::dense>;
    net_t net(fr::conv2d(2, 4, 3, {1, 1, true}), fr::batchnorm(4), fr::max_pool(2), fr::relu{},
              fr::conv2d(4, 3, 3, {2, 1, false}), fr::relu{}, fr::flatten{}, fr::dense(3 * 2 * 2, 5));
    fr::rng g(21);
    net.reset_parameters(g);
    // A first-layer weight moves every activation downstream: a small step keeps
    // the finite difference from straddling ReLU kinks.
    gradcheck::options o;
    o.h = 2e-4;
    o.atol = 4e-3;
    {
        INFO("small sequential network");
        gradcheck::check(net, gradcheck::random_tensor({3, 2, 8, 8}, g), o);
    }
    // and a whole (shallow) ResNet with its projection shortcuts
    INFO("resnet-8");
    auto resnet = fr::cifar_resnet(8, 1, 4, 5, 4);
    gradcheck::check(resnet, gradcheck::random_tensor({3, 1, 8, 8}, g), o);
}

TEST_CASE("a model saves and loads exactly and refuses another model's archive") {
    auto a = fr::cifar_resnet(20, 1, 10, 1);
    auto b = fr::cifar_resnet(20, 1, 10, 2);
    fr::archive_writer w;
    a.save(w);
    fr::archive_reader r(w.bytes(), "memory");
    b.load(r);
    const auto pa = fr::parameters_of(a), pb = fr::parameters_of(b);
    for (std::size_t i = 0; i < pa.size(); ++i) {
        CHECK(std::equal(pa[i].value.begin(), pa[i].value.end(), pb[i].value.begin()));
    }
    auto other = fr::cifar_resnet(38);
    fr::archive_reader r2(w.bytes(), "memory");
    CHECK_THROWS_AS(other.load(r2), fr::io_error);
    auto lenet = fr::lenet5();
    fr::archive_reader r3(w.bytes(), "memory");
    CHECK_THROWS_AS(lenet.load(r3), fr::io_error);
}

} // TEST_SUITE
