#ifndef FRUGAL_DATA_CIFAR_HPP
#define FRUGAL_DATA_CIFAR_HPP

/// @file
/// CIFAR-10 and CIFAR-100 in their binary form (Krizhevsky, 2009), read when a
/// user has them: https://www.cs.toronto.edu/~kriz/cifar.html.
///
/// A CIFAR-10 file is a sequence of 3073-byte records: the label (0 to 9),
/// then 3072 pixel bytes, the 1024 red, 1024 green and 1024 blue values of a
/// 32x32 image in row-major order, i.e. exactly NCHW. The archive
/// cifar-10-binary.tar.gz holds data_batch_1.bin to data_batch_5.bin (10000
/// records each) and test_batch.bin in the folder cifar-10-batches-bin.
/// CIFAR-100 records have two label bytes, the coarse (0 to 19) and the fine
/// label (0 to 99), before the pixels; frugal uses the fine label. Its archive
/// cifar-100-binary.tar.gz holds train.bin and test.bin in cifar-100-binary.

#include <algorithm>
#include <array>
#include <cerrno>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <string>
#include <string_view>
#include <system_error>
#include <utility>
#include <vector>

#include "frugal/data/dataset.hpp"
#include "frugal/error.hpp"
#include "frugal/tensor/tensor.hpp"

namespace frugal {

/// Pixel bytes of one CIFAR image: 3 x 32 x 32.
inline constexpr std::size_t cifar_image_bytes = 3 * 32 * 32;

/// The CIFAR-10 class names, by label.
inline constexpr std::array<std::string_view, 10> cifar10_class_names = {
    "airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse", "ship", "truck"};

namespace detail {

/// One CIFAR record layout.
struct cifar_format {
    const char* who;          ///< function name for messages
    std::size_t label_bytes;  ///< label bytes before the pixels (1 or 2)
    std::size_t label_index;  ///< which of them is the label used
    std::size_t classes;      ///< labels must be below this
    const char* hint;         ///< what to do when a file is missing
};

inline constexpr cifar_format cifar10_format{
    "frugal::read_cifar10", 1, 0, 10,
    "download https://www.cs.toronto.edu/~kriz/cifar-10-binary.tar.gz, extract it and pass the folder "
    "cifar-10-batches-bin, or set FRUGAL_CIFAR10_DIR to it"};
inline constexpr cifar_format cifar100_format{
    "frugal::read_cifar100", 2, 1, 100,
    "download https://www.cs.toronto.edu/~kriz/cifar-100-binary.tar.gz, extract it and pass the folder "
    "cifar-100-binary, or set FRUGAL_CIFAR100_DIR to it"};

[[nodiscard]] inline image_dataset read_cifar(const std::vector<std::filesystem::path>& files, const cifar_format& f,
                                              std::string name) {
    const std::size_t record = f.label_bytes + cifar_image_bytes;
    if (files.empty()) {
        throw error(concat(f.who, ": no files given"));
    }
    // Sizes first, so that the tensors are allocated once.
    std::vector<std::size_t> records(files.size());
    std::size_t total = 0;
    for (std::size_t k = 0; k < files.size(); ++k) {
        const auto& file = files[k];
        std::error_code ec;
        if (!std::filesystem::is_regular_file(file, ec)) {
            throw io_error(concat(f.who, ": ", file.string(), ": file not found; ", f.hint));
        }
        const auto size = std::filesystem::file_size(file, ec);
        if (ec) {
            throw io_error(concat(f.who, ": ", file.string(), ": cannot read its size: ", ec.message()));
        }
        if (size == 0 || size % record != 0) {
            throw io_error(concat(f.who, ": ", file.string(), ": size ", size, " bytes is not a positive multiple of the record size ",
                                  record, " (", f.label_bytes, " label byte", f.label_bytes == 1 ? "" : "s", " + ",
                                  cifar_image_bytes, " pixel bytes); ", size / record, " whole record", size / record == 1 ? "" : "s", " and ",
                                  size % record, " byte", size % record == 1 ? "" : "s", " left over"));
        }
        records[k] = static_cast<std::size_t>(size / record);
        total += records[k];
    }

    image_dataset d;
    d.images = u8tensor4::from_shape({total, 3, 32, 32});
    d.labels = tensor<std::uint8_t, 1>::from_shape({total});
    d.classes = f.classes;
    d.name = std::move(name);
    std::vector<std::uint8_t> buf(record * 256);
    std::size_t n = 0;
    for (std::size_t k = 0; k < files.size(); ++k) {
        const auto& file = files[k];
        std::FILE* in = std::fopen(file.c_str(), "rb");
        if (in == nullptr) {
            throw io_error(concat(f.who, ": ", file.string(), ": cannot open: ", std::strerror(errno)));
        }
        std::size_t i = 0; // record index in this file
        while (i < records[k]) {
            const std::size_t want = std::min<std::size_t>(records[k] - i, 256);
            const std::size_t got = std::fread(buf.data(), record, want, in);
            if (got != want) {
                std::fclose(in);
                throw io_error(concat(f.who, ": ", file.string(), ": the file ends at record ", i + got,
                                      ": expected ", records[k], " records (did it change while being read?)"));
            }
            for (std::size_t j = 0; j < got; ++j, ++i, ++n) {
                const std::uint8_t* r = buf.data() + j * record;
                const std::uint8_t label = r[f.label_index];
                if (label >= f.classes) {
                    std::fclose(in);
                    throw io_error(concat(f.who, ": ", file.string(), ": label ", int{label}, " of record ", i,
                                          " (byte offset ", i * record + f.label_index, ") is out of range: expected < ",
                                          f.classes));
                }
                d.labels(n) = label;
                std::memcpy(d.images.data() + n * cifar_image_bytes, r + f.label_bytes, cifar_image_bytes);
            }
        }
        std::fclose(in);
    }
    return d;
}

[[nodiscard]] inline std::filesystem::path env_dir(const char* variable, const char* fallback) {
    const char* env = std::getenv(variable);
    return (env != nullptr && *env != '\0') ? std::filesystem::path(env) : std::filesystem::path(fallback);
}

} // namespace detail

/// Reads CIFAR-10 binary files, concatenated in the order given.
/// @param files one or more files of 3073-byte records (label, 3x32x32 pixels).
/// @param name name of the data set, for reports.
/// @post images of shape N, 3, 32, 32 (raw bytes, channels R, G, B), labels in
///       [0, 10), `classes == 10`.
/// @throws frugal::io_error naming the file when it is missing, when its size
///         is not a positive multiple of 3073 (with the size and the record
///         size), or when a label is >= 10 (with the record index).
///         frugal::error when `files` is empty.
[[nodiscard]] inline image_dataset read_cifar10(const std::vector<std::filesystem::path>& files,
                                                std::string name = "cifar-10") {
    return detail::read_cifar(files, detail::cifar10_format, std::move(name));
}

/// Reads CIFAR-100 binary files (fine labels), concatenated in the order given.
/// @param files one or more files of 3074-byte records (coarse label, fine
///        label, 3x32x32 pixels).
/// @param name name of the data set, for reports.
/// @post images of shape N, 3, 32, 32, labels (the fine ones) in [0, 100),
///       `classes == 100`. The coarse label is not kept.
/// @throws frugal::io_error as read_cifar10, with record size 3074 and fine
///         labels checked against 100.
[[nodiscard]] inline image_dataset read_cifar100(const std::vector<std::filesystem::path>& files,
                                                 std::string name = "cifar-100") {
    return detail::read_cifar(files, detail::cifar100_format, std::move(name));
}

/// Default CIFAR-10 folder: $FRUGAL_CIFAR10_DIR when set and not empty, else
/// "cifar-10-batches-bin" (relative to the working directory; the name the
/// official archive extracts to).
[[nodiscard]] inline std::filesystem::path default_cifar10_dir() {
    return detail::env_dir("FRUGAL_CIFAR10_DIR", "cifar-10-batches-bin");
}

/// Default CIFAR-100 folder: $FRUGAL_CIFAR100_DIR when set and not empty, else
/// "cifar-100-binary".
[[nodiscard]] inline std::filesystem::path default_cifar100_dir() {
    return detail::env_dir("FRUGAL_CIFAR100_DIR", "cifar-100-binary");
}

/// Loads CIFAR-10: data_batch_1.bin to data_batch_5.bin (train, 50000 images)
/// or test_batch.bin (test, 10000 images) from `dir`.
/// @post name "cifar-10/train" or "cifar-10/test"; see read_cifar10.
/// @throws frugal::io_error as read_cifar10; a missing file's message names
///         the path and where to get the data.
[[nodiscard]] inline image_dataset load_cifar10(data_split split, const std::filesystem::path& dir = default_cifar10_dir()) {
    std::vector<std::filesystem::path> files;
    if (split == data_split::train) {
        for (int i = 1; i <= 5; ++i) {
            files.push_back(dir / ("data_batch_" + std::to_string(i) + ".bin"));
        }
    } else {
        files.push_back(dir / "test_batch.bin");
    }
    return read_cifar10(files, std::string("cifar-10/") + to_string(split));
}

/// Loads CIFAR-100 (fine labels): train.bin (50000 images) or test.bin (10000)
/// from `dir`.
/// @post name "cifar-100/train" or "cifar-100/test"; see read_cifar100.
/// @throws frugal::io_error as read_cifar100.
[[nodiscard]] inline image_dataset load_cifar100(data_split split, const std::filesystem::path& dir = default_cifar100_dir()) {
    return read_cifar100({dir / (split == data_split::train ? "train.bin" : "test.bin")},
                         std::string("cifar-100/") + to_string(split));
}

} // namespace frugal

#endif
