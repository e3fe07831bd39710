// image_dataset from IDX files, subset(), the real Fashion-MNIST of the Debian
// package dataset-fashion-mnist, and the CIFAR-10/100 binary readers on small
// synthetic files.

#include <doctest/doctest.h>

#include <array>
#include <cstdint>
#include <cstdlib>
#include <filesystem>
#include <optional>
#include <string>
#include <vector>

#include <frugal/data/cifar.hpp>
#include <frugal/data/dataset.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/data/transform.hpp>

#include "data/files.hpp"

namespace fr = frugal;
using test::bytes;
using test::contains;

namespace {

/// Pixel (y, x) of image i in a synthetic IDX set.
std::uint8_t idx_pixel(std::size_t i, std::size_t y, std::size_t x) {
    return static_cast<std::uint8_t>(i * 31 + y * 5 + x);
}

/// Writes an N x H x W image file and an N label file; returns their paths.
std::pair<std::filesystem::path, std::filesystem::path> write_idx_set(const test::temp_dir& dir, const std::string& prefix,
                                                                      std::uint32_t n, std::uint32_t h, std::uint32_t w,
                                                                      const bytes& labels, bool gzip) {
    bytes pixels;
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t y = 0; y < h; ++y) {
            for (std::size_t x = 0; x < w; ++x) {
                pixels.push_back(idx_pixel(i, y, x));
            }
        }
    }
    const auto images = dir / (prefix + "-images-idx3-ubyte" + (gzip ? ".gz" : ""));
    const auto label_file = dir / (prefix + "-labels-idx1-ubyte" + (gzip ? ".gz" : ""));
    const bytes im = test::idx_bytes({n, h, w}, pixels);
    const bytes lb = test::idx_bytes({static_cast<std::uint32_t>(labels.size())}, labels);
    if (gzip) {
        test::write_gzip(images, im);
        test::write_gzip(label_file, lb);
    } else {
        test::write_raw(images, im);
        test::write_raw(label_file, lb);
    }
    return {images, label_file};
}

/// Pixel (c, y, x) of CIFAR record i.
std::uint8_t cifar_pixel(std::size_t i, std::size_t c, std::size_t y, std::size_t x) {
    return static_cast<std::uint8_t>(i * 101 + c * 37 + y * 3 + x * 7);
}

/// CIFAR records: the label bytes given per record, then the pixels (CHW).
bytes cifar_records(const std::vector<bytes>& labels, std::size_t first = 0) {
    bytes b;
    for (std::size_t r = 0; r < labels.size(); ++r) {
        b.insert(b.end(), labels[r].begin(), labels[r].end());
        for (std::size_t c = 0; c < 3; ++c) {
            for (std::size_t y = 0; y < 32; ++y) {
                for (std::size_t x = 0; x < 32; ++x) {
                    b.push_back(cifar_pixel(first + r, c, y, x));
                }
            }
        }
    }
    return b;
}

/// Images whose pixel (c, y, x) of sample i is cifar_pixel(i, c, y, x)?
bool cifar_pixels_match(const fr::image_dataset& d, std::size_t i, std::size_t record) {
    for (std::size_t c = 0; c < 3; ++c) {
        for (std::size_t y = 0; y < 32; ++y) {
            for (std::size_t x = 0; x < 32; ++x) {
                if (d.images(i, c, y, x) != cifar_pixel(record, c, y, x)) {
                    return false;
                }
            }
        }
    }
    return true;
}

/// Sets an environment variable for the lifetime of the object.
class scoped_env {
public:
    scoped_env(const char* name, const std::string& value) : name_(name) {
        if (const char* old = std::getenv(name)) {
            old_ = old;
        }
        ::setenv(name, value.c_str(), 1);
    }
    scoped_env(const scoped_env&) = delete;
    scoped_env& operator=(const scoped_env&) = delete;
    ~scoped_env() {
        if (old_) {
            ::setenv(name_, old_->c_str(), 1);
        } else {
            ::unsetenv(name_);
        }
    }

private:
    const char* name_;
    std::optional<std::string> old_;
};

} // namespace

TEST_SUITE("data/datasets") {

TEST_CASE("an IDX image and label pair becomes an N x 1 x H x W data set") {
    test::temp_dir dir;
    for (const bool gzip : {false, true}) {
        CAPTURE(gzip);
        const auto [images, labels] = write_idx_set(dir, gzip ? "gz" : "raw", 4, 3, 5, bytes{3, 0, 9, 1}, gzip);
        const fr::image_dataset d = fr::load_idx_dataset(images, labels, 10, "tiny");
        REQUIRE(d.size() == 4);
        CHECK(d.shape() == fr::shape4{4, 1, 3, 5});
        CHECK(d.classes == 10);
        CHECK(d.name == "tiny");
        CHECK(d.labels(0) == 3);
        CHECK(d.labels(2) == 9);
        bool all = true;
        for (std::size_t i = 0; i < 4; ++i) {
            for (std::size_t y = 0; y < 3; ++y) {
                for (std::size_t x = 0; x < 5; ++x) {
                    all = all && d.images(i, 0, y, x) == idx_pixel(i, y, x);
                }
            }
        }
        CHECK(all);
        CHECK(d.sample(2)[0] == idx_pixel(2, 0, 0));
        CHECK_NOTHROW(d.validate());
    }
}

TEST_CASE("mismatched image and label counts throw naming both files and both counts") {
    test::temp_dir dir;
    const auto [images, labels] = write_idx_set(dir, "a", 3, 2, 2, bytes{0, 1, 2, 3}, false);
    const std::string m = test::io_error_message([&] { (void)fr::load_idx_dataset(images, labels, 10, "bad"); });
    INFO(m);
    CHECK(contains(m, images.string()));
    CHECK(contains(m, labels.string()));
    CHECK(contains(m, "3 images"));
    CHECK(contains(m, "4 labels"));
}

TEST_CASE("a label out of range throws naming the file and the first bad index") {
    test::temp_dir dir;
    const auto [images, labels] = write_idx_set(dir, "a", 5, 2, 2, bytes{0, 9, 10, 12, 1}, true);
    const std::string m = test::io_error_message([&] { (void)fr::load_idx_dataset(images, labels, 10, "bad"); });
    INFO(m);
    CHECK(contains(m, labels.string()));
    CHECK(contains(m, "label 10 at index 2"));
    CHECK(contains(m, "expected < 10"));
    CHECK_NOTHROW((void)fr::load_idx_dataset(images, labels, 13, "ok with 13 classes"));
    CHECK_THROWS_AS((void)fr::load_idx_dataset(images, labels, 0, "no classes"), fr::error);
}

TEST_CASE("image files must be 3-d and label files 1-d") {
    test::temp_dir dir;
    const auto im4 = dir / "im4";
    const auto lb = dir / "lb";
    const auto lb2 = dir / "lb2";
    test::write_raw(im4, test::idx_bytes({2, 1, 2, 2}, bytes(8, 1)));
    test::write_raw(lb, test::idx_bytes({2}, bytes{0, 1}));
    test::write_raw(lb2, test::idx_bytes({2, 1}, bytes{0, 1}));
    const std::string m = test::io_error_message([&] { (void)fr::load_idx_dataset(im4, lb, 10, "x"); });
    CHECK(contains(m, im4.string()));
    CHECK(contains(m, "3 dimensions"));
    const auto im3 = dir / "im3";
    test::write_raw(im3, test::idx_bytes({2, 2, 2}, bytes(8, 1)));
    const std::string m2 = test::io_error_message([&] { (void)fr::load_idx_dataset(im3, lb2, 10, "x"); });
    CHECK(contains(m2, lb2.string()));
    CHECK(contains(m2, "1 dimension"));
}

TEST_CASE("subset draws without replacement in the original order and is seeded") {
    test::temp_dir dir;
    bytes labels(200);
    for (std::size_t i = 0; i < labels.size(); ++i) {
        labels[i] = static_cast<std::uint8_t>(i % 7);
    }
    const auto [images, label_file] = write_idx_set(dir, "s", 200, 2, 3, labels, false);
    const fr::image_dataset d = fr::load_idx_dataset(images, label_file, 7, "s");
    const fr::image_dataset a = fr::subset(d, 50, 42);
    const fr::image_dataset b = fr::subset(d, 50, 42);
    const fr::image_dataset c = fr::subset(d, 50, 43);
    REQUIRE(a.size() == 50);
    CHECK(a.shape() == fr::shape4{50, 1, 2, 3});
    CHECK(a.classes == 7);
    CHECK(a.images == b.images);
    CHECK(a.labels == b.labels);
    CHECK(a.images != c.images);
    // pixel (0, 0) of sample k is 31 k mod 256: unique for k < 256, so it names the original index
    std::vector<std::size_t> origin;
    for (std::size_t i = 0; i < a.size(); ++i) {
        std::size_t k = 0;
        while (k < 200 && idx_pixel(k, 0, 0) != a.images(i, 0, 0, 0)) {
            ++k;
        }
        REQUIRE(k < 200);
        CHECK(a.labels(i) == d.labels(k));
        if (!origin.empty()) {
            CHECK(k > origin.back()); // strictly increasing: distinct and in the original order
        }
        origin.push_back(k);
    }
    const fr::image_dataset all = fr::subset(d, 200, 1);
    CHECK(all.images == d.images); // every sample, in order
    CHECK_THROWS_AS((void)fr::subset(d, 201, 1), fr::error);
    CHECK_THROWS_AS((void)fr::subset(d, 0, 1), fr::error);
}

TEST_CASE("the Fashion-MNIST of dataset-fashion-mnist has 6000 and 1000 images per class") {
    const fr::image_dataset train = fr::load_fashion_mnist(fr::data_split::train);
    const fr::image_dataset test_set = fr::load_fashion_mnist(fr::data_split::test);
    REQUIRE(train.size() == 60000);
    REQUIRE(test_set.size() == 10000);
    CHECK(train.shape() == fr::shape4{60000, 1, 28, 28});
    CHECK(test_set.shape() == fr::shape4{10000, 1, 28, 28});
    CHECK(train.classes == 10);
    CHECK(train.name == "fashion-mnist/train");
    CHECK(test_set.name == "fashion-mnist/test");
    std::array<std::size_t, 10> n_train{}, n_test{};
    for (std::size_t i = 0; i < train.size(); ++i) {
        ++n_train.at(train.labels(i));
    }
    for (std::size_t i = 0; i < test_set.size(); ++i) {
        ++n_test.at(test_set.labels(i));
    }
    for (std::size_t c = 0; c < 10; ++c) {
        CAPTURE(c);
        CHECK(n_train[c] == 6000);
        CHECK(n_test[c] == 1000);
    }
    // the first training image is an ankle boot (label 9), as in the published data
    CHECK(train.labels(0) == 9);
    CHECK(fr::fashion_mnist_class_names[train.labels(0)] == "Ankle boot");
    // the well-known statistics of the training set
    const auto norm = fr::normalization::from_dataset(train);
    CHECK(norm.mean()[0] == doctest::Approx(0.2860).epsilon(1e-3));
    CHECK(norm.stddev()[0] == doctest::Approx(0.3530).epsilon(1e-3));
}

TEST_CASE("Fashion-MNIST class names") {
    REQUIRE(fr::fashion_mnist_class_names.size() == 10);
    CHECK(fr::fashion_mnist_class_names[0] == "T-shirt/top");
    CHECK(fr::fashion_mnist_class_names[1] == "Trouser");
    CHECK(fr::fashion_mnist_class_names[4] == "Coat");
    CHECK(fr::fashion_mnist_class_names[6] == "Shirt");
    CHECK(fr::fashion_mnist_class_names[9] == "Ankle boot");
}

TEST_CASE("Fashion-MNIST from another folder: uncompressed files and the environment variable") {
    test::temp_dir dir;
    (void)write_idx_set(dir, "t10k", 3, 28, 28, bytes{1, 2, 3}, false);
    const fr::image_dataset d = fr::load_fashion_mnist(fr::data_split::test, dir.path());
    CHECK(d.size() == 3);
    CHECK(d.labels(2) == 3);
    CHECK(d.name == "fashion-mnist/test");
    {
        const scoped_env env("FRUGAL_FASHION_MNIST_DIR", dir.path().string());
        CHECK(fr::default_fashion_mnist_dir() == dir.path());
        CHECK(fr::load_fashion_mnist(fr::data_split::test).size() == 3);
    }
    {
        const scoped_env env("FRUGAL_FASHION_MNIST_DIR", "");
        CHECK(fr::default_fashion_mnist_dir() == std::filesystem::path("/usr/share/datasets/fashion-mnist"));
    }
}

TEST_CASE("missing Fashion-MNIST files say which path was tried and how to get them") {
    test::temp_dir dir;
    const std::string m = test::io_error_message([&] { (void)fr::load_fashion_mnist(fr::data_split::train, dir.path()); });
    INFO(m);
    CHECK(contains(m, (dir / "train-images-idx3-ubyte.gz").string()));
    CHECK(contains(m, "dataset-fashion-mnist"));
    CHECK(contains(m, "FRUGAL_FASHION_MNIST_DIR"));
}

TEST_CASE("CIFAR-10 records: labels and pixels land in place") {
    test::temp_dir dir;
    const auto file = dir / "data_batch_1.bin";
    test::write_raw(file, cifar_records({{7}, {0}, {9}}));
    REQUIRE(std::filesystem::file_size(file) == 3 * 3073);
    const fr::image_dataset d = fr::read_cifar10({file});
    REQUIRE(d.size() == 3);
    CHECK(d.shape() == fr::shape4{3, 3, 32, 32});
    CHECK(d.classes == 10);
    CHECK(d.labels(0) == 7);
    CHECK(d.labels(1) == 0);
    CHECK(d.labels(2) == 9);
    for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        CHECK(cifar_pixels_match(d, i, i));
    }
    // hand-checked: record 1, green (c = 1), row 2, column 3 is file byte 3073 + 1 + 1024 + 2 * 32 + 3
    const bytes raw = test::read_raw(file);
    CHECK(d.images(1, 1, 2, 3) == raw[3073 + 1 + 1024 + 64 + 3]);
    CHECK(fr::cifar10_class_names[3] == "cat");
}

TEST_CASE("CIFAR-10 train is the five batches in order and test is test_batch") {
    test::temp_dir dir;
    std::size_t first = 0;
    for (int b = 1; b <= 5; ++b) {
        std::vector<bytes> labels;
        for (int r = 0; r < b; ++r) { // batch b holds b records
            labels.push_back({static_cast<std::uint8_t>((b + r) % 10)});
        }
        test::write_raw(dir / ("data_batch_" + std::to_string(b) + ".bin"), cifar_records(labels, first));
        first += labels.size();
    }
    test::write_raw(dir / "test_batch.bin", cifar_records({{4}, {5}}, 100));
    const fr::image_dataset train = fr::load_cifar10(fr::data_split::train, dir.path());
    REQUIRE(train.size() == 15);
    CHECK(train.name == "cifar-10/train");
    for (std::size_t i = 0; i < 15; ++i) {
        CAPTURE(i);
        CHECK(cifar_pixels_match(train, i, i));
    }
    CHECK(train.labels(0) == 1);  // batch 1, record 0: (1 + 0) % 10
    CHECK(train.labels(14) == 9); // batch 5, record 4
    const fr::image_dataset test_set = fr::load_cifar10(fr::data_split::test, dir.path());
    REQUIRE(test_set.size() == 2);
    CHECK(test_set.labels(1) == 5);
    CHECK(cifar_pixels_match(test_set, 1, 101));
}

TEST_CASE("CIFAR-100 records use the fine label") {
    test::temp_dir dir;
    const auto file = dir / "train.bin";
    test::write_raw(file, cifar_records({{19, 99}, {3, 0}, {0, 42}}));
    const fr::image_dataset d = fr::load_cifar100(fr::data_split::train, dir.path());
    REQUIRE(d.size() == 3);
    CHECK(d.classes == 100);
    CHECK(d.name == "cifar-100/train");
    CHECK(d.labels(0) == 99);
    CHECK(d.labels(1) == 0);
    CHECK(d.labels(2) == 42);
    for (std::size_t i = 0; i < 3; ++i) {
        CAPTURE(i);
        CHECK(cifar_pixels_match(d, i, i));
    }
}

TEST_CASE("CIFAR files of a bad size throw naming the file the size and the record size") {
    test::temp_dir dir;
    const auto file = dir / "bad.bin";
    SUBCASE("CIFAR-10: two records and 5 bytes") {
        bytes b = cifar_records({{1}, {2}});
        b.insert(b.end(), 5, 0);
        test::write_raw(file, b);
        const std::string m = test::io_error_message([&] { (void)fr::read_cifar10({file}); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "size 6151 bytes"));
        CHECK(contains(m, "record size 3073"));
    }
    SUBCASE("CIFAR-100: a CIFAR-10 file") {
        test::write_raw(file, cifar_records({{1}, {2}, {3}}));
        const std::string m = test::io_error_message([&] { (void)fr::read_cifar100({file}); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "size 9219 bytes"));
        CHECK(contains(m, "record size 3074"));
    }
    SUBCASE("empty") {
        test::write_raw(file, bytes{});
        const std::string m = test::io_error_message([&] { (void)fr::read_cifar10({file}); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "size 0 bytes"));
    }
}

TEST_CASE("CIFAR labels out of range throw naming the file and the record") {
    test::temp_dir dir;
    const auto file = dir / "bad.bin";
    SUBCASE("CIFAR-10 label 10") {
        test::write_raw(file, cifar_records({{1}, {10}, {3}}));
        const std::string m = test::io_error_message([&] { (void)fr::read_cifar10({file}); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "label 10 of record 1"));
    }
    SUBCASE("CIFAR-100 fine label 100") {
        test::write_raw(file, cifar_records({{1, 1}, {2, 2}, {3, 100}}));
        const std::string m = test::io_error_message([&] { (void)fr::read_cifar100({file}); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "label 100 of record 2"));
    }
}

TEST_CASE("missing CIFAR files throw naming the path") {
    test::temp_dir dir;
    const std::string m = test::io_error_message([&] { (void)fr::load_cifar10(fr::data_split::train, dir.path()); });
    INFO(m);
    CHECK(contains(m, (dir / "data_batch_1.bin").string()));
    CHECK(contains(m, "cifar-10-binary.tar.gz"));
    const std::string m100 = test::io_error_message([&] { (void)fr::load_cifar100(fr::data_split::test, dir.path()); });
    CHECK(contains(m100, (dir / "test.bin").string()));
}

} // TEST_SUITE
