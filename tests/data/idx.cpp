// frugal::read_idx on small hand-written files, raw and gzip: exact round
// trips, and an io_error naming the file, the offset and expected vs found
// for every kind of damage.

#include <doctest/doctest.h>

#include <cstdint>
#include <filesystem>
#include <string>
#include <vector>

#include <frugal/data/idx.hpp>

#include "data/files.hpp"

namespace fr = frugal;
using test::bytes;
using test::contains;

namespace {

bytes iota_bytes(std::size_t n, std::uint8_t start = 0) {
    bytes b(n);
    for (std::size_t i = 0; i < n; ++i) {
        b[i] = static_cast<std::uint8_t>(start + 7 * i);
    }
    return b;
}

} // namespace

TEST_SUITE("data/idx") {

TEST_CASE("a raw file round-trips exactly") {
    test::temp_dir dir;
    SUBCASE("three dimensions") {
        const bytes data = iota_bytes(3 * 2 * 4);
        const auto file = dir / "images-idx3-ubyte";
        test::write_raw(file, test::idx_bytes({3, 2, 4}, data));
        const fr::idx_array a = fr::read_idx(file);
        REQUIRE(a.rank() == 3);
        CHECK(a.dims == std::vector<std::size_t>{3, 2, 4});
        CHECK(a.size() == 24);
        CHECK(a.bytes == data);
    }
    SUBCASE("one dimension") {
        const bytes data = {9, 0, 255, 3, 1};
        const auto file = dir / "labels-idx1-ubyte";
        test::write_raw(file, test::idx_bytes({5}, data));
        const fr::idx_array a = fr::read_idx(file);
        CHECK(a.dims == std::vector<std::size_t>{5});
        CHECK(a.bytes == data);
    }
    SUBCASE("larger than one read chunk") {
        const bytes data = iota_bytes(300 * 1000, 5);
        const auto file = dir / "big";
        test::write_raw(file, test::idx_bytes({300, 1000}, data));
        const fr::idx_array a = fr::read_idx(file);
        CHECK(a.dims == std::vector<std::size_t>{300, 1000});
        CHECK(a.bytes == data);
    }
}

TEST_CASE("a gzip file round-trips exactly and is detected by its magic bytes") {
    test::temp_dir dir;
    const bytes data = iota_bytes(4 * 5 * 6, 11);
    const bytes file_bytes = test::idx_bytes({4, 5, 6}, data);
    SUBCASE("named .gz") {
        const auto file = dir / "images-idx3-ubyte.gz";
        test::write_gzip(file, file_bytes);
        REQUIRE(test::read_raw(file).at(0) == 0x1f);
        const fr::idx_array a = fr::read_idx(file);
        CHECK(a.dims == std::vector<std::size_t>{4, 5, 6});
        CHECK(a.bytes == data);
    }
    SUBCASE("gzip without .gz in the name") {
        const auto file = dir / "images-idx3-ubyte";
        test::write_gzip(file, file_bytes);
        CHECK(fr::read_idx(file).bytes == data);
    }
    SUBCASE("raw with .gz in the name") {
        const auto file = dir / "images-idx3-ubyte.gz";
        test::write_raw(file, file_bytes);
        CHECK(fr::read_idx(file).bytes == data);
    }
    SUBCASE("large gzip") {
        const bytes big = iota_bytes(1000 * 784, 1);
        const auto file = dir / "big.gz";
        test::write_gzip(file, test::idx_bytes({1000, 28, 28}, big));
        const fr::idx_array a = fr::read_idx(file);
        CHECK(a.dims == std::vector<std::size_t>{1000, 28, 28});
        CHECK(a.bytes == big);
    }
}

TEST_CASE("truncated data throws with the expected and found byte counts") {
    test::temp_dir dir;
    const bytes short_data = iota_bytes(20); // 24 expected
    SUBCASE("raw") {
        const auto file = dir / "short";
        test::write_raw(file, test::idx_bytes({3, 2, 4}, short_data));
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "truncated"));
        CHECK(contains(m, "expected 24 bytes"));
        CHECK(contains(m, "found 20"));
        CHECK(contains(m, "byte offset 16")); // where the data starts
    }
    SUBCASE("gzip of a short payload") {
        const auto file = dir / "short.gz";
        test::write_gzip(file, test::idx_bytes({3, 2, 4}, short_data));
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "expected 24 bytes"));
        CHECK(contains(m, "found 20"));
    }
    SUBCASE("gzip file cut in the middle") {
        const auto file = dir / "cut.gz";
        test::write_gzip(file, test::idx_bytes({100, 100}, iota_bytes(10000)));
        bytes gz = test::read_raw(file);
        REQUIRE(gz.size() > 40);
        gz.resize(gz.size() / 2);
        test::write_raw(file, gz);
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "expected 10000 bytes"));
        CHECK(contains(m, "gzip"));
    }
    SUBCASE("gzip file missing only its trailer") {
        const auto file = dir / "notrailer.gz";
        test::write_gzip(file, test::idx_bytes({10}, iota_bytes(10)));
        bytes gz = test::read_raw(file);
        gz.resize(gz.size() - 8); // CRC32 and length
        test::write_raw(file, gz);
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "gzip"));
    }
    SUBCASE("header cut short") {
        const auto file = dir / "header";
        test::write_raw(file, bytes{0, 0, 8, 3, 0, 0, 0, 3, 0});
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "byte offset 9"));
        CHECK(contains(m, "expected 3 big-endian uint32 dimensions (12 bytes)"));
        CHECK(contains(m, "found 5 bytes"));
    }
    SUBCASE("empty file") {
        const auto file = dir / "empty";
        test::write_raw(file, bytes{});
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "found 0 bytes"));
    }
}

TEST_CASE("a wrong magic number throws") {
    test::temp_dir dir;
    const auto file = dir / "notidx";
    test::write_raw(file, bytes{0x50, 0x4b, 0x03, 0x04, 0, 0, 0, 1, 7});
    const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
    INFO(m);
    CHECK(contains(m, file.string()));
    CHECK(contains(m, "wrong magic"));
    CHECK(contains(m, "byte offset 0"));
    CHECK(contains(m, "found 50 4b 03 04"));
    CHECK_THROWS_AS((void)fr::read_idx(file), fr::io_error);
    CHECK_THROWS_AS((void)fr::read_idx(file), fr::error); // the base class too
}

TEST_CASE("an unknown or unsupported element type throws") {
    test::temp_dir dir;
    SUBCASE("unknown code") {
        const auto file = dir / "t42";
        test::write_raw(file, test::idx_bytes({2}, bytes{1, 2}, 0x42));
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "unknown element type"));
        CHECK(contains(m, "expected 0x08"));
        CHECK(contains(m, "found 0x42"));
    }
    SUBCASE("float32 is a known type frugal does not read") {
        const auto file = dir / "tfloat";
        test::write_raw(file, test::idx_bytes({1}, bytes{0, 0, 0, 0}, 0x0d));
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "found 0x0d (float32)"));
    }
}

TEST_CASE("zero or absurd dimensions throw") {
    test::temp_dir dir;
    SUBCASE("no dimensions") {
        const auto file = dir / "nodims";
        test::write_raw(file, bytes{0, 0, 8, 0});
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "no dimensions"));
    }
    SUBCASE("a dimension of size 0") {
        const auto file = dir / "zerodim";
        test::write_raw(file, test::idx_bytes({4, 0, 2}, bytes{}));
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "dimension 1 of 3"));
        CHECK(contains(m, "byte offset 8"));
    }
    SUBCASE("a product that overflows 64 bits") {
        const auto file = dir / "huge";
        test::write_raw(file, test::idx_bytes({0xffffffffu, 0xffffffffu, 0xffffffffu}, bytes{1, 2, 3}));
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "absurd dimensions 4294967295 x 4294967295 x 4294967295"));
    }
    SUBCASE("a large claimed size fails as truncated, without allocating it") {
        const auto file = dir / "big-claim";
        test::write_raw(file, test::idx_bytes({60000, 1000, 1000}, bytes{1, 2, 3})); // 60 GB claimed
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, "expected 60000000000 bytes"));
        CHECK(contains(m, "found 3"));
    }
}

TEST_CASE("trailing bytes after the data throw") {
    test::temp_dir dir;
    bytes b = test::idx_bytes({2, 2}, bytes{1, 2, 3, 4});
    b.insert(b.end(), {9, 9, 9});
    SUBCASE("raw") {
        const auto file = dir / "trailing";
        test::write_raw(file, b);
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "trailing bytes"));
        CHECK(contains(m, "byte offset 16"));
        CHECK(contains(m, "found 3 more bytes"));
    }
    SUBCASE("gzip") {
        const auto file = dir / "trailing.gz";
        test::write_gzip(file, b);
        const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
        INFO(m);
        CHECK(contains(m, file.string()));
        CHECK(contains(m, "found 3 more bytes"));
    }
}

TEST_CASE("a corrupt gzip stream throws") {
    test::temp_dir dir;
    const auto file = dir / "corrupt.gz";
    SUBCASE("wrong CRC in the trailer") {
        test::write_gzip(file, test::idx_bytes({3, 3}, iota_bytes(9)));
        bytes gz = test::read_raw(file);
        gz[gz.size() - 8] ^= 0xff; // first byte of the CRC32
        test::write_raw(file, gz);
    }
    SUBCASE("garbage after a gzip header") {
        bytes gz = {0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 3};
        for (int i = 0; i < 64; ++i) {
            gz.push_back(0xff);
        }
        test::write_raw(file, gz);
    }
    SUBCASE("a flipped byte in the compressed data") {
        test::write_gzip(file, test::idx_bytes({50, 40}, iota_bytes(2000, 3)));
        bytes gz = test::read_raw(file);
        REQUIRE(gz.size() > 30);
        gz[12] ^= 0x5a;
        test::write_raw(file, gz);
    }
    const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
    INFO(m);
    CHECK(contains(m, file.string()));
    CHECK(contains(m, "gzip"));
}

TEST_CASE("a missing file or a folder throws naming the path") {
    test::temp_dir dir;
    const auto file = dir / "no-such-file-idx3-ubyte.gz";
    CHECK_THROWS_WITH_AS((void)fr::read_idx(file), doctest::Contains(file.string().c_str()), fr::io_error);
    const std::string m = test::io_error_message([&] { (void)fr::read_idx(file); });
    CHECK(contains(m, "not found"));
    const std::string d = test::io_error_message([&] { (void)fr::read_idx(dir.path()); });
    CHECK(contains(d, dir.path().string()));
    CHECK(contains(d, "directory"));
}

} // TEST_SUITE
