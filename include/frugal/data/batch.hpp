#ifndef FRUGAL_DATA_BATCH_HPP
#define FRUGAL_DATA_BATCH_HPP

/// @file
/// frugal::batch_loader: turns an image_dataset into normalized, optionally
/// shuffled and augmented float batches.
///
/// The loader is stateless across batches, so that a resumed training run
/// sees exactly the batches it would have seen: the sample order of epoch e is
/// a pure function of (seed, e), and the augmentation draws of batch b of
/// epoch e are a pure function of (seed, e, b). Any batch of any epoch can be
/// produced in any order, any number of times, bit for bit.

#include <algorithm>
#include <array>
#include <cstddef>
#include <cstdint>
#include <numeric>
#include <span>
#include <utility>
#include <vector>

#include "frugal/data/dataset.hpp"
#include "frugal/data/transform.hpp"
#include "frugal/error.hpp"
#include "frugal/numeric/random.hpp"
#include "frugal/tensor/tensor.hpp"

namespace frugal {

/// One mini-batch: inputs and class labels.
struct batch {
    /// Normalized, augmented images: size(), C, H, W.
    tensor4 x;
    /// Class labels, one per image.
    tensor<std::int32_t, 1> y;

    /// Number of samples in the batch.
    [[nodiscard]] std::size_t size() const noexcept { return y.size(); }
};

/// How a batch_loader cuts and transforms its data set.
struct batch_options {
    /// Samples per batch, at least 1.
    std::size_t batch_size = 128;
    /// Draw a new sample order each epoch (else the data set order).
    bool shuffle = true;
    /// Leave out the last batch when it would be smaller than batch_size.
    bool drop_last = false;
    /// Seed of the shuffles and of the augmentation draws.
    std::uint64_t seed = 0x5eed;
    /// Random crop and flip, applied to every batch.
    augmentation augment{};

    /// Evaluation: the data set order, no augmentation, the last batch kept.
    [[nodiscard]] static constexpr batch_options evaluation(std::size_t batch_size) noexcept {
        batch_options o;
        o.batch_size = batch_size;
        o.shuffle = false;
        o.drop_last = false;
        o.augment = {};
        return o;
    }
};

namespace detail {
/// splitmix64's finalizer: a bijective 64-bit mix.
[[nodiscard]] constexpr std::uint64_t mix64(std::uint64_t z) noexcept {
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}
/// The rng stream of the sample order of epoch `e`.
[[nodiscard]] constexpr std::uint64_t order_stream(std::uint64_t e) noexcept {
    return mix64(0x6f72646572000000ULL ^ mix64(e + 0x9e3779b97f4a7c15ULL)); // "order"
}
/// The rng stream of the augmentation draws of batch `b` of epoch `e`.
[[nodiscard]] constexpr std::uint64_t augment_stream(std::uint64_t e, std::uint64_t b) noexcept {
    return mix64(mix64(0x6175676d656e7400ULL ^ mix64(e + 0x9e3779b97f4a7c15ULL)) + b); // "augment"
}
} // namespace detail

/// Cuts an image_dataset into batches of normalized float images.
///
/// Batch b of epoch e holds the samples at positions [b * B, min((b + 1) * B, N))
/// of the epoch's order (B = batch size, N = data set size): with shuffle, a
/// uniform permutation drawn from `rng(seed, detail::order_stream(e))`;
/// without, 0, 1, ..., N - 1. Each sample then goes through transform_sample
/// with the crop and flip drawn (draw_crop_flip, in batch order) from
/// `rng(seed, detail::augment_stream(e, b))`, or the identity when no
/// augmentation is on.
///
/// The loader keeps a pointer to the data set and caches the order of the
/// epoch last asked for; fill() is therefore not safe to call concurrently on
/// one loader (give each thread its own copy).
class batch_loader {
public:
    /// @param data the data set; @pre it outlives the loader and is not
    ///        modified while the loader is used.
    /// @param norm the normalization, usually normalization::from_dataset of
    ///        the training set (also for the test set).
    /// @param options batch size, shuffle, drop_last, seed, augmentation.
    /// @throws frugal::error when the batch size is 0, the data set is empty
    ///         or invalid (image_dataset::validate), `norm` has not as many
    ///         channels as the images, or drop_last leaves no batch.
    batch_loader(const image_dataset& data, normalization norm, batch_options options)
        : data_(&data), norm_(std::move(norm)), options_(options) {
        constexpr const char* who = "frugal::batch_loader";
        if (options_.batch_size == 0) {
            throw error(detail::concat(who, ": batch size 0: expected at least 1"));
        }
        data.validate();
        const shape4 s = data.shape();
        if (s.n == 0) {
            throw error(detail::concat(who, ": data set '", data.name, "' is empty"));
        }
        if (norm_.channels() != s.c) {
            throw error(detail::concat(who, ": the normalization has ", norm_.channels(), " channels but the images of '",
                                       data.name, "' have ", s.c));
        }
        shape_ = {s.c, s.h, s.w};
        batches_ = options_.drop_last ? s.n / options_.batch_size : (s.n + options_.batch_size - 1) / options_.batch_size;
        if (batches_ == 0) {
            throw error(detail::concat(who, ": batch size ", options_.batch_size, " with drop_last leaves no batch of '",
                                       data.name, "' (", s.n, " samples)"));
        }
    }

    /// A loader must not refer to a temporary data set.
    batch_loader(image_dataset&&, normalization, batch_options) = delete;

    /// Batches in one epoch: ceil(N / B), or floor(N / B) with drop_last.
    [[nodiscard]] std::size_t batches_per_epoch() const noexcept { return batches_; }
    /// Samples seen in one epoch.
    [[nodiscard]] std::size_t samples_per_epoch() const noexcept {
        return std::min(batches_ * options_.batch_size, data_->size());
    }
    /// Number of samples in batch `batch_index` (B, or less for the last one).
    /// @pre `batch_index < batches_per_epoch()`
    [[nodiscard]] std::size_t batch_size(std::size_t batch_index) const noexcept {
        const std::size_t begin = batch_index * options_.batch_size;
        return std::min(options_.batch_size, data_->size() - begin);
    }

    /// The sample order of epoch `epoch`: a permutation of 0 .. N - 1 that is a
    /// pure function of (seed, epoch), or the identity without shuffle.
    /// @post valid until the next call of order() or fill() with another epoch.
    [[nodiscard]] std::span<const std::size_t> order(std::size_t epoch) {
        if (!cached_ || (options_.shuffle && epoch != cached_epoch_)) {
            const std::size_t n = data_->size();
            order_.resize(n);
            std::iota(order_.begin(), order_.end(), std::size_t{0});
            if (options_.shuffle) {
                rng r(options_.seed, detail::order_stream(epoch));
                for (std::size_t i = n; i > 1; --i) { // Fisher-Yates
                    const auto j = static_cast<std::size_t>(r.below(i));
                    std::swap(order_[i - 1], order_[j]);
                }
            }
            cached_ = true;
            cached_epoch_ = epoch;
        }
        return order_;
    }

    /// Writes batch `batch_index` of epoch `epoch` into `out`.
    ///
    /// @param epoch any epoch number.
    /// @param batch_index @pre `batch_index < batches_per_epoch()`.
    /// @param out reused: its buffers are reallocated only when the batch
    ///        shape changes (the last, smaller batch).
    /// @post `out.x` has shape (batch_size(batch_index), C, H, W) and
    ///       `out.y` the matching labels; both are a pure function of (data,
    ///       normalization, options, epoch, batch_index).
    /// @throws frugal::error when batch_index is past the end of the epoch.
    void fill(std::size_t epoch, std::size_t batch_index, batch& out) {
        if (batch_index >= batches_) {
            throw error(detail::concat("frugal::batch_loader::fill: batch index ", batch_index, " is past the end of the epoch: '",
                                       data_->name, "' gives ", batches_, " batches (indices 0 to ", batches_ - 1, ") of ",
                                       options_.batch_size, " from ", data_->size(), " samples, drop_last ",
                                       options_.drop_last ? "on" : "off"));
        }
        const std::span<const std::size_t> ord = order(epoch);
        const std::size_t begin = batch_index * options_.batch_size;
        const std::size_t n = batch_size(batch_index);
        out.x.resize(std::array<std::size_t, 4>{n, shape_.c, shape_.h, shape_.w});
        out.y.resize(std::array<std::size_t, 1>{n});

        const std::size_t per = shape_.size();
        const bool augment = options_.augment.enabled();
        rng r(options_.seed, detail::augment_stream(epoch, batch_index));
        float* x = out.x.data();
        std::int32_t* y = out.y.data();
        for (std::size_t i = 0; i < n; ++i) {
            const std::size_t k = ord[begin + i];
            const crop_flip t = augment ? draw_crop_flip(options_.augment, r) : crop_flip{};
            transform_sample(data_->sample(k), shape_, norm_, t, x + i * per);
            y[i] = static_cast<std::int32_t>(data_->labels(k));
        }
    }

    /// The data set.
    [[nodiscard]] const image_dataset& dataset() const noexcept { return *data_; }
    /// The normalization applied to every sample.
    [[nodiscard]] const normalization& normalizer() const noexcept { return norm_; }
    /// The options.
    [[nodiscard]] const batch_options& options() const noexcept { return options_; }

private:
    const image_dataset* data_;
    normalization norm_;
    batch_options options_;
    image_shape shape_{};
    std::size_t batches_ = 0;
    std::vector<std::size_t> order_;
    std::size_t cached_epoch_ = 0;
    bool cached_ = false;
};

} // namespace frugal

#endif
