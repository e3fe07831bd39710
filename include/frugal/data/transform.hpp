#ifndef FRUGAL_DATA_TRANSFORM_HPP
#define FRUGAL_DATA_TRANSFORM_HPP

/// @file
/// Per-sample transforms from raw bytes to a normalized float image:
/// per-channel normalization, pad-and-random-crop and random horizontal flip.
///
/// All three run in one pass over a sample (transform_sample): every output
/// pixel is one lookup in a 256-entry table of its channel, or 0 where the
/// crop reaches into the padding. Padding is applied after normalization, so
/// padded pixels are 0 in the normalized output (the channel mean), as with
/// torchvision's RandomCrop on a normalized tensor. No allocation, no virtual
/// call, no branch per pixel.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "frugal/data/dataset.hpp"
#include "frugal/error.hpp"
#include "frugal/numeric/random.hpp"

namespace frugal {

/// Shape of one image: channels, height, width.
struct image_shape {
    std::size_t c = 0, h = 0, w = 0;
    [[nodiscard]] constexpr std::size_t size() const noexcept { return c * h * w; }
    friend constexpr bool operator==(const image_shape&, const image_shape&) = default;
};

/// Per-channel normalization x = (byte / 255 - mean[c]) / stddev[c], with mean
/// and standard deviation in units of the [0, 1] pixel range (torchvision's
/// convention: Fashion-MNIST is about mean 0.286, std 0.353).
///
/// The map is kept as one 256-entry float table per channel, so normalizing a
/// pixel is a single lookup.
class normalization {
public:
    /// No channels: must be assigned before use.
    normalization() = default;

    /// Given means and standard deviations, one per channel.
    /// @pre `mean.size() == stddev.size() >= 1`, every stddev finite and > 0,
    ///      every mean finite.
    /// @throws frugal::error when a precondition does not hold.
    normalization(std::vector<float> mean, std::vector<float> stddev) : mean_(std::move(mean)), std_(std::move(stddev)) {
        if (mean_.empty() || mean_.size() != std_.size()) {
            throw error(detail::concat("frugal::normalization: expected as many means as standard deviations (at least 1), found ",
                                       mean_.size(), " and ", std_.size()));
        }
        for (std::size_t c = 0; c < mean_.size(); ++c) {
            if (!std::isfinite(mean_[c]) || !std::isfinite(std_[c]) || !(std_[c] > 0.0f)) {
                throw error(detail::concat("frugal::normalization: channel ", c, ": expected a finite mean and a finite standard deviation > 0, found mean ",
                                           mean_[c], " and standard deviation ", std_[c]));
            }
        }
        table_.resize(256 * mean_.size());
        for (std::size_t c = 0; c < mean_.size(); ++c) {
            for (int v = 0; v < 256; ++v) {
                table_[c * 256 + static_cast<std::size_t>(v)] =
                    static_cast<float>((v / 255.0 - static_cast<double>(mean_[c])) / static_cast<double>(std_[c]));
            }
        }
    }

    /// Mean 0, standard deviation 1: x = byte / 255, in [0, 1].
    [[nodiscard]] static normalization identity(std::size_t channels) {
        return normalization(std::vector<float>(channels, 0.0f), std::vector<float>(channels, 1.0f));
    }

    /// The mean and (population) standard deviation of each channel over every
    /// pixel of `data`, computed exactly from per-channel byte histograms.
    /// @post applied to `data`, each channel has mean ~0 and standard
    ///       deviation ~1. A constant channel (deviation 0) gets deviation 1.
    /// @throws frugal::error when `data` is empty.
    [[nodiscard]] static normalization from_dataset(const image_dataset& data) {
        const shape4 s = data.shape();
        if (s.size() == 0) {
            throw error(detail::concat("frugal::normalization::from_dataset: data set '", data.name, "' is empty"));
        }
        const std::size_t plane = s.h * s.w;
        std::vector<std::uint64_t> count(256 * s.c, 0);
        const std::uint8_t* p = data.images.data();
        for (std::size_t n = 0; n < s.n; ++n) {
            for (std::size_t c = 0; c < s.c; ++c, p += plane) {
                std::uint64_t* h = count.data() + 256 * c;
                for (std::size_t i = 0; i < plane; ++i) {
                    ++h[p[i]];
                }
            }
        }
        const double total = static_cast<double>(s.n) * static_cast<double>(plane);
        std::vector<float> mean(s.c), stddev(s.c);
        for (std::size_t c = 0; c < s.c; ++c) {
            const std::uint64_t* h = count.data() + 256 * c;
            double sum = 0.0;
            for (int v = 0; v < 256; ++v) {
                sum += static_cast<double>(h[v]) * (v / 255.0);
            }
            const double m = sum / total;
            double sq = 0.0;
            for (int v = 0; v < 256; ++v) {
                const double d = v / 255.0 - m;
                sq += static_cast<double>(h[v]) * d * d;
            }
            const double sd = std::sqrt(sq / total);
            mean[c] = static_cast<float>(m);
            stddev[c] = sd > 1e-12 ? static_cast<float>(sd) : 1.0f;
        }
        return normalization(std::move(mean), std::move(stddev));
    }

    /// Number of channels.
    [[nodiscard]] std::size_t channels() const noexcept { return mean_.size(); }
    /// Mean of each channel, in [0, 1] pixel units.
    [[nodiscard]] const std::vector<float>& mean() const noexcept { return mean_; }
    /// Standard deviation of each channel, in [0, 1] pixel units.
    [[nodiscard]] const std::vector<float>& stddev() const noexcept { return std_; }
    /// The 256 normalized values of channel `c`, by byte.
    /// @pre `c < channels()`
    [[nodiscard]] const float* table(std::size_t c) const noexcept { return table_.data() + 256 * c; }
    /// The normalized value of byte `v` in channel `c`.
    /// @pre `c < channels()`
    [[nodiscard]] float operator()(std::size_t c, std::uint8_t v) const noexcept { return table_[256 * c + v]; }

private:
    std::vector<float> mean_;
    std::vector<float> std_;
    std::vector<float> table_;
};

/// Which random augmentations to apply to training samples.
struct augmentation {
    /// Pad each side with this many (normalized-zero) pixels, then crop back
    /// to the original size at a uniformly random offset; 0 turns it off.
    /// CIFAR recipes use 4.
    std::size_t crop_padding = 0;
    /// Mirror left-right with probability 1/2.
    bool flip = false;

    /// True when some augmentation is on.
    [[nodiscard]] constexpr bool enabled() const noexcept { return crop_padding != 0 || flip; }
};

/// The augmentation decisions for one sample: output pixel (y, x) before the
/// flip is input pixel (y + dy, x + dx), or 0 outside the input; with `flip`,
/// the row is then mirrored. For a crop of an image padded by p whose top-left
/// corner is (top, left) in the padded image, dy = top - p and dx = left - p.
/// The default value is the identity.
struct crop_flip {
    std::ptrdiff_t dy = 0;
    std::ptrdiff_t dx = 0;
    bool flip = false;
    friend constexpr bool operator==(const crop_flip&, const crop_flip&) = default;
};

/// Draws one sample's augmentation: dy and dx uniform in [-p, p] for
/// p = a.crop_padding, flip with probability 1/2 when a.flip.
/// @post always takes exactly three values from `r`, whatever `a` says, so the
///       draws of later samples do not depend on the options.
[[nodiscard]] constexpr crop_flip draw_crop_flip(const augmentation& a, rng& r) noexcept {
    const auto p = static_cast<std::ptrdiff_t>(a.crop_padding);
    const std::uint64_t span = 2 * static_cast<std::uint64_t>(a.crop_padding) + 1;
    crop_flip t;
    t.dy = static_cast<std::ptrdiff_t>(r.below(span)) - p;
    t.dx = static_cast<std::ptrdiff_t>(r.below(span)) - p;
    t.flip = a.flip && (r() >> 63) != 0;
    return t;
}

/// Normalizes, shifts (pad-and-crop) and optionally mirrors one sample, in one
/// pass.
/// @param src the sample's C*H*W bytes, CHW order.
/// @param s its shape.
/// @param norm the normalization; @pre `norm.channels() == s.c`.
/// @param t the crop offset and flip (any shift is allowed; pixels taken from
///        outside the image are 0).
/// @param dst C*H*W floats, CHW order; must not overlap `src`.
/// @post dst(c, y, x') = norm(c, src(c, y + t.dy, x + t.dx)) or 0 outside the
///       image, where x' = W - 1 - x when t.flip and x' = x otherwise.
inline void transform_sample(const std::uint8_t* src, const image_shape& s, const normalization& norm, const crop_flip& t,
                             float* dst) noexcept {
    const auto h = static_cast<std::ptrdiff_t>(s.h);
    const auto w = static_cast<std::ptrdiff_t>(s.w);
    // columns x of the output whose source column x + dx is inside the image
    const std::ptrdiff_t x0 = std::clamp<std::ptrdiff_t>(-t.dx, 0, w);
    const std::ptrdiff_t x1 = std::max(x0, std::clamp<std::ptrdiff_t>(w - t.dx, 0, w));
    for (std::size_t c = 0; c < s.c; ++c) {
        const float* table = norm.table(c);
        const std::uint8_t* in = src + c * s.h * s.w;
        float* out = dst + c * s.h * s.w;
        for (std::ptrdiff_t y = 0; y < h; ++y, out += w) {
            const std::ptrdiff_t sy = y + t.dy;
            if (sy < 0 || sy >= h || x0 == x1) {
                std::fill(out, out + w, 0.0f);
                continue;
            }
            const std::uint8_t* row = in + sy * w + (x0 + t.dx); // source of output column x0
            const std::ptrdiff_t n = x1 - x0;
            if (!t.flip) {
                std::fill(out, out + x0, 0.0f);
                float* o = out + x0;
                for (std::ptrdiff_t i = 0; i < n; ++i) {
                    o[i] = table[row[i]];
                }
                std::fill(out + x1, out + w, 0.0f);
            } else {
                // output column x goes to w - 1 - x
                std::fill(out, out + (w - x1), 0.0f);
                float* o = out + (w - 1 - x0);
                for (std::ptrdiff_t i = 0; i < n; ++i) {
                    o[-i] = table[row[i]];
                }
                std::fill(out + (w - x0), out + w, 0.0f);
            }
        }
    }
}

/// Normalizes one sample: transform_sample with the identity crop_flip.
inline void normalize_sample(const std::uint8_t* src, const image_shape& s, const normalization& norm, float* dst) noexcept {
    transform_sample(src, s, norm, crop_flip{}, dst);
}

/// Mirrors one float sample left-right, in place.
/// @param x C*H*W floats, CHW order.
/// @post x(c, y, w) becomes x(c, y, W - 1 - w); applying it twice is the identity.
inline void flip_horizontal(float* x, const image_shape& s) noexcept {
    for (std::size_t r = 0; r < s.c * s.h; ++r) {
        std::reverse(x + r * s.w, x + (r + 1) * s.w);
    }
}

} // namespace frugal

#endif
