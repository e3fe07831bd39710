// Channel masks (one global threshold, the one-channel floor), which layers
// of VGG and ResNet are prunable, mask distance, the early-bird detector on
// synthetic mask sequences, and the distance heat map.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <set>
#include <string>
#include <vector>

#include <frugal/model/zoo/resnet.hpp>
#include <frugal/model/zoo/vgg.hpp>
#include <frugal/prune/heatmap.hpp>
#include <frugal/prune/mask.hpp>

namespace fr = frugal;

namespace {

/// A two-layer mask (4 + 6 channels) from a 0/1 string such as "1111 000000".
fr::channel_mask bits(const std::string& s) {
    fr::channel_mask m;
    m.names = {"a", "b"};
    m.offsets = {0, 4, 10};
    for (const char c : s) {
        if (c == '0' || c == '1') {
            m.keep.push_back(c == '1' ? 1 : 0);
        }
    }
    REQUIRE(m.keep.size() == 10);
    return m;
}

/// A one-layer mask of 20 channels: all kept except the listed ones.
fr::channel_mask flipped(const std::set<std::size_t>& off) {
    fr::channel_mask m;
    m.names = {"layer"};
    m.offsets = {0, 20};
    m.keep.assign(20, 1);
    for (const auto i : off) {
        m.keep[i] = 0;
    }
    return m;
}

std::string keep_string(const fr::channel_mask& m) {
    std::string s;
    for (std::size_t i = 0; i < m.layers(); ++i) {
        if (i > 0) {
            s += ' ';
        }
        for (const auto k : m.layer(i)) {
            s += k != 0 ? '1' : '0';
        }
    }
    return s;
}

fr::channel_mask from_scales(const std::vector<std::vector<float>>& g, double ratio,
                             fr::empty_layer policy = fr::empty_layer::keep_one) {
    std::vector<std::span<const float>> spans;
    std::vector<std::string> names;
    for (std::size_t i = 0; i < g.size(); ++i) {
        spans.emplace_back(g[i].data(), g[i].size());
        names.push_back(std::string(1, static_cast<char>('A' + i)));
    }
    return fr::channel_mask_from_scales(spans, names, ratio, policy);
}

std::size_t count(const std::string& hay, const std::string& needle) {
    std::size_t n = 0;
    for (auto p = hay.find(needle); p != std::string::npos; p = hay.find(needle, p + 1)) {
        ++n;
    }
    return n;
}

} // namespace

TEST_SUITE("prune/mask") {

TEST_CASE("mask distance of hand-made masks is the normalized Hamming distance") {
    const auto a = bits("1111 000000");
    CHECK(fr::mask_distance(a, a) == 0.0);
    CHECK(fr::mask_distance(a, bits("1101 100000")) == doctest::Approx(0.2).epsilon(1e-12));
    CHECK(fr::mask_distance(bits("1101 100000"), a) == doctest::Approx(0.2).epsilon(1e-12));
    CHECK(fr::mask_distance(a, bits("0000 111111")) == 1.0);
    CHECK(fr::mask_distance(bits("1010 101010"), bits("0101 010101")) == 1.0);
    CHECK(fr::mask_distance(bits("1010 101010"), bits("1010 101011")) == doctest::Approx(0.1).epsilon(1e-12));
    // masks of different layouts cannot be compared
    auto other = a;
    other.offsets = {0, 5, 10};
    CHECK_THROWS_AS((void)fr::mask_distance(a, other), fr::shape_error);
    CHECK_THROWS_AS((void)fr::mask_distance(a, flipped({})), fr::shape_error);
}

TEST_CASE("one global threshold over all layers at the hand-computed position") {
    const std::vector<std::vector<float>> g = {{0.5f, -0.1f, 0.3f, 0.05f}, {0.2f, -0.7f, 0.01f, 0.4f, 0.15f, 0.25f}};
    // |gamma| sorted: .01 .05 .1 .15 .2 .25 .3 .4 .5 .7; N = 10
    // p = 0.5: thr = sorted[5] = 0.25, keep |gamma| > 0.25
    const auto m = from_scales(g, 0.5);
    CHECK(m.threshold == 0.25f);
    CHECK(keep_string(m) == "1010 010100");
    CHECK(m.kept() == 4);
    CHECK(m.kept_per_layer() == std::vector<std::size_t>{2, 2});
    CHECK(m.kept_channels(1) == std::vector<std::size_t>{1, 3});
    CHECK(m.clamped.empty());
    CHECK(m.warnings.empty());
    // p = 0.3: thr = sorted[3] = 0.15; a per-layer threshold would keep 3 of A
    const auto m3 = from_scales(g, 0.3);
    CHECK(m3.threshold == 0.15f);
    CHECK(keep_string(m3) == "1010 110101");
    // p = 0.7: 10 * 0.7 is 7 (not 6.999...): thr = sorted[7] = 0.4
    const auto m7 = from_scales(g, 0.7);
    CHECK(m7.threshold == 0.4f);
    CHECK(keep_string(m7) == "1000 010000");
    // p = 0 keeps everything
    CHECK(keep_string(from_scales(g, 0.0)) == "1111 111111");
    // ratios outside [0, 1) and non-finite scales are refused
    CHECK_THROWS_AS((void)from_scales(g, 1.0), fr::prune_error);
    CHECK_THROWS_AS((void)from_scales(g, -0.1), fr::prune_error);
    CHECK_THROWS_AS((void)from_scales(g, std::nan("")), fr::prune_error);
    CHECK_THROWS_AS((void)from_scales({{1.0f, std::nanf("")}}, 0.5), fr::prune_error);
}

TEST_CASE("a ratio that would empty a layer keeps its largest channel with a message or is rejected") {
    const std::vector<std::vector<float>> g = {{0.01f, -0.03f, 0.02f}, {1, 2, 3, 4, 5}};
    // N = 8, p = 0.5: thr = sorted[4] = 2; nothing of A is above it
    const auto m = from_scales(g, 0.5);
    CHECK(keep_string(m) == "010 00111"); // A keeps |-0.03|, its largest
    REQUIRE(m.clamped == std::vector<std::size_t>{0});
    REQUIRE(m.warnings.size() == 1);
    CHECK(m.warnings[0].find("would remove every channel of A") != std::string::npos);
    CHECK(m.warnings[0].find("kept its channel 1") != std::string::npos);
    std::string what;
    try {
        (void)from_scales(g, 0.5, fr::empty_layer::reject);
    } catch (const fr::prune_error& e) {
        what = e.what();
    }
    CHECK(what.find("would remove every channel of A") != std::string::npos);
    // a ratio that leaves every layer a channel passes under reject too (thr = sorted[1] = 0.02)
    CHECK(keep_string(from_scales(g, 0.125, fr::empty_layer::reject)) == "010 11111");
}

TEST_CASE("vgg prunes every batch norm and resnet only the first one inside each block") {
    auto vgg = fr::vgg({4, 0, 6, 0, 8}, 1, 8, 3);
    const auto vm = fr::ticket_mask(vgg, 0.0);
    CHECK(vm.names == std::vector<std::string>{"0.0.bn", "0.1.bn", "0.2.bn"});
    CHECK(vm.offsets == std::vector<std::size_t>{0, 4, 10, 18});

    auto net = fr::cifar_resnet(8, 1, 3, 1, 4);
    auto& blocks = net.get<2>();
    // tiny scales everywhere except bn1: were the stem, bn2 or the shortcuts
    // prunable, their channels would be the ones to go
    net.get<1>().gamma().fill(1e-4f);
    float v = 1.0f;
    for (auto& b : blocks) {
        b.bn2().gamma().fill(1e-4f);
        if (b.has_projection()) {
            b.projection_bn().gamma().fill(1e-4f);
        }
        for (auto& x : b.bn1().gamma()) {
            x = v;
            v += 1.0f;
        }
    }
    const auto m = fr::ticket_mask(net, 0.5);
    CHECK(m.names == std::vector<std::string>{"2.0.bn1", "2.1.bn1", "2.2.bn1"});
    CHECK(m.offsets == std::vector<std::size_t>{0, 4, 12, 28});
    // 28 values 1..28: thr = sorted[14] = 15, the channels with gamma 16..28 stay
    CHECK(m.threshold == 15.0f);
    CHECK(m.kept_per_layer() == std::vector<std::size_t>{1, 1, 13});
    // blocks 0 (values 1..4) and 1 (5..12) lost everything: the floor kept
    // the largest channel of each
    CHECK(m.clamped == std::vector<std::size_t>{0, 1});
    CHECK(m.kept_channels(1) == std::vector<std::size_t>{7});
}

TEST_CASE("apply_mask zeroes the scale and shift of pruned channels only") {
    auto vgg = fr::vgg({4, 0, 6}, 1, 8, 3);
    auto& units = vgg.get<0>();
    const std::vector<float> g0 = {0.9f, 0.1f, 0.8f, 0.2f};
    const std::vector<float> g1 = {0.05f, 0.7f, 0.6f, 0.3f, 0.15f, 0.5f};
    std::copy(g0.begin(), g0.end(), units[0].bn().gamma().begin());
    std::copy(g1.begin(), g1.end(), units[1].bn().gamma().begin());
    units[0].bn().beta().fill(0.25f);
    units[1].bn().beta().fill(-0.5f);
    const auto m = fr::ticket_mask(vgg, 0.4); // N = 10, thr = sorted[4] = 0.3
    CHECK(keep_string(m) == "1010 011001");
    fr::apply_mask(vgg, m);
    for (std::size_t c = 0; c < 4; ++c) {
        CHECK(units[0].bn().gamma()(c) == (c % 2 == 0 ? g0[c] : 0.0f));
        CHECK(units[0].bn().beta()(c) == (c % 2 == 0 ? 0.25f : 0.0f));
    }
    const std::vector<int> keep1 = {0, 1, 1, 0, 0, 1};
    for (std::size_t c = 0; c < 6; ++c) {
        CHECK(units[1].bn().gamma()(c) == (keep1[c] != 0 ? g1[c] : 0.0f));
        CHECK(units[1].bn().beta()(c) == (keep1[c] != 0 ? -0.5f : 0.0f));
    }
    auto other = fr::vgg({4, 0, 6, 8}, 1, 8, 3);
    CHECK_THROWS_AS(fr::apply_mask(other, m), fr::prune_error);
}

TEST_CASE("the detector never fires before five masks") {
    fr::early_bird_detector d; // epsilon 0.1, window 5
    for (int i = 0; i < 4; ++i) {
        CHECK_FALSE(d.push(flipped({})));
        CHECK_FALSE(d.found());
        CHECK(d.last_distances().empty());
    }
    CHECK(d.push(flipped({}))); // five identical masks
    REQUIRE(d.found_at().has_value());
    CHECK(*d.found_at() == 4);
    CHECK(d.last_distances() == std::vector<double>{0.0, 0.0, 0.0, 0.0});

    fr::early_bird_detector three(0.1, 3);
    CHECK_FALSE(three.push(flipped({})));
    CHECK_FALSE(three.push(flipped({})));
    CHECK(three.push(flipped({})));
    CHECK_THROWS_AS(fr::early_bird_detector(0.1, 1), fr::prune_error);
    CHECK_THROWS_AS(d.push(bits("1111 111111")), fr::shape_error);
}

TEST_CASE("the detector fires exactly where every distance to the newest mask is within epsilon") {
    // 20 channels; mask i prunes the listed channels. Distances are counts / 20,
    // epsilon 0.1 = 2 channels.
    const std::vector<std::set<std::size_t>> seq = {
        {0, 1, 2, 3, 4, 5, 6, 7, 8, 9}, // 0
        {0, 1, 2, 3, 4, 5},             // 1
        {0, 1, 2},                      // 2
        {0, 1},                         // 3
        {0},                            // 4: FIFO full; 9/20 from mask 0
        {},                             // 5: 6/20 from mask 1
        {},                             // 6: consecutive distances all <= 1/20, but 3/20 from mask 2
        {1},                            // 7: 1, 2, 1, 1 of 20 from masks 3..6: fires (2/20 == epsilon counts)
        {5, 6, 7},                      // 8: far again
        {},                             // 9
    };
    fr::early_bird_detector d(0.1);
    std::vector<bool> fired;
    for (const auto& s : seq) {
        fired.push_back(d.push(flipped(s)));
        if (d.size() == 7) {
            CHECK(d.last_distances() == std::vector<double>{3.0 / 20, 2.0 / 20, 1.0 / 20, 0.0});
        }
        if (d.size() == 8) {
            CHECK(d.last_distances() == std::vector<double>{1.0 / 20, 2.0 / 20, 1.0 / 20, 1.0 / 20});
        }
    }
    CHECK(fired == std::vector<bool>{false, false, false, false, false, false, false, true, false, false});
    REQUIRE(d.found_at().has_value());
    CHECK(*d.found_at() == 7); // the first firing is remembered
    CHECK(d.found());

    // a stricter epsilon never fires on this sequence
    fr::early_bird_detector strict(0.09);
    bool any = false;
    for (const auto& s : seq) {
        any = strict.push(flipped(s)) || any;
    }
    CHECK_FALSE(any);
    CHECK_FALSE(strict.found());

    const auto dm = d.distance_matrix();
    REQUIRE(dm.size() == seq.size());
    CHECK(dm[0][5] == doctest::Approx(0.5));
    CHECK(dm[5][0] == dm[0][5]);
    CHECK(dm[8][9] == doctest::Approx(0.15));
    CHECK(dm[3][3] == 0.0);
}

TEST_CASE("the mask distance heat map has one cell per pair and marks the early-bird epoch") {
    const std::vector<std::vector<double>> d = {{0.0, 0.5, 0.25}, {0.5, 0.0, 0.125}, {0.25, 0.125, 0.0}};
    fr::heatmap_options o;
    o.title = "VGG <p=0.5> & more";
    o.highlight = 2;
    const std::string svg = fr::mask_distance_svg(d, o);
    CHECK(svg.rfind("<?xml", 0) == 0);
    CHECK(svg.size() > 7);
    CHECK(svg.substr(svg.size() - 7) == "</svg>\n");
    CHECK(count(svg, "<title>") == 9);
    CHECK(count(svg, "class=\"highlight\"") == 2);
    CHECK(svg.find("VGG &lt;p=0.5&gt; &amp; more") != std::string::npos);
    CHECK(svg.find("epoch 1 vs 2: 0.5000") != std::string::npos);
    // 0 is the darkest colour, the maximum the brightest
    CHECK(count(svg, "fill=\"#440154\"><title>") == 3);
    CHECK(count(svg, "fill=\"#fde725\"><title>") == 2);
    CHECK(fr::detail::heat_colour(0.0) == "#440154");
    CHECK(fr::detail::heat_colour(1.0) == "#fde725");
    o.highlight.reset();
    CHECK(count(fr::mask_distance_svg(d, o), "highlight") == 0);
    CHECK_THROWS_AS((void)fr::mask_distance_svg({{0.0, 1.0}}), fr::shape_error);
}

} // TEST_SUITE
