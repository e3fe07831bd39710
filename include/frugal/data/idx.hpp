#ifndef FRUGAL_DATA_IDX_HPP
#define FRUGAL_DATA_IDX_HPP

/// @file
/// frugal::read_idx: reads an IDX file (the format of MNIST and
/// Fashion-MNIST), raw or gzip-compressed.
///
/// An IDX file is a 4-byte magic `00 00 type ndims`, then `ndims` big-endian
/// uint32 sizes, then the elements in row-major order. frugal reads element
/// type 0x08 (unsigned byte), the only one image data sets use. A gzip file is
/// recognised by its first two bytes (1f 8b), whatever its name, and
/// decompressed with zlib on the fly. Every error is a frugal::io_error whose
/// message names the file, the byte offset in the (decompressed) stream and
/// what was expected and found.

#include <algorithm>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <limits>
#include <string>
#include <system_error>
#include <vector>

#include <zlib.h>

#include "frugal/error.hpp"

namespace frugal {

/// The content of an IDX file of unsigned bytes.
struct idx_array {
    /// Sizes of the dimensions, outermost first (for MNIST images: N, 28, 28).
    std::vector<std::size_t> dims;
    /// The elements in row-major order; `bytes.size()` is the product of `dims`.
    std::vector<std::uint8_t> bytes;

    /// Number of elements (the product of `dims`).
    [[nodiscard]] std::size_t size() const noexcept { return bytes.size(); }
    /// Number of dimensions.
    [[nodiscard]] std::size_t rank() const noexcept { return dims.size(); }
};

/// Largest number of elements read_idx accepts (2^40 bytes): a larger product
/// of the dimensions is taken for a corrupt header rather than allocated.
inline constexpr std::uint64_t idx_max_elements = std::uint64_t{1} << 40;

namespace detail {

/// "1f 8b" for two bytes: how a magic number is shown in messages.
[[nodiscard]] inline std::string hex_bytes(const std::uint8_t* p, std::size_t n) {
    static constexpr char digits[] = "0123456789abcdef";
    std::string s;
    for (std::size_t i = 0; i < n; ++i) {
        if (i != 0) {
            s += ' ';
        }
        s += digits[p[i] >> 4];
        s += digits[p[i] & 0xf];
    }
    return s;
}

/// Name of an IDX element type code, or "" for an unknown code.
[[nodiscard]] inline const char* idx_type_name(std::uint8_t code) noexcept {
    switch (code) {
    case 0x08: return "unsigned byte";
    case 0x09: return "signed byte";
    case 0x0B: return "int16";
    case 0x0C: return "int32";
    case 0x0D: return "float32";
    case 0x0E: return "float64";
    default: return "";
    }
}

/// A byte stream read from a file, gzip-decompressed when the file starts with
/// the gzip magic 1f 8b. Tracks the offset in the (decompressed) stream.
class byte_source {
public:
    /// Opens `file`; throws frugal::io_error (prefixed by `who`) when it is
    /// missing, not a regular file or cannot be opened.
    byte_source(const std::filesystem::path& file, const char* who) : file_(file), who_(who) {
        std::error_code ec;
        const auto status = std::filesystem::status(file, ec);
        if (!std::filesystem::exists(status)) {
            fail("file not found");
        }
        if (std::filesystem::is_directory(status)) {
            fail("is a directory, expected a file");
        }
        raw_ = std::fopen(file.c_str(), "rb");
        if (raw_ == nullptr) {
            fail(concat("cannot open: ", std::strerror(errno)));
        }
        std::uint8_t magic[2] = {0, 0};
        const std::size_t n = std::fread(magic, 1, 2, raw_);
        gzip_ = n == 2 && magic[0] == 0x1f && magic[1] == 0x8b;
        if (gzip_) {
            std::fclose(raw_);
            raw_ = nullptr;
            errno = 0;
            gz_ = gzopen(file.c_str(), "rb");
            if (gz_ == nullptr) {
                fail(concat("cannot open as gzip: ", errno != 0 ? std::strerror(errno) : "out of memory"));
            }
            gzbuffer(gz_, 1u << 17);
        } else {
            std::rewind(raw_);
        }
    }

    byte_source(const byte_source&) = delete;
    byte_source& operator=(const byte_source&) = delete;

    ~byte_source() {
        if (raw_ != nullptr) {
            std::fclose(raw_);
        }
        if (gz_ != nullptr) {
            gzclose_r(gz_);
        }
    }

    /// Reads up to `n` bytes into `dst`; returns how many were read (fewer
    /// only at the end of the stream). Throws frugal::io_error on a read error
    /// or a corrupt gzip stream.
    std::size_t read(void* dst, std::size_t n) {
        auto* out = static_cast<unsigned char*>(dst);
        std::size_t total = 0;
        while (total < n) {
            const std::size_t want = std::min<std::size_t>(n - total, std::size_t{1} << 30);
            std::size_t got = 0;
            if (gzip_) {
                const int r = gzread(gz_, out + total, static_cast<unsigned>(want));
                check_gzip(r < 0 ? 0 : static_cast<std::size_t>(r));
                if (r < 0) {
                    fail(concat("gzip read error near byte offset ", offset_, " of the decompressed data"));
                }
                got = static_cast<std::size_t>(r);
            } else {
                got = std::fread(out + total, 1, want, raw_);
                if (got < want && std::ferror(raw_)) {
                    fail(concat("read error at byte offset ", offset_ + got, ": ", std::strerror(errno)));
                }
            }
            total += got;
            offset_ += got;
            if (got < want) {
                break;
            }
        }
        return total;
    }

    /// Reads and counts whatever is left (at most `limit` bytes are counted).
    std::uint64_t skip_rest(std::uint64_t limit = std::uint64_t{1} << 32) {
        unsigned char buf[4096];
        std::uint64_t n = 0;
        while (n < limit) {
            const std::size_t got = read(buf, sizeof buf);
            n += got;
            if (got < sizeof buf) {
                break;
            }
        }
        return n;
    }

    /// Bytes read so far (in the decompressed stream for a gzip file).
    [[nodiscard]] std::uint64_t offset() const noexcept { return offset_; }
    [[nodiscard]] bool gzip() const noexcept { return gzip_; }
    /// True when the gzip stream ended without its end marker and trailer.
    [[nodiscard]] bool gzip_cut_short() const noexcept { return cut_short_; }
    [[nodiscard]] const std::filesystem::path& file() const noexcept { return file_; }

    /// Throws frugal::io_error "<who>: <file>: <what>".
    [[noreturn]] void fail(const std::string& what) const {
        throw io_error(concat(who_, ": ", file_.string(), ": ", what));
    }

private:
    void check_gzip(std::size_t got) {
        int code = Z_OK;
        const char* msg = gzerror(gz_, &code);
        if (code == Z_BUF_ERROR) {
            cut_short_ = true; // "unexpected end of file": the reader reports the missing bytes
        } else if (code != Z_OK) {
            // zlib prefixes its message with the path: keep only the reason
            std::string reason = msg != nullptr ? msg : "unknown error";
            const std::string prefix = file_.string() + ": ";
            if (reason.compare(0, prefix.size(), prefix) == 0) {
                reason.erase(0, prefix.size());
            }
            fail(concat("corrupt gzip stream: zlib reports \"", reason, "\" after byte offset ", offset_ + got,
                        " of the decompressed data"));
        }
    }

    std::filesystem::path file_;
    const char* who_;
    std::FILE* raw_ = nullptr;
    gzFile gz_ = nullptr;
    bool gzip_ = false;
    bool cut_short_ = false;
    std::uint64_t offset_ = 0;
};

/// " (the gzip stream ends early)" when the compressed stream was cut short.
[[nodiscard]] inline const char* gzip_note(const byte_source& s) noexcept {
    return s.gzip_cut_short() ? " (the gzip stream is cut short: unexpected end of the compressed data)" : "";
}

/// Reads exactly `n` bytes of a header field, or fails naming `what`.
inline void read_header(byte_source& s, void* dst, std::size_t n, const char* what) {
    const std::uint64_t at = s.offset();
    const std::size_t got = s.read(dst, n);
    if (got < n) {
        s.fail(detail::concat("the file ends at byte offset ", at + got, ": expected ", what, " (", n,
                              " bytes) at byte offset ", at, ", found ", got, " bytes", gzip_note(s)));
    }
}

} // namespace detail

/// Reads an IDX file of unsigned bytes (type 0x08), raw or gzip-compressed.
///
/// @param file path of the file; gzip is detected from the first two bytes,
///             not from the name.
/// @return the dimensions and the elements.
/// @post `result.dims.size() >= 1`, every dimension is >= 1, and
///       `result.bytes.size()` is their product.
/// @throws frugal::io_error naming the file, the byte offset (in the
///         decompressed stream) and what was expected and found when: the file
///         is missing or unreadable; the magic is not `00 00`; the element
///         type is not 0x08; there are no dimensions, a dimension is 0 or
///         their product exceeds idx_max_elements; the data is shorter than the
///         dimensions say; bytes follow the data; the gzip stream is corrupt.
[[nodiscard]] inline idx_array read_idx(const std::filesystem::path& file) {
    constexpr const char* who = "frugal::read_idx";
    detail::byte_source s(file, who);

    std::uint8_t magic[4];
    detail::read_header(s, magic, 4, "the IDX magic number 00 00 <type> <ndims>");
    if (magic[0] != 0 || magic[1] != 0) {
        s.fail(detail::concat("wrong magic number at byte offset 0: expected 00 00 <type> <ndims>, found ",
                              detail::hex_bytes(magic, 4), " (not an IDX file",
                              s.gzip() ? ", after gzip decompression)" : ")"));
    }
    const std::uint8_t type = magic[2];
    if (type != 0x08) {
        const char* name = detail::idx_type_name(type);
        if (*name != '\0') {
            s.fail(detail::concat("unsupported element type at byte offset 2: expected 0x08 (unsigned byte), found 0x",
                                  detail::hex_bytes(&type, 1), " (", name, ")"));
        }
        s.fail(detail::concat("unknown element type at byte offset 2: expected 0x08 (unsigned byte), found 0x",
                              detail::hex_bytes(&type, 1),
                              " (IDX type codes are 08, 09, 0b, 0c, 0d, 0e)"));
    }
    const std::size_t ndims = magic[3];
    if (ndims == 0) {
        s.fail("no dimensions at byte offset 3: expected at least 1, found 0");
    }

    std::vector<std::uint8_t> raw_dims(4 * ndims);
    detail::read_header(s, raw_dims.data(), raw_dims.size(), detail::concat(ndims, " big-endian uint32 dimensions").c_str());
    idx_array out;
    out.dims.resize(ndims);
    std::uint64_t count = 1;
    constexpr std::uint64_t max_count =
        std::min<std::uint64_t>(idx_max_elements, std::numeric_limits<std::size_t>::max());
    for (std::size_t i = 0; i < ndims; ++i) {
        const std::uint8_t* p = raw_dims.data() + 4 * i;
        const std::uint64_t d = (std::uint64_t{p[0]} << 24) | (std::uint64_t{p[1]} << 16) | (std::uint64_t{p[2]} << 8) | p[3];
        if (d == 0) {
            s.fail(detail::concat("dimension ", i, " of ", ndims, " at byte offset ", 4 + 4 * i,
                                  " is 0: expected a size of at least 1"));
        }
        if (count > max_count / d) {
            std::string shape;
            for (std::size_t j = 0; j < ndims; ++j) {
                const std::uint8_t* q = raw_dims.data() + 4 * j;
                shape += detail::concat(j == 0 ? "" : " x ",
                                        (std::uint64_t{q[0]} << 24) | (std::uint64_t{q[1]} << 16) | (std::uint64_t{q[2]} << 8) | q[3]);
            }
            s.fail(detail::concat("absurd dimensions ", shape, " in the header (byte offsets 4 to ", 4 + 4 * ndims,
                                  "): expected at most ", max_count, " elements in all (a corrupt header?)"));
        }
        count *= d;
        out.dims[i] = static_cast<std::size_t>(d);
    }

    // Grow the buffer as data arrives, so that a corrupt header claiming a huge
    // size fails as truncated data instead of a huge allocation.
    const std::uint64_t data_offset = s.offset();
    const auto expected = static_cast<std::size_t>(count);
    constexpr std::size_t chunk = std::size_t{1} << 24;
    out.bytes.reserve(std::min(expected, std::size_t{1} << 26));
    std::size_t got = 0;
    while (got < expected) {
        const std::size_t want = std::min(expected - got, chunk);
        out.bytes.resize(got + want);
        const std::size_t n = s.read(out.bytes.data() + got, want);
        got += n;
        if (n < want) {
            break;
        }
    }
    if (got < expected) {
        std::string shape;
        for (std::size_t j = 0; j < ndims; ++j) {
            shape += detail::concat(j == 0 ? "" : " x ", out.dims[j]);
        }
        s.fail(detail::concat("truncated data: expected ", expected, " bytes (", shape,
                              " unsigned bytes) from byte offset ", data_offset, ", found ", got,
                              " (the data ends at byte offset ", data_offset + got, ")", detail::gzip_note(s)));
    }
    const std::uint64_t end = s.offset();
    const std::uint64_t extra = s.skip_rest(); // for gzip this also checks the CRC and length trailer
    if (extra != 0) {
        s.fail(detail::concat("trailing bytes after the data: expected the end of the file at byte offset ", end,
                              ", found ", extra, extra == 1 ? " more byte" : " more bytes"));
    }
    if (s.gzip_cut_short()) {
        s.fail(detail::concat("corrupt gzip stream: the data is complete (", end,
                              " bytes) but the compressed stream is cut short before its end marker and trailer"));
    }
    return out;
}

} // namespace frugal

#endif
