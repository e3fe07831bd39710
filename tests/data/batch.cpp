// Normalization, crop and flip (frugal/data/transform.hpp) and the stateless
// batch_loader (frugal/data/batch.hpp), on synthetic in-memory data sets.

#include <doctest/doctest.h>

#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <set>
#include <string>
#include <type_traits>
#include <vector>

#include <frugal/data/batch.hpp>
#include <frugal/data/transform.hpp>

namespace fr = frugal;

// a loader cannot be built on a temporary data set
static_assert(!std::is_constructible_v<fr::batch_loader, fr::image_dataset&&, fr::normalization, fr::batch_options>);
static_assert(std::is_constructible_v<fr::batch_loader, const fr::image_dataset&, fr::normalization, fr::batch_options>);
static_assert(fr::crop_flip{} == fr::crop_flip{0, 0, false});
static_assert(!fr::augmentation{}.enabled() && fr::augmentation{4, false}.enabled() && fr::augmentation{0, true}.enabled());

namespace {

/// n random images of c x h x w; channel k has bytes in [16 k, 16 k + 128).
fr::image_dataset random_dataset(std::size_t n, std::size_t c, std::size_t h, std::size_t w, std::uint64_t seed) {
    fr::image_dataset d;
    d.images = fr::u8tensor4::from_shape({n, c, h, w});
    d.labels = frugal::tensor<std::uint8_t, 1>::from_shape({n});
    fr::rng r(seed);
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t k = 0; k < c; ++k) {
            for (std::size_t y = 0; y < h; ++y) {
                for (std::size_t x = 0; x < w; ++x) {
                    d.images(i, k, y, x) = static_cast<std::uint8_t>(16 * k + r.below(128));
                }
            }
        }
        d.labels(i) = static_cast<std::uint8_t>(r.below(10));
    }
    d.classes = 10;
    d.name = "random";
    return d;
}

/// n single-channel 2x2 images whose first two pixels hold the sample index
/// (low byte, high byte); the label is the index mod 10.
fr::image_dataset indexed_dataset(std::size_t n) {
    fr::image_dataset d;
    d.images = fr::u8tensor4::from_shape({n, 1, 2, 2});
    d.labels = frugal::tensor<std::uint8_t, 1>::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) {
        d.images(i, 0, 0, 0) = static_cast<std::uint8_t>(i & 0xff);
        d.images(i, 0, 0, 1) = static_cast<std::uint8_t>(i >> 8);
        d.images(i, 0, 1, 0) = 7;
        d.images(i, 0, 1, 1) = 200;
        d.labels(i) = static_cast<std::uint8_t>(i % 10);
    }
    d.classes = 10;
    d.name = "indexed";
    return d;
}

/// The sample index stored in image i of a batch of indexed_dataset under
/// normalization::identity (x = byte / 255).
std::size_t index_of(const fr::batch& b, std::size_t i) {
    const auto lo = static_cast<std::size_t>(std::lround(b.x(i, 0, 0, 0) * 255.0f));
    const auto hi = static_cast<std::size_t>(std::lround(b.x(i, 0, 0, 1) * 255.0f));
    return lo + 256 * hi;
}

bool bit_identical(const fr::batch& a, const fr::batch& b) {
    return a.x.shape() == b.x.shape() && a.y == b.y &&
           std::memcmp(a.x.data(), b.x.data(), a.x.size() * sizeof(float)) == 0;
}

} // namespace

TEST_SUITE("data/batch") {

TEST_CASE("normalization from a data set gives per-channel mean 0 and std 1") {
    const fr::image_dataset d = random_dataset(64, 3, 8, 8, 1);
    const fr::normalization norm = fr::normalization::from_dataset(d);
    REQUIRE(norm.channels() == 3);
    // channel k is uniform on [16 k, 16 k + 127]: mean (16 k + 63.5) / 255
    for (std::size_t k = 0; k < 3; ++k) {
        CAPTURE(k);
        CHECK(norm.mean()[k] == doctest::Approx((16.0 * static_cast<double>(k) + 63.5) / 255.0).epsilon(0.02));
    }
    fr::batch_loader loader(d, norm, fr::batch_options::evaluation(64));
    REQUIRE(loader.batches_per_epoch() == 1);
    fr::batch b;
    loader.fill(0, 0, b);
    REQUIRE(b.x.shape()[0] == 64);
    for (std::size_t k = 0; k < 3; ++k) {
        double sum = 0.0, sq = 0.0;
        std::size_t count = 0;
        for (std::size_t i = 0; i < 64; ++i) {
            for (std::size_t y = 0; y < 8; ++y) {
                for (std::size_t x = 0; x < 8; ++x) {
                    const double v = b.x(i, k, y, x);
                    sum += v;
                    sq += v * v;
                    ++count;
                }
            }
        }
        const double mean = sum / static_cast<double>(count);
        const double var = sq / static_cast<double>(count) - mean * mean;
        CAPTURE(k);
        CHECK(std::abs(mean) < 1e-5);
        CHECK(std::sqrt(var) == doctest::Approx(1.0).epsilon(1e-5));
    }
}

TEST_CASE("a given normalization maps each byte as (v / 255 - mean) / std") {
    const fr::normalization norm({0.5f, 0.25f}, {0.25f, 2.0f});
    REQUIRE(norm.channels() == 2);
    for (int v : {0, 1, 127, 128, 255}) {
        CAPTURE(v);
        CHECK(norm(0, static_cast<std::uint8_t>(v)) == doctest::Approx((v / 255.0 - 0.5) / 0.25).epsilon(1e-6));
        CHECK(norm.table(1)[v] == doctest::Approx((v / 255.0 - 0.25) / 2.0).epsilon(1e-6));
    }
    CHECK(fr::normalization::identity(1)(0, 255) == 1.0f);
    CHECK(fr::normalization::identity(1)(0, 0) == 0.0f);
    CHECK_THROWS_AS(fr::normalization({0.5f}, {0.0f}), fr::error);
    CHECK_THROWS_AS(fr::normalization({0.5f, 0.5f}, {1.0f}), fr::error);
    CHECK_THROWS_AS(fr::normalization({}, {}), fr::error);
    CHECK_THROWS_AS(fr::normalization({NAN}, {1.0f}), fr::error);
    // a constant channel gets standard deviation 1 instead of a division by 0
    fr::image_dataset flat = random_dataset(2, 1, 2, 2, 3);
    std::fill(flat.images.begin(), flat.images.end(), std::uint8_t{51});
    const auto fn = fr::normalization::from_dataset(flat);
    CHECK(fn.stddev()[0] == 1.0f);
    CHECK(fn(0, 51) == doctest::Approx(0.0).epsilon(1e-6));
}

TEST_CASE("crop with padding 0 and flip disabled is the identity after normalization") {
    const fr::image_dataset d = random_dataset(5, 3, 6, 7, 2);
    const fr::normalization norm = fr::normalization::from_dataset(d);
    const fr::image_shape s{3, 6, 7};
    std::vector<float> expected(s.size()), got(s.size());
    fr::rng r(9);
    for (std::size_t i = 0; i < 5; ++i) {
        for (std::size_t rep = 0; rep < 10; ++rep) {
            const fr::crop_flip t = fr::draw_crop_flip(fr::augmentation{0, false}, r);
            CHECK(t == fr::crop_flip{});
            fr::normalize_sample(d.sample(i), s, norm, expected.data());
            fr::transform_sample(d.sample(i), s, norm, t, got.data());
            CHECK(got == expected);
        }
        // and equals the normalization table applied pixel by pixel
        bool same = true;
        for (std::size_t k = 0; k < s.size(); ++k) {
            same = same && expected[k] == norm(k / (6 * 7), d.sample(i)[k]);
        }
        CHECK(same);
    }
    // a loader with padding 0 and no flip gives the evaluation batches
    fr::batch_options o = fr::batch_options::evaluation(2);
    o.augment = {0, false};
    o.seed = 77;
    fr::batch_loader a(d, norm, o);
    fr::batch_loader e(d, norm, fr::batch_options::evaluation(2));
    fr::batch ba, be;
    for (std::size_t b = 0; b < a.batches_per_epoch(); ++b) {
        a.fill(4, b, ba);
        e.fill(0, b, be);
        CHECK(bit_identical(ba, be));
    }
}

TEST_CASE("flipping twice is the identity") {
    const fr::image_dataset d = random_dataset(3, 3, 5, 6, 4);
    const fr::normalization norm = fr::normalization::from_dataset(d);
    const fr::image_shape s{3, 5, 6};
    std::vector<float> plain(s.size()), flipped(s.size());
    for (std::size_t i = 0; i < 3; ++i) {
        for (const std::ptrdiff_t dx : {-2, 0, 1}) {
            CAPTURE(i);
            CAPTURE(dx);
            fr::transform_sample(d.sample(i), s, norm, {1, dx, false}, plain.data());
            fr::transform_sample(d.sample(i), s, norm, {1, dx, true}, flipped.data());
            CHECK(flipped != plain);
            std::vector<float> twice = flipped;
            fr::flip_horizontal(twice.data(), s); // the flip in transform_sample is a mirror of the crop
            CHECK(twice == plain);
            fr::flip_horizontal(twice.data(), s);
            CHECK(twice == flipped);
        }
    }
    std::vector<float> odd = {1, 2, 3, 4, 5, 6}; // 1 x 2 x 3
    fr::flip_horizontal(odd.data(), {1, 2, 3});
    CHECK(odd == std::vector<float>{3, 2, 1, 6, 5, 4});
}

TEST_CASE("a hand-made 1x4x4 image cropped at a known offset gives the hand-computed result") {
    // bytes 1 .. 16, row-major
    std::vector<std::uint8_t> img(16);
    for (std::size_t i = 0; i < 16; ++i) {
        img[i] = static_cast<std::uint8_t>(i + 1);
    }
    const fr::normalization norm({0.5f}, {0.25f});
    const fr::image_shape s{1, 4, 4};
    auto n = [&](int v) { return v == 0 ? 0.0f : norm(0, static_cast<std::uint8_t>(v)); }; // 0 = padding
    auto run = [&](fr::crop_flip t) {
        std::vector<float> out(16, -99.0f);
        fr::transform_sample(img.data(), s, norm, t, out.data());
        return out;
    };
    auto expect = [&](std::initializer_list<int> bytes_or_pad) {
        std::vector<float> e;
        for (int v : bytes_or_pad) {
            e.push_back(n(v));
        }
        return e;
    };
    SUBCASE("padding 1, crop corner (0, 2) of the padded 6x6 image: dy = -1, dx = +1") {
        CHECK(run({-1, 1, false}) == expect({0, 0, 0, 0,    //
                                             2, 3, 4, 0,    //
                                             6, 7, 8, 0,    //
                                             10, 11, 12, 0}));
        CHECK(run({-1, 1, true}) == expect({0, 0, 0, 0,    //
                                            0, 4, 3, 2,    //
                                            0, 8, 7, 6,    //
                                            0, 12, 11, 10}));
    }
    SUBCASE("padding 1, crop corner (2, 0): dy = +1, dx = -1") {
        CHECK(run({1, -1, false}) == expect({0, 5, 6, 7,    //
                                             0, 9, 10, 11,  //
                                             0, 13, 14, 15, //
                                             0, 0, 0, 0}));
    }
    SUBCASE("padding 2, crop corner (4, 4): only pixel 16 remains, at the top left") {
        CHECK(run({2, 2, false}) == expect({11, 12, 0, 0, //
                                            15, 16, 0, 0, //
                                            0, 0, 0, 0,   //
                                            0, 0, 0, 0}));
    }
    SUBCASE("a shift past the image gives all zeros") {
        CHECK(run({0, 5, false}) == std::vector<float>(16, 0.0f));
        CHECK(run({-4, 0, true}) == std::vector<float>(16, 0.0f));
    }
    SUBCASE("padded pixels are 0 after normalization, not the normalized byte 0") {
        const auto out = run({-1, 0, false});
        CHECK(out[0] == 0.0f);
        CHECK(norm(0, 0) == doctest::Approx(-2.0));
        CHECK(out[4] == norm(0, 1));
    }
}

TEST_CASE("crop offsets are uniform on [-p, p] and flips happen half the time") {
    fr::rng r(5);
    const fr::augmentation a{2, true};
    std::vector<int> dy(5, 0), dx(5, 0);
    int flips = 0;
    int outside = 0;
    const int n = 20000;
    for (int i = 0; i < n; ++i) {
        const fr::crop_flip t = fr::draw_crop_flip(a, r);
        if (t.dy < -2 || t.dy > 2 || t.dx < -2 || t.dx > 2) {
            ++outside;
            continue;
        }
        ++dy[static_cast<std::size_t>(t.dy + 2)];
        ++dx[static_cast<std::size_t>(t.dx + 2)];
        flips += t.flip;
    }
    REQUIRE(outside == 0);
    for (std::size_t k = 0; k < 5; ++k) {
        CAPTURE(k);
        CHECK(std::abs(dy[k] - n / 5) < 300); // about 5 standard deviations
        CHECK(std::abs(dx[k] - n / 5) < 300);
    }
    CHECK(std::abs(flips - n / 2) < 400);
}

TEST_CASE("the same seed epoch and batch give bit-identical batches") {
    const fr::image_dataset d = random_dataset(50, 3, 8, 8, 6);
    const fr::normalization norm = fr::normalization::from_dataset(d);
    fr::batch_options o;
    o.batch_size = 8;
    o.seed = 1234;
    o.augment = {2, true};
    INFO("seed " << o.seed);
    fr::batch_loader loader(d, norm, o);
    fr::batch first, again, other;
    loader.fill(3, 2, first);
    loader.fill(0, 5, other); // other epochs and batches in between
    loader.fill(7, 2, other);
    loader.fill(3, 4, other);
    loader.fill(3, 2, again);
    CHECK(bit_identical(first, again));
    // a new loader, as after a restart, gives the same batch
    fr::batch_loader resumed(d, norm, o);
    fr::batch fresh;
    resumed.fill(3, 2, fresh);
    CHECK(bit_identical(first, fresh));
    // another seed or another epoch does not
    fr::batch_options o2 = o;
    o2.seed = 1235;
    fr::batch_loader reseeded(d, norm, o2);
    reseeded.fill(3, 2, other);
    CHECK(!bit_identical(first, other));
    loader.fill(4, 2, other);
    CHECK(!bit_identical(first, other));
}

TEST_CASE("different epochs give different permutations and the order is a pure function of seed and epoch") {
    const fr::image_dataset d = indexed_dataset(100);
    fr::batch_options o;
    o.batch_size = 10;
    o.seed = 99;
    fr::batch_loader loader(d, fr::normalization::identity(1), o);
    const std::vector<std::size_t> e0(loader.order(0).begin(), loader.order(0).end());
    const std::vector<std::size_t> e1(loader.order(1).begin(), loader.order(1).end());
    const std::vector<std::size_t> e0_again(loader.order(0).begin(), loader.order(0).end());
    CHECK(e0 != e1);
    CHECK(e0 == e0_again);
    std::vector<std::size_t> sorted = e0;
    std::sort(sorted.begin(), sorted.end());
    std::vector<std::size_t> identity(100);
    for (std::size_t i = 0; i < 100; ++i) {
        identity[i] = i;
    }
    CHECK(sorted == identity);
    CHECK(e0 != identity);
    // the batches follow the order
    fr::batch b;
    loader.fill(1, 3, b);
    for (std::size_t i = 0; i < b.size(); ++i) {
        CHECK(index_of(b, i) == e1[30 + i]);
        CHECK(static_cast<std::size_t>(b.y(i)) == e1[30 + i] % 10);
    }
    // without shuffle the order is the data set's
    fr::batch_loader plain(d, fr::normalization::identity(1), fr::batch_options::evaluation(10));
    CHECK(std::equal(identity.begin(), identity.end(), plain.order(5).begin()));
}

TEST_CASE("every sample appears exactly once per epoch") {
    const fr::image_dataset d = indexed_dataset(103);
    for (const bool shuffle : {true, false}) {
        for (const bool drop_last : {false, true}) {
            CAPTURE(shuffle);
            CAPTURE(drop_last);
            fr::batch_options o;
            o.batch_size = 10;
            o.shuffle = shuffle;
            o.drop_last = drop_last;
            o.seed = 2024;
            fr::batch_loader loader(d, fr::normalization::identity(1), o);
            for (std::size_t epoch = 0; epoch < 3; ++epoch) {
                CAPTURE(epoch);
                std::vector<int> seen(103, 0);
                fr::batch b;
                std::size_t total = 0;
                for (std::size_t k = 0; k < loader.batches_per_epoch(); ++k) {
                    loader.fill(epoch, k, b);
                    for (std::size_t i = 0; i < b.size(); ++i) {
                        const std::size_t idx = index_of(b, i);
                        REQUIRE(idx < 103);
                        ++seen[idx];
                        CHECK(b.y(i) == static_cast<std::int32_t>(idx % 10));
                    }
                    total += b.size();
                }
                CHECK(total == (drop_last ? 100u : 103u));
                CHECK(total == loader.samples_per_epoch());
                CHECK(std::count(seen.begin(), seen.end(), 1) == static_cast<long>(total));
                CHECK(std::count(seen.begin(), seen.end(), 0) == static_cast<long>(103 - total));
            }
        }
    }
}

TEST_CASE("the last partial batch has the right size") {
    const fr::image_dataset d = indexed_dataset(103);
    fr::batch_options o;
    o.batch_size = 10;
    fr::batch_loader keep(d, fr::normalization::identity(1), o);
    CHECK(keep.batches_per_epoch() == 11);
    CHECK(keep.batch_size(9) == 10);
    CHECK(keep.batch_size(10) == 3);
    fr::batch b;
    keep.fill(0, 10, b);
    CHECK(b.size() == 3);
    CHECK(b.x.shape()[0] == 3);
    CHECK(b.x.shape()[1] == 1);
    CHECK(b.x.shape()[2] == 2);
    CHECK(b.x.shape()[3] == 2);
    CHECK(b.y.size() == 3);
    o.drop_last = true;
    fr::batch_loader drop(d, fr::normalization::identity(1), o);
    CHECK(drop.batches_per_epoch() == 10);
    drop.fill(0, 9, b);
    CHECK(b.size() == 10);
    // an exact multiple has no partial batch either way
    const fr::image_dataset d100 = indexed_dataset(100);
    fr::batch_loader exact(d100, fr::normalization::identity(1), fr::batch_options::evaluation(25));
    CHECK(exact.batches_per_epoch() == 4);
    exact.fill(0, 3, b);
    CHECK(b.size() == 25);
}

TEST_CASE("fill reuses the batch buffers when the shape is unchanged") {
    const fr::image_dataset d = random_dataset(40, 3, 8, 8, 8);
    fr::batch_options o;
    o.batch_size = 16;
    o.augment = {4, true};
    fr::batch_loader loader(d, fr::normalization::from_dataset(d), o);
    fr::batch b;
    loader.fill(0, 0, b);
    const float* x = b.x.data();
    const std::int32_t* y = b.y.data();
    loader.fill(0, 1, b);
    CHECK(b.x.data() == x);
    CHECK(b.y.data() == y);
    loader.fill(5, 0, b);
    CHECK(b.x.data() == x);
    CHECK(b.y.data() == y);
    loader.fill(5, 2, b); // the partial batch: 8 samples
    CHECK(b.size() == 8);
    const float* x8 = b.x.data();
    loader.fill(6, 2, b);
    CHECK(b.x.data() == x8);
}

TEST_CASE("augmented batches stay within the padded crops of their samples") {
    // with shuffle off, sample i of batch 0 is sample i; every output pixel is
    // either 0 (padding) or the normalized value of some pixel of that sample
    const fr::image_dataset d = random_dataset(4, 1, 6, 6, 10);
    const fr::normalization norm = fr::normalization::identity(1);
    fr::batch_options o = fr::batch_options::evaluation(4);
    o.augment = {2, true};
    o.seed = 3;
    fr::batch_loader loader(d, norm, o);
    fr::batch b;
    loader.fill(0, 0, b);
    fr::rng r(o.seed, fr::detail::augment_stream(0, 0));
    std::vector<float> expected(36);
    for (std::size_t i = 0; i < 4; ++i) {
        const fr::crop_flip t = fr::draw_crop_flip(o.augment, r);
        fr::transform_sample(d.sample(i), {1, 6, 6}, norm, t, expected.data());
        CAPTURE(i);
        CHECK(std::equal(expected.begin(), expected.end(), b.x.data() + i * 36));
    }
}

TEST_CASE("bad arguments throw frugal::error with a clear message") {
    const fr::image_dataset d = indexed_dataset(20);
    const fr::normalization id = fr::normalization::identity(1);
    SUBCASE("batch size 0") {
        fr::batch_options o;
        o.batch_size = 0;
        CHECK_THROWS_WITH_AS(fr::batch_loader(d, id, o), doctest::Contains("batch size 0"), fr::error);
    }
    SUBCASE("batch index past the end") {
        fr::batch_loader loader(d, id, fr::batch_options::evaluation(8));
        REQUIRE(loader.batches_per_epoch() == 3);
        fr::batch b;
        CHECK_NOTHROW(loader.fill(0, 2, b));
        CHECK_THROWS_WITH_AS(loader.fill(0, 3, b), doctest::Contains("batch index 3 is past the end"), fr::error);
        CHECK_THROWS_AS(loader.fill(1, 1000, b), fr::error);
    }
    SUBCASE("drop_last with a batch larger than the data set") {
        fr::batch_options o;
        o.batch_size = 21;
        o.drop_last = true;
        CHECK_THROWS_WITH_AS(fr::batch_loader(d, id, o), doctest::Contains("leaves no batch"), fr::error);
        o.drop_last = false;
        fr::batch_loader one(d, id, o);
        CHECK(one.batches_per_epoch() == 1);
    }
    SUBCASE("normalization with the wrong number of channels") {
        CHECK_THROWS_AS(fr::batch_loader(d, fr::normalization::identity(3), fr::batch_options{}), fr::error);
        CHECK_THROWS_AS(fr::batch_loader(d, fr::normalization{}, fr::batch_options{}), fr::error);
    }
    SUBCASE("an invalid data set") {
        fr::image_dataset bad = indexed_dataset(5);
        bad.labels(3) = 10;
        CHECK_THROWS_WITH_AS(fr::batch_loader(bad, id, fr::batch_options{}), doctest::Contains("sample 3"), fr::error);
        fr::image_dataset empty;
        empty.classes = 10;
        CHECK_THROWS_AS(fr::batch_loader(empty, id, fr::batch_options{}), fr::error);
    }
}

} // TEST_SUITE
