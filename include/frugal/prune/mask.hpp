#ifndef FRUGAL_PRUNE_MASK_HPP
#define FRUGAL_PRUNE_MASK_HPP

/// @file
/// Channel masks for network slimming and Early-Bird tickets (SPEC 2.2).
///
/// - `prune_rules<Model>` says which batch-norm layers of a model channel
///   pruning may shrink. VGG: every convolution's batch norm. CIFAR ResNet
///   (basic blocks): only `bn1` inside each block, the channels between the
///   block's two convolutions; the stem, every `bn2` and every projection
///   shortcut produce channels that the residual sums tie together, so they
///   keep their width. Specialize `prune_rules` to prune other models.
/// - `ticket_mask(model, p)`: one global threshold over the |gamma| of all
///   prunable channels: with the N values sorted ascending,
///   `thr = sorted[floor(N p)]` and a channel survives when `|gamma| > thr`
///   (the authors' rule, quoted by SPEC 2.2; without ties it removes
///   floor(N p) + 1 channels). `p = 0` keeps every channel.
/// - Safety floor: a layer left without channels keeps its channel of
///   largest |gamma| (ties: the lowest index) and the mask records a message
///   (`channel_mask::warnings`); with `empty_layer::reject` the same case
///   throws frugal::prune_error instead.
/// - `mask_distance(a, b)`: normalized Hamming distance, the fraction of
///   channels on which two masks disagree, in [0, 1].
/// - `early_bird_detector`: a FIFO of the last K = 5 masks; it fires when the
///   FIFO is full and every distance from the newest mask to the K - 1 older
///   ones is <= epsilon (0.1). It also keeps every mask it was given, for the
///   epoch-by-epoch distance matrix (prune/heatmap.hpp draws it).

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <utility>
#include <vector>

#include "frugal/error.hpp"
#include "frugal/layers/batchnorm.hpp"
#include "frugal/layers/residual.hpp"
#include "frugal/model/zoo/resnet.hpp"
#include "frugal/model/zoo/vgg.hpp"

namespace frugal {

/// A pruning request that cannot be honoured (a layer would lose every
/// channel under empty_layer::reject, a ratio outside [0, 1), a mask that
/// belongs to another model).
class prune_error : public error {
public:
    using error::error;
};

/// Which batch-norm layers of a model may lose channels. `for_each(net, f)`
/// calls f(batchnorm&) (or const batchnorm&) for each, in model order.
/// Undefined for models without rules: pruning them does not compile.
template <class Model>
struct prune_rules;

/// VGG (of any convolution): the batch norm of every convolution unit.
template <class ConvMaker>
struct prune_rules<basic_vgg_t<ConvMaker>> {
    template <class Net, class F>
    static void for_each(Net& net, F&& f) {
        auto& units = net.template get<0>();
        for (std::size_t i = 0; i < units.size(); ++i) {
            f(units[i].bn());
        }
    }
};

/// CIFAR ResNet of basic blocks: bn1 of every block (the channels inside the block).
template <class ConvMaker>
struct prune_rules<cifar_resnet_t<basic_block<ConvMaker>>> {
    template <class Net, class F>
    static void for_each(Net& net, F&& f) {
        auto& blocks = net.template get<2>();
        for (std::size_t i = 0; i < blocks.size(); ++i) {
            f(blocks[i].bn1());
        }
    }
};

/// A model whose prunable channels are known.
template <class Model>
concept prunable_model = requires(const Model& m) { prune_rules<Model>::for_each(m, [](const batchnorm&) {}); };

/// What to do when a layer would lose every channel.
enum class empty_layer : std::uint8_t {
    keep_one, ///< keep its channel of largest |gamma| and record a warning
    reject    ///< throw frugal::prune_error
};

/// Which channels of each prunable layer survive. Layer i owns entries
/// [offsets[i], offsets[i + 1]) of `keep` (1 = keep, 0 = prune).
struct channel_mask {
    std::vector<std::string> names;     ///< the batch-norm layers, in model order
    std::vector<std::size_t> offsets{0}; ///< size layers() + 1
    std::vector<std::uint8_t> keep;
    double ratio = 0.0;                 ///< the requested pruning ratio
    float threshold = 0.0f;             ///< the global |gamma| threshold (-1 when p = 0 kept everything)
    std::vector<std::size_t> clamped;   ///< layers where the safety floor kept one channel
    std::vector<std::string> warnings;  ///< one message per clamped layer

    [[nodiscard]] std::size_t layers() const noexcept { return names.size(); }
    /// Channels over all prunable layers (N).
    [[nodiscard]] std::size_t size() const noexcept { return keep.size(); }
    [[nodiscard]] std::span<const std::uint8_t> layer(std::size_t i) const {
        return {keep.data() + offsets.at(i), offsets.at(i + 1) - offsets[i]};
    }
    /// Surviving channels of layer i.
    [[nodiscard]] std::size_t kept(std::size_t i) const {
        const auto l = layer(i);
        return static_cast<std::size_t>(std::count(l.begin(), l.end(), std::uint8_t{1}));
    }
    /// Surviving channels over all layers.
    [[nodiscard]] std::size_t kept() const {
        return static_cast<std::size_t>(std::count(keep.begin(), keep.end(), std::uint8_t{1}));
    }
    /// Indices of the surviving channels of layer i, ascending.
    [[nodiscard]] std::vector<std::size_t> kept_channels(std::size_t i) const {
        const auto l = layer(i);
        std::vector<std::size_t> idx;
        for (std::size_t c = 0; c < l.size(); ++c) {
            if (l[c] != 0) {
                idx.push_back(c);
            }
        }
        return idx;
    }
    /// Surviving channels of every layer.
    [[nodiscard]] std::vector<std::size_t> kept_per_layer() const {
        std::vector<std::size_t> k;
        for (std::size_t i = 0; i < layers(); ++i) {
            k.push_back(kept(i));
        }
        return k;
    }
    /// Whether two masks describe the same layers (names and widths).
    [[nodiscard]] bool same_layout(const channel_mask& o) const noexcept {
        return names == o.names && offsets == o.offsets;
    }
};

/// The mask of pruning ratio `ratio` from the scales of the given layers
/// (one global threshold, see the file comment). `gammas[i]` are the scales
/// of the layer called `names[i]`.
[[nodiscard]] inline channel_mask channel_mask_from_scales(const std::vector<std::span<const float>>& gammas,
                                                           const std::vector<std::string>& names, double ratio,
                                                           empty_layer on_empty = empty_layer::keep_one) {
    if (!(ratio >= 0.0 && ratio < 1.0)) {
        throw prune_error(detail::concat("frugal::channel_mask: the pruning ratio must be in [0, 1), got ", ratio));
    }
    if (gammas.size() != names.size() || gammas.empty()) {
        throw prune_error(detail::concat("frugal::channel_mask: ", gammas.size(), " scale vectors for ", names.size(),
                                         " layer names (need the same positive number)"));
    }
    channel_mask m;
    m.names = names;
    m.ratio = ratio;
    std::vector<float> mag;
    for (const auto& g : gammas) {
        if (g.empty()) {
            throw prune_error("frugal::channel_mask: a layer without channels");
        }
        for (const float v : g) {
            if (!std::isfinite(v)) {
                throw prune_error("frugal::channel_mask: a batch-norm scale is NaN or infinite");
            }
            mag.push_back(std::fabs(v));
        }
        m.offsets.push_back(mag.size());
    }
    const std::size_t n = mag.size();
    // floor(N p); the tiny margin lands decimal ratios on their intended
    // integer (100 * 0.29 is 28.999999999999996 in binary)
    const auto k = static_cast<std::size_t>(std::floor(static_cast<double>(n) * ratio * (1.0 + 1e-12)));
    m.keep.assign(n, 1);
    if (ratio == 0.0) {
        m.threshold = -1.0f;
        return m;
    }
    std::vector<float> sorted = mag;
    std::nth_element(sorted.begin(), sorted.begin() + static_cast<std::ptrdiff_t>(k), sorted.end());
    m.threshold = sorted[k];
    for (std::size_t j = 0; j < n; ++j) {
        m.keep[j] = mag[j] > m.threshold ? 1 : 0;
    }
    for (std::size_t i = 0; i < m.layers(); ++i) {
        const std::size_t b = m.offsets[i], e = m.offsets[i + 1];
        if (std::find(m.keep.begin() + static_cast<std::ptrdiff_t>(b), m.keep.begin() + static_cast<std::ptrdiff_t>(e),
                      std::uint8_t{1}) != m.keep.begin() + static_cast<std::ptrdiff_t>(e)) {
            continue;
        }
        std::size_t best = b;
        for (std::size_t j = b + 1; j < e; ++j) {
            best = mag[j] > mag[best] ? j : best;
        }
        std::string msg = detail::concat("pruning ratio ", ratio, " would remove every channel of ", m.names[i], " (",
                                         e - b, " channels, largest |gamma| ", mag[best], " <= global threshold ",
                                         m.threshold, ")");
        if (on_empty == empty_layer::reject) {
            throw prune_error("frugal::channel_mask: " + msg + "; lower the ratio or allow the one-channel floor");
        }
        m.keep[best] = 1;
        m.clamped.push_back(i);
        m.warnings.push_back(msg + "; kept its channel " + std::to_string(best - b) + " (safety floor)");
    }
    return m;
}

/// The batch-norm layers `prune_rules<Model>` lets pruning shrink.
template <class Model>
[[nodiscard]] std::vector<const batchnorm*> prunable_batchnorms(const Model& net) {
    static_assert(prunable_model<Model>,
                  "frugal: network slimming prunes channels by their batch-norm scales, and this model has no "
                  "batch norm the pruning rules know (define frugal::prune_rules<Model>)");
    std::vector<const batchnorm*> bns;
    prune_rules<Model>::for_each(net, [&](const batchnorm& bn) { bns.push_back(&bn); });
    return bns;
}

/// The Early-Bird ticket mask of `net` at pruning ratio `ratio` (SPEC 2.2 step 2).
template <class Model>
[[nodiscard]] channel_mask ticket_mask(const Model& net, double ratio, empty_layer on_empty = empty_layer::keep_one) {
    std::vector<std::span<const float>> gammas;
    std::vector<std::string> names;
    for (const batchnorm* bn : prunable_batchnorms(net)) {
        gammas.emplace_back(bn->gamma().data(), bn->gamma().size());
        names.push_back(bn->name());
    }
    return channel_mask_from_scales(gammas, names, ratio, on_empty);
}

/// Soft pruning: sets gamma and beta of every pruned channel to zero, so that
/// the channel outputs zero (and zero after its ReLU). In evaluation mode the
/// masked model computes what `shrink(net, mask)` computes.
template <prunable_model Model>
void apply_mask(Model& net, const channel_mask& mask) {
    std::size_t i = 0;
    prune_rules<Model>::for_each(net, [&](batchnorm& bn) {
        if (i >= mask.layers() || mask.names[i] != bn.name() || mask.layer(i).size() != bn.channels()) {
            throw prune_error(detail::concat("frugal::apply_mask: the mask does not belong to this model (at ",
                                             bn.name(), ")"));
        }
        const auto l = mask.layer(i);
        for (std::size_t c = 0; c < l.size(); ++c) {
            if (l[c] == 0) {
                bn.gamma()(c) = 0.0f;
                bn.beta()(c) = 0.0f;
            }
        }
        ++i;
    });
    if (i != mask.layers()) {
        throw prune_error("frugal::apply_mask: the mask has more layers than the model");
    }
}

/// Normalized Hamming distance: the fraction of channels where the masks differ.
[[nodiscard]] inline double mask_distance(const channel_mask& a, const channel_mask& b) {
    if (a.size() != b.size() || a.offsets != b.offsets) {
        throw shape_error(detail::concat("frugal::mask_distance: masks of different layouts (", a.size(), " and ",
                                         b.size(), " channels in ", a.layers(), " and ", b.layers(), " layers)"));
    }
    if (a.size() == 0) {
        return 0.0;
    }
    std::size_t diff = 0;
    for (std::size_t j = 0; j < a.size(); ++j) {
        diff += (a.keep[j] != 0) != (b.keep[j] != 0) ? 1 : 0;
    }
    return static_cast<double>(diff) / static_cast<double>(a.size());
}

/// Watches the ticket mask, one per epoch, and says when it stopped changing.
class early_bird_detector {
public:
    /// @param epsilon  fires when every distance to the newest mask is <= epsilon
    /// @param window   masks in the FIFO (K); it fires only once the FIFO is full
    explicit early_bird_detector(double epsilon = 0.1, std::size_t window = 5) : epsilon_(epsilon), window_(window) {
        if (window < 2) {
            throw prune_error(detail::concat("frugal::early_bird_detector: the window needs at least 2 masks, got ",
                                             window));
        }
        if (!(epsilon >= 0.0)) {
            throw prune_error(detail::concat("frugal::early_bird_detector: epsilon must be >= 0, got ", epsilon));
        }
    }

    /// Adds the newest mask; returns whether the condition holds now. The
    /// first time it holds is remembered (found(), found_at()).
    bool push(channel_mask m) {
        if (!history_.empty() && !history_.front().same_layout(m)) {
            throw shape_error("frugal::early_bird_detector: the mask's layers differ from the earlier masks'");
        }
        history_.push_back(std::move(m));
        last_.clear();
        const std::size_t n = history_.size();
        if (n < window_) {
            return false;
        }
        const channel_mask& newest = history_.back();
        double worst = 0.0;
        for (std::size_t i = n - window_; i + 1 < n; ++i) {
            last_.push_back(mask_distance(newest, history_[i]));
            worst = std::max(worst, last_.back());
        }
        const bool now = worst <= epsilon_;
        if (now && !found_at_) {
            found_at_ = n - 1;
        }
        return now;
    }

    /// Whether the condition has held at some push.
    [[nodiscard]] bool found() const noexcept { return found_at_.has_value(); }
    /// 0-based index (into history()) of the mask whose push first fired.
    [[nodiscard]] std::optional<std::size_t> found_at() const noexcept { return found_at_; }
    /// Distances from the newest mask to the older ones in the FIFO, oldest
    /// first (empty until the FIFO is full).
    [[nodiscard]] const std::vector<double>& last_distances() const noexcept { return last_; }
    /// Every mask pushed, oldest first.
    [[nodiscard]] const std::vector<channel_mask>& history() const noexcept { return history_; }
    [[nodiscard]] std::size_t size() const noexcept { return history_.size(); }
    [[nodiscard]] double epsilon() const noexcept { return epsilon_; }
    [[nodiscard]] std::size_t window() const noexcept { return window_; }

    /// d[i][j] = mask_distance(history()[i], history()[j]) for every pair.
    [[nodiscard]] std::vector<std::vector<double>> distance_matrix() const {
        const std::size_t n = history_.size();
        std::vector<std::vector<double>> d(n, std::vector<double>(n, 0.0));
        for (std::size_t i = 0; i < n; ++i) {
            for (std::size_t j = i + 1; j < n; ++j) {
                d[i][j] = d[j][i] = mask_distance(history_[i], history_[j]);
            }
        }
        return d;
    }

private:
    double epsilon_;
    std::size_t window_;
    std::vector<channel_mask> history_;
    std::vector<double> last_;
    std::optional<std::size_t> found_at_;
};

} // namespace frugal

#endif
