#ifndef FRUGAL_DATA_DATASET_HPP
#define FRUGAL_DATA_DATASET_HPP

/// @file
/// frugal::image_dataset: a labelled set of images kept as raw bytes (NCHW),
/// built from IDX files or by the CIFAR readers, and subset() for quick runs.
/// Conversion to float, normalization and augmentation happen per batch
/// (frugal/data/batch.hpp), so a data set costs one byte per pixel.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <numeric>
#include <string>
#include <utility>
#include <vector>

#include "frugal/data/idx.hpp"
#include "frugal/error.hpp"
#include "frugal/numeric/random.hpp"
#include "frugal/tensor/tensor.hpp"

namespace frugal {

/// Which part of a data set to load.
enum class data_split { train, test };

/// "train" or "test".
[[nodiscard]] inline std::string to_string(data_split s) { return s == data_split::train ? "train" : "test"; }

/// Images with one class label each.
///
/// Invariants (checked by validate()): `images.shape()[0] == labels.size()`,
/// `1 <= classes <= 256` and every label is `< classes`.
struct image_dataset {
    /// The pixels as stored in the files: N, C, H, W, one byte each (0 to 255).
    u8tensor4 images;
    /// The class of each image, in [0, classes).
    tensor<std::uint8_t, 1> labels;
    /// Number of classes.
    std::size_t classes = 0;
    /// Where the data came from, for reports ("fashion-mnist/train").
    std::string name;

    /// Number of samples.
    [[nodiscard]] std::size_t size() const noexcept { return labels.size(); }
    /// Shape of `images`: N, C, H, W.
    [[nodiscard]] shape4 shape() const { return shape_of(images); }
    /// Bytes per sample: C * H * W.
    [[nodiscard]] std::size_t sample_bytes() const { return shape().per_sample(); }
    /// Pointer to the C*H*W bytes of sample `i`.
    /// @pre `i < size()`
    [[nodiscard]] const std::uint8_t* sample(std::size_t i) const { return images.data() + i * sample_bytes(); }

    /// Checks the invariants.
    /// @throws frugal::error naming the data set and the broken invariant
    ///         (for a bad label: its index, value and the class count).
    void validate() const {
        if (images.shape()[0] != labels.size()) {
            throw error(detail::concat("frugal::image_dataset '", name, "': ", images.shape()[0], " images but ",
                                       labels.size(), " labels"));
        }
        if (classes < 1 || classes > 256) {
            throw error(detail::concat("frugal::image_dataset '", name, "': expected 1 to 256 classes, found ", classes));
        }
        for (std::size_t i = 0; i < labels.size(); ++i) {
            if (labels(i) >= classes) {
                throw error(detail::concat("frugal::image_dataset '", name, "': label ", int{labels(i)}, " of sample ", i,
                                           " is out of range: expected < ", classes));
            }
        }
    }
};

/// Builds a data set from an IDX image file (N, H, W: one channel) and an IDX
/// label file (N), both raw or gzip-compressed.
///
/// @param images_file IDX file of unsigned bytes with 3 dimensions N, H, W.
/// @param labels_file IDX file of unsigned bytes with 1 dimension N.
/// @param classes number of classes, 1 to 256.
/// @param name name of the data set, for reports.
/// @post `result.images` has shape N, 1, H, W; `result.validate()` passes.
/// @throws frugal::io_error from read_idx; when the image file is not 3-d or
///         the label file not 1-d (names the file and its dimensions); when
///         the counts differ (names both files and both counts); when a label
///         is `>= classes` (names the label file and the index of the first
///         bad label). frugal::error when `classes` is not in [1, 256].
[[nodiscard]] inline image_dataset load_idx_dataset(const std::filesystem::path& images_file,
                                                    const std::filesystem::path& labels_file, std::size_t classes,
                                                    std::string name) {
    constexpr const char* who = "frugal::load_idx_dataset";
    if (classes < 1 || classes > 256) {
        throw error(detail::concat(who, ": expected 1 to 256 classes, found ", classes));
    }
    auto dims_text = [](const idx_array& a) {
        std::string s;
        for (std::size_t i = 0; i < a.dims.size(); ++i) {
            s += detail::concat(i == 0 ? "" : " x ", a.dims[i]);
        }
        return s;
    };
    idx_array im = read_idx(images_file);
    if (im.rank() != 3) {
        throw io_error(detail::concat(who, ": ", images_file.string(), ": expected an image file with 3 dimensions (N, H, W), found ",
                                      im.rank(), " (", dims_text(im), ")"));
    }
    idx_array lb = read_idx(labels_file);
    if (lb.rank() != 1) {
        throw io_error(detail::concat(who, ": ", labels_file.string(), ": expected a label file with 1 dimension (N), found ",
                                      lb.rank(), " (", dims_text(lb), ")"));
    }
    if (im.dims[0] != lb.dims[0]) {
        throw io_error(detail::concat(who, ": the counts differ: image file ", images_file.string(), " holds ", im.dims[0],
                                      " images but label file ", labels_file.string(), " holds ", lb.dims[0], " labels"));
    }
    for (std::size_t i = 0; i < lb.bytes.size(); ++i) {
        if (lb.bytes[i] >= classes) {
            throw io_error(detail::concat(who, ": ", labels_file.string(), ": label ", int{lb.bytes[i]}, " at index ", i,
                                          " (byte offset ", 8 + i, ") is out of range: expected < ", classes, " classes"));
        }
    }
    image_dataset d;
    const std::size_t n = im.dims[0];
    d.images = u8tensor4::from_shape({n, 1, im.dims[1], im.dims[2]});
    if (!im.bytes.empty()) { // an empty tensor's data() may be null
        std::memcpy(d.images.data(), im.bytes.data(), im.bytes.size());
    }
    im.bytes = {}; // give the memory back before the label copy
    d.labels = tensor<std::uint8_t, 1>::from_shape({n});
    if (n > 0) {
        std::memcpy(d.labels.data(), lb.bytes.data(), n);
    }
    d.classes = classes;
    d.name = std::move(name);
    return d;
}

/// A random subset of `n` samples drawn without replacement, in their original
/// order: the same (data set, n, seed) always gives the same subset.
///
/// @param data the data set to draw from.
/// @param n number of samples to keep.
/// @param seed seed of the draw (frugal::rng, its own stream).
/// @pre `1 <= n <= data.size()`
/// @post `result.size() == n`; sample i of the result is sample k_i of `data`
///       with k_0 < k_1 < ...; classes are kept; the name says "n of N, seed s".
/// @throws frugal::error when n is 0 or larger than the data set.
[[nodiscard]] inline image_dataset subset(const image_dataset& data, std::size_t n, std::uint64_t seed) {
    const std::size_t total = data.size();
    if (n == 0 || n > total) {
        throw error(detail::concat("frugal::subset: cannot draw ", n, " samples from '", data.name, "' of ", total,
                                   " samples: expected 1 to ", total));
    }
    constexpr std::uint64_t subset_stream = 0x73756273'65740000ULL; // "subset"
    rng r(seed, subset_stream);
    std::vector<std::size_t> index(total);
    std::iota(index.begin(), index.end(), std::size_t{0});
    for (std::size_t i = 0; i < n; ++i) { // partial Fisher-Yates
        const auto j = i + static_cast<std::size_t>(r.below(total - i));
        std::swap(index[i], index[j]);
    }
    std::sort(index.begin(), index.begin() + static_cast<std::ptrdiff_t>(n));

    const shape4 s = data.shape();
    const std::size_t per = s.per_sample();
    image_dataset out;
    out.images = u8tensor4::from_shape({n, s.c, s.h, s.w});
    out.labels = tensor<std::uint8_t, 1>::from_shape({n});
    for (std::size_t i = 0; i < n; ++i) {
        std::memcpy(out.images.data() + i * per, data.sample(index[i]), per);
        out.labels(i) = data.labels(index[i]);
    }
    out.classes = data.classes;
    out.name = detail::concat(data.name, " (", n, " of ", total, ", seed ", seed, ')');
    return out;
}

} // namespace frugal

#endif
