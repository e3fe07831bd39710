// Helpers for the data tests: a temporary folder that removes itself, and
// writers for raw and gzip files.

#ifndef FRUGAL_TESTS_DATA_FILES_HPP
#define FRUGAL_TESTS_DATA_FILES_HPP

#include <doctest/doctest.h>

#include <chrono>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>
#include <zlib.h>

#include <frugal/error.hpp>

#include "temp_dir.hpp"

namespace test {

using bytes = std::vector<std::uint8_t>;


inline void write_raw(const std::filesystem::path& file, const bytes& b) {
    std::ofstream out(file, std::ios::binary);
    REQUIRE(out.good());
    out.write(reinterpret_cast<const char*>(b.data()), static_cast<std::streamsize>(b.size()));
    REQUIRE(out.good());
}

inline bytes read_raw(const std::filesystem::path& file) {
    std::ifstream in(file, std::ios::binary);
    REQUIRE(in.good());
    return bytes(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

inline void write_gzip(const std::filesystem::path& file, const bytes& b) {
    gzFile g = gzopen(file.c_str(), "wb");
    REQUIRE(g != nullptr);
    if (!b.empty()) {
        REQUIRE(gzwrite(g, b.data(), static_cast<unsigned>(b.size())) == static_cast<int>(b.size()));
    }
    REQUIRE(gzclose(g) == Z_OK);
}

/// An IDX header (type 0x08 unless given) followed by `data`.
inline bytes idx_bytes(const std::vector<std::uint32_t>& dims, const bytes& data, std::uint8_t type = 0x08) {
    bytes b = {0, 0, type, static_cast<std::uint8_t>(dims.size())};
    for (const std::uint32_t d : dims) {
        b.push_back(static_cast<std::uint8_t>(d >> 24));
        b.push_back(static_cast<std::uint8_t>(d >> 16));
        b.push_back(static_cast<std::uint8_t>(d >> 8));
        b.push_back(static_cast<std::uint8_t>(d));
    }
    b.insert(b.end(), data.begin(), data.end());
    return b;
}

/// The message of the frugal::io_error `f` throws ("" and a failed check if it
/// throws nothing or something else).
template <class F>
std::string io_error_message(F&& f) {
    try {
        f();
    } catch (const frugal::io_error& e) {
        return e.what();
    } catch (const std::exception& e) {
        FAIL_CHECK("expected frugal::io_error, got another exception: " << e.what());
        return "";
    }
    FAIL_CHECK("expected frugal::io_error, nothing was thrown");
    return "";
}

inline bool contains(const std::string& text, const std::string& part) { return text.find(part) != std::string::npos; }

} // namespace test

#endif
