#ifndef FRUGAL_LAYERS_LOSS_HPP
#define FRUGAL_LAYERS_LOSS_HPP

/// @file
/// frugal::softmax_cross_entropy: mean cross-entropy of softmax(logits)
/// against integer class labels, and its gradient with respect to the logits.

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>

#include "frugal/layers/layer.hpp"

namespace frugal {

class softmax_cross_entropy {
public:
    /// Mean loss over the batch. logits: N x classes x 1 x 1 (or N x classes x H x W
    /// with H = W = 1); labels: N integers in [0, classes).
    /// Also counts the samples whose arg-max equals the label (correct()).
    float forward(const tensor4& logits, const tensor<std::int32_t, 1>& labels) {
        const shape4 s = shape_of(logits);
        const std::size_t k = s.c * s.h * s.w;
        if (labels.size() != s.n) {
            throw shape_error(detail::concat("softmax_cross_entropy: ", s.n, " logits rows but ", labels.size(),
                                             " labels"));
        }
        ensure_shape(grad_, s);
        double total = 0.0;
        correct_ = 0;
        const float inv_n = 1.0f / static_cast<float>(s.n);
        for (std::size_t n = 0; n < s.n; ++n) {
            const float* z = logits.data() + n * k;
            const std::int32_t y = labels(n);
            if (y < 0 || static_cast<std::size_t>(y) >= k) {
                throw error(detail::concat("softmax_cross_entropy: label ", y, " of sample ", n, " is not a class in [0, ",
                                           k, ")"));
            }
            const float mx = *std::max_element(z, z + k);
            double sum = 0.0;
            for (std::size_t j = 0; j < k; ++j) {
                sum += std::exp(static_cast<double>(z[j] - mx));
            }
            const double lse = std::log(sum) + mx;
            total += lse - z[y];
            float* g = grad_.data() + n * k;
            std::size_t arg = 0;
            for (std::size_t j = 0; j < k; ++j) {
                g[j] = static_cast<float>(std::exp(static_cast<double>(z[j]) - lse)) * inv_n;
                arg = z[j] > z[arg] ? j : arg;
            }
            g[y] -= inv_n;
            correct_ += arg == static_cast<std::size_t>(y) ? 1 : 0;
        }
        return static_cast<float>(total / static_cast<double>(s.n));
    }

    /// d(mean loss)/d(logits) of the last forward.
    [[nodiscard]] const tensor4& backward() const noexcept { return grad_; }
    /// Samples of the last forward whose prediction was right.
    [[nodiscard]] std::size_t correct() const noexcept { return correct_; }

private:
    tensor4 grad_;
    std::size_t correct_ = 0;
};

} // namespace frugal

#endif
