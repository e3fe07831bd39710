#ifndef FRUGAL_TENSOR_SERIALIZE_HPP
#define FRUGAL_TENSOR_SERIALIZE_HPP

/// @file
/// A small binary archive for checkpoints: tagged, length-prefixed records,
/// little-endian. Every layer writes a versioned tag first ("conv2d/1") and
/// reads it back with `expect`, so a checkpoint of a different model or a
/// newer format fails with a message naming what was expected and found, and
/// where, instead of loading garbage.

#include <bit>
#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <vector>

#include <xtensor/xtensor.hpp>

#include "frugal/error.hpp"
#include "frugal/tensor/tensor.hpp"

namespace frugal {

static_assert(std::endian::native == std::endian::little, "frugal's archives assume a little-endian machine");

/// Writes an archive into a byte buffer.
class archive_writer {
public:
    /// A tag such as "batchnorm/1": the kind of record and its version.
    void tag(std::string_view t) {
        u32(static_cast<std::uint32_t>(t.size()));
        raw(t.data(), t.size());
    }
    void u32(std::uint32_t v) { raw(&v, sizeof v); }
    void u64(std::uint64_t v) { raw(&v, sizeof v); }
    void i64(std::int64_t v) { raw(&v, sizeof v); }
    void f32(float v) { raw(&v, sizeof v); }
    void f64(double v) { raw(&v, sizeof v); }
    void str(std::string_view s) {
        u64(s.size());
        raw(s.data(), s.size());
    }
    /// A float array with its length.
    void floats(std::span<const float> v) {
        u64(v.size());
        raw(v.data(), v.size() * sizeof(float));
    }
    template <std::size_t N>
    void tensor(const tensor<float, N>& t) {
        u32(static_cast<std::uint32_t>(N));
        for (std::size_t d = 0; d < N; ++d) {
            u64(t.shape()[d]);
        }
        floats(std::span<const float>(t.data(), t.size()));
    }

    [[nodiscard]] const std::vector<std::uint8_t>& bytes() const noexcept { return buf_; }

private:
    void raw(const void* p, std::size_t n) {
        if (n == 0) {
            return;
        }
        const auto* b = static_cast<const std::uint8_t*>(p);
        buf_.insert(buf_.end(), b, b + n);
    }
    std::vector<std::uint8_t> buf_;
};

/// Reads an archive from a byte buffer; every read checks the bounds and
/// throws frugal::io_error naming the source, the offset and what was expected.
class archive_reader {
public:
    archive_reader(std::span<const std::uint8_t> bytes, std::string source)
        : data_(bytes), source_(std::move(source)) {}

    /// Reads a tag and checks it equals `expected`.
    void expect(std::string_view expected) {
        const std::size_t at = pos_;
        const std::string found = read_tag();
        if (found != expected) {
            fail(at, detail::concat("expected record '", expected, "', found '", found, "'"));
        }
    }
    /// Reads a tag without checking it.
    [[nodiscard]] std::string read_tag() {
        const std::uint32_t n = u32();
        if (n > 256) {
            fail(pos_ - 4, detail::concat("a tag of ", n, " bytes (corrupt data)"));
        }
        std::string s(n, '\0');
        raw(s.data(), n);
        return s;
    }
    [[nodiscard]] std::uint32_t u32() { return pod<std::uint32_t>(); }
    [[nodiscard]] std::uint64_t u64() { return pod<std::uint64_t>(); }
    [[nodiscard]] std::int64_t i64() { return pod<std::int64_t>(); }
    [[nodiscard]] float f32() { return pod<float>(); }
    [[nodiscard]] double f64() { return pod<double>(); }
    [[nodiscard]] std::string str() {
        const std::uint64_t n = u64();
        if (n > remaining()) {
            fail(pos_ - 8, detail::concat("a string of ", n, " bytes but only ", remaining(), " remain"));
        }
        std::string s(n, '\0');
        raw(s.data(), n);
        return s;
    }
    /// Reads a float array into `out`, whose size must match.
    void floats(std::span<float> out, std::string_view what) {
        const std::size_t at = pos_;
        const std::uint64_t n = u64();
        if (n != out.size()) {
            fail(at, detail::concat(what, ": expected ", out.size(), " values, found ", n));
        }
        raw(out.data(), n * sizeof(float));
    }
    /// Reads a tensor whose shape must equal t's.
    template <std::size_t N>
    void tensor(tensor<float, N>& t, std::string_view what) {
        const std::size_t at = pos_;
        const std::uint32_t rank = u32();
        if (rank != N) {
            fail(at, detail::concat(what, ": expected a rank-", N, " tensor, found rank ", rank));
        }
        for (std::size_t d = 0; d < N; ++d) {
            const std::uint64_t e = u64();
            if (e != t.shape()[d]) {
                fail(at, detail::concat(what, ": dimension ", d, " is ", e, " in the archive but ", t.shape()[d],
                                        " in the model"));
            }
        }
        floats(std::span<float>(t.data(), t.size()), what);
    }

    [[nodiscard]] std::size_t offset() const noexcept { return pos_; }
    [[nodiscard]] std::size_t remaining() const noexcept { return data_.size() - pos_; }
    [[nodiscard]] const std::string& source() const noexcept { return source_; }

    [[noreturn]] void fail(std::size_t at, const std::string& what) const {
        throw io_error(detail::concat(source_, ": at byte ", at, ": ", what));
    }

private:
    template <class T>
    T pod() {
        T v;
        raw(&v, sizeof v);
        return v;
    }
    void raw(void* p, std::size_t n) {
        if (n > remaining()) {
            fail(pos_, detail::concat("truncated: needed ", n, " more bytes, ", remaining(), " remain"));
        }
        if (n == 0) {
            return; // an empty tensor's data() may be null, which memcpy forbids even for zero bytes
        }
        std::memcpy(p, data_.data() + pos_, n);
        pos_ += n;
    }

    std::span<const std::uint8_t> data_;
    std::string source_;
    std::size_t pos_ = 0;
};

} // namespace frugal

#endif
