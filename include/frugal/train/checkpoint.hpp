#ifndef FRUGAL_TRAIN_CHECKPOINT_HPP
#define FRUGAL_TRAIN_CHECKPOINT_HPP

/// @file
/// Checkpoint files: written atomically (to a temporary file in the same
/// folder, flushed to disk, then renamed over the old one), so a crash
/// during a write never leaves a half-written checkpoint behind; verified on
/// reading by a magic number, a version, the payload size and a CRC-32.
///
/// Layout: "FRUGALCK" | u32 version | u64 payload bytes | u32 crc32(payload) | payload.

#include <algorithm>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include <fcntl.h>
#include <unistd.h>
#include <zlib.h>

#include "frugal/error.hpp"

namespace frugal {

inline constexpr char checkpoint_magic[8] = {'F', 'R', 'U', 'G', 'A', 'L', 'C', 'K'};
inline constexpr std::uint32_t checkpoint_version = 1;

namespace detail {
[[nodiscard]] inline std::uint32_t crc32_of(const std::vector<std::uint8_t>& v) {
    uLong crc = ::crc32(0L, Z_NULL, 0);
    std::size_t done = 0;
    while (done < v.size()) {
        const auto chunk = static_cast<uInt>(std::min<std::size_t>(v.size() - done, 1u << 30));
        crc = ::crc32(crc, v.data() + done, chunk);
        done += chunk;
    }
    return static_cast<std::uint32_t>(crc);
}

inline void write_all(int fd, const void* data, std::size_t n, const std::filesystem::path& path) {
    const auto* p = static_cast<const std::uint8_t*>(data);
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            throw io_error(concat(path.string(), ": cannot write checkpoint: ", std::strerror(errno)));
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
}
} // namespace detail

/// Writes payload to `path` atomically. Throws frugal::io_error naming the
/// path and the system's reason (missing folder, no permission, disk full).
inline void write_checkpoint(const std::filesystem::path& path, const std::vector<std::uint8_t>& payload) {
    const std::filesystem::path tmp = path.string() + ".tmp." + std::to_string(::getpid());
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        throw io_error(detail::concat(path.string(), ": cannot write checkpoint: ", std::strerror(errno)));
    }
    try {
        const std::uint32_t version = checkpoint_version;
        const std::uint64_t size = payload.size();
        const std::uint32_t crc = detail::crc32_of(payload);
        detail::write_all(fd, checkpoint_magic, sizeof checkpoint_magic, path);
        detail::write_all(fd, &version, sizeof version, path);
        detail::write_all(fd, &size, sizeof size, path);
        detail::write_all(fd, &crc, sizeof crc, path);
        detail::write_all(fd, payload.data(), payload.size(), path);
        if (::fsync(fd) != 0) {
            throw io_error(detail::concat(path.string(), ": cannot flush checkpoint: ", std::strerror(errno)));
        }
    } catch (...) {
        ::close(fd);
        ::unlink(tmp.c_str());
        throw;
    }
    ::close(fd);
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw io_error(detail::concat(path.string(), ": cannot replace checkpoint: ", std::strerror(e)));
    }
}

/// Reads and verifies a checkpoint; returns its payload. Throws
/// frugal::io_error naming the file and what is wrong with it.
[[nodiscard]] inline std::vector<std::uint8_t> read_checkpoint(const std::filesystem::path& path) {
    std::ifstream in(path, std::ios::binary);
    if (!in) {
        throw io_error(detail::concat(path.string(), ": cannot open checkpoint"));
    }
    char magic[8];
    std::uint32_t version = 0, crc = 0;
    std::uint64_t size = 0;
    in.read(magic, 8);
    if (in.gcount() != 8 || std::memcmp(magic, checkpoint_magic, 8) != 0) {
        throw io_error(detail::concat(path.string(), ": not a frugal checkpoint (wrong magic at byte 0)"));
    }
    in.read(reinterpret_cast<char*>(&version), 4);
    in.read(reinterpret_cast<char*>(&size), 8);
    in.read(reinterpret_cast<char*>(&crc), 4);
    if (!in) {
        throw io_error(detail::concat(path.string(), ": truncated checkpoint header (", 24, " bytes expected)"));
    }
    if (version != checkpoint_version) {
        throw io_error(detail::concat(path.string(), ": checkpoint version ", version, ", this frugal reads version ",
                                      checkpoint_version));
    }
    const auto file_size = std::filesystem::file_size(path);
    if (file_size != 24 + size) {
        throw io_error(detail::concat(path.string(), ": checkpoint holds ", file_size - 24, " payload bytes, header says ",
                                      size, " (truncated or corrupt)"));
    }
    std::vector<std::uint8_t> payload(size);
    in.read(reinterpret_cast<char*>(payload.data()), static_cast<std::streamsize>(size));
    if (static_cast<std::uint64_t>(in.gcount()) != size) {
        throw io_error(detail::concat(path.string(), ": truncated checkpoint payload"));
    }
    if (detail::crc32_of(payload) != crc) {
        throw io_error(detail::concat(path.string(), ": checkpoint checksum mismatch (corrupt file)"));
    }
    return payload;
}

} // namespace frugal

#endif
