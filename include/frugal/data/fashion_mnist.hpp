#ifndef FRUGAL_DATA_FASHION_MNIST_HPP
#define FRUGAL_DATA_FASHION_MNIST_HPP

/// @file
/// Fashion-MNIST (Xiao, Rasul and Vollgraf, 2017): 70000 grey 28x28 images of
/// clothing in 10 classes, 60000 for training and 10000 for testing, 6000 and
/// 1000 per class. frugal's default data set; Debian ships it in the package
/// dataset-fashion-mnist (/usr/share/datasets/fashion-mnist).

#include <array>
#include <cstdlib>
#include <filesystem>
#include <string>
#include <string_view>

#include "frugal/data/dataset.hpp"
#include "frugal/error.hpp"

namespace frugal {

/// Number of Fashion-MNIST classes.
inline constexpr std::size_t fashion_mnist_classes = 10;

/// The class names, by label.
inline constexpr std::array<std::string_view, fashion_mnist_classes> fashion_mnist_class_names = {
    "T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"};

/// Where the Debian package dataset-fashion-mnist installs the files.
inline constexpr const char* fashion_mnist_system_dir = "/usr/share/datasets/fashion-mnist";

/// The folder load_fashion_mnist reads by default: the environment variable
/// FRUGAL_FASHION_MNIST_DIR when it is set and not empty, else
/// fashion_mnist_system_dir.
[[nodiscard]] inline std::filesystem::path default_fashion_mnist_dir() {
    const char* env = std::getenv("FRUGAL_FASHION_MNIST_DIR");
    return (env != nullptr && *env != '\0') ? std::filesystem::path(env) : std::filesystem::path(fashion_mnist_system_dir);
}

namespace detail {
/// `dir/base.gz` if it exists, else `dir/base` if it exists, else throws.
[[nodiscard]] inline std::filesystem::path find_fashion_mnist_file(const std::filesystem::path& dir, const std::string& base) {
    std::error_code ec;
    const auto gz = dir / (base + ".gz");
    if (std::filesystem::is_regular_file(gz, ec)) {
        return gz;
    }
    const auto raw = dir / base;
    if (std::filesystem::is_regular_file(raw, ec)) {
        return raw;
    }
    throw io_error(concat("frugal::load_fashion_mnist: ", gz.string(), " not found (nor ", raw.string(),
                          "): install the Debian package dataset-fashion-mnist (apt install dataset-fashion-mnist) "
                          "or set FRUGAL_FASHION_MNIST_DIR to the folder holding ", base, ".gz"));
}
} // namespace detail

/// Loads the training or test part of Fashion-MNIST.
///
/// Reads `train-images-idx3-ubyte.gz` and `train-labels-idx1-ubyte.gz` (train)
/// or `t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz` (test) from
/// `dir`; the same names without `.gz` (decompressed files) are accepted too.
///
/// @param split data_split::train (60000 images) or data_split::test (10000).
/// @param dir the folder holding the files; by default
///        default_fashion_mnist_dir().
/// @post images of shape N, 1, 28, 28 (raw bytes), labels in [0, 10),
///       `classes == 10`, name "fashion-mnist/train" or "fashion-mnist/test".
/// @throws frugal::io_error when a file is missing (the message names the path
///         tried and how to install the data) or corrupt (see read_idx and
///         load_idx_dataset).
[[nodiscard]] inline image_dataset load_fashion_mnist(data_split split,
                                                      const std::filesystem::path& dir = default_fashion_mnist_dir()) {
    const std::string prefix = split == data_split::train ? "train" : "t10k";
    const auto images = detail::find_fashion_mnist_file(dir, prefix + "-images-idx3-ubyte");
    const auto labels = detail::find_fashion_mnist_file(dir, prefix + "-labels-idx1-ubyte");
    return load_idx_dataset(images, labels, fashion_mnist_classes, std::string("fashion-mnist/") + to_string(split));
}

} // namespace frugal

#endif
