#ifndef FRUGAL_PRUNE_SHRINK_HPP
#define FRUGAL_PRUNE_SHRINK_HPP

/// @file
/// Physical channel pruning: `shrink(net, mask)` returns a new, smaller model
/// of the same type in which only the surviving channels exist. For every
/// pruned batch-norm channel the producing convolution loses its output
/// filter, the batch norm loses the channel (gamma, beta, running mean and
/// variance) and the consuming layer (the next convolution, or the
/// classifier of VGG) loses the matching input slice. The copy keeps the
/// surviving weights exactly, so in evaluation mode the shrunk model computes
/// what the masked model (`apply_mask`) computes, at the cost of the smaller
/// one. It trains, evaluates, saves and loads like any other model.
///
/// Supported: `basic_vgg_t<ConvMaker>` (every convolution) and
/// `cifar_resnet_t<basic_block<ConvMaker>>` (the inner width of each block;
/// see prune_rules in prune/mask.hpp); a quantized search network shrinks to
/// the float network of its master weights.
/// To rebuild an empty model of the pruned shape (to load a checkpoint, or
/// for the re-initialised ticket), use `vgg(pruned_vgg_config(config, mask))`
/// and `pruned_cifar_resnet(depth, mask.kept_per_layer(), ...)`.

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "frugal/error.hpp"
#include "frugal/layers/batchnorm.hpp"
#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/dense.hpp"
#include "frugal/layers/pool.hpp"
#include "frugal/layers/residual.hpp"
#include "frugal/model/sequential.hpp"
#include "frugal/model/zoo/resnet.hpp"
#include "frugal/model/zoo/vgg.hpp"
#include "frugal/prune/mask.hpp"

namespace frugal {

namespace detail {

[[nodiscard]] inline std::vector<std::size_t> all_channels(std::size_t n) {
    std::vector<std::size_t> v(n);
    for (std::size_t i = 0; i < n; ++i) {
        v[i] = i;
    }
    return v;
}

/// dst.weight[o][i] = src.weight[outs[o]][ins[i]], dst.bias[o] = src.bias[outs[o]].
inline void copy_selected(conv2d& dst, const conv2d& src, const std::vector<std::size_t>& outs,
                          const std::vector<std::size_t>& ins) {
    const conv_options& a = dst.options();
    const conv_options& b = src.options();
    if (dst.out_channels() != outs.size() || dst.in_channels() != ins.size() || dst.kernel() != src.kernel() ||
        a.stride != b.stride || a.padding != b.padding || a.bias != b.bias) {
        throw prune_error(concat("frugal::shrink: cannot copy ", src.name(), " into a conv2d(", dst.in_channels(), "->",
                                 dst.out_channels(), ") keeping ", ins.size(), " inputs and ", outs.size(), " outputs"));
    }
    const std::size_t kk = src.kernel() * src.kernel(), src_in = src.in_channels();
    const float* w = src.weight().data();
    float* d = dst.weight().data();
    for (std::size_t o = 0; o < outs.size(); ++o) {
        for (std::size_t i = 0; i < ins.size(); ++i) {
            const float* from = w + (outs[o] * src_in + ins[i]) * kk;
            std::copy(from, from + kk, d + (o * ins.size() + i) * kk);
        }
        if (b.bias) {
            dst.bias()(o) = src.bias()(outs[o]);
        }
    }
}

/// The channels `keep` of src's scale, shift and running statistics.
inline void copy_selected(batchnorm& dst, const batchnorm& src, const std::vector<std::size_t>& keep) {
    if (dst.channels() != keep.size() || dst.eps() != src.eps() || dst.momentum() != src.momentum() ||
        dst.with_relu() != src.with_relu()) {
        throw prune_error(concat("frugal::shrink: cannot copy ", src.name(), " (eps ", src.eps(), ", momentum ",
                                 src.momentum(), ") into a batchnorm(", dst.channels(), ", eps ", dst.eps(),
                                 ", momentum ", dst.momentum(), ") keeping ", keep.size(), " channels"));
    }
    for (std::size_t c = 0; c < keep.size(); ++c) {
        dst.gamma()(c) = src.gamma()(keep[c]);
        dst.beta()(c) = src.beta()(keep[c]);
        dst.running_mean()(c) = src.running_mean()(keep[c]);
        dst.running_var()(c) = src.running_var()(keep[c]);
    }
}

/// dst.weight[o][i] = src.weight[o][ins[i]], the bias whole.
inline void copy_selected(dense& dst, const dense& src, const std::vector<std::size_t>& ins) {
    if (dst.in_features() != ins.size() || dst.out_features() != src.out_features() ||
        dst.has_bias() != src.has_bias()) {
        throw prune_error(concat("frugal::shrink: cannot copy ", src.name(), " into a dense(", dst.in_features(), "->",
                                 dst.out_features(), ") keeping ", ins.size(), " inputs"));
    }
    for (std::size_t o = 0; o < src.out_features(); ++o) {
        for (std::size_t i = 0; i < ins.size(); ++i) {
            dst.weight()(o, i) = src.weight()(o, ins[i]);
        }
    }
    for (std::size_t o = 0; o < src.bias().size(); ++o) {
        dst.bias()(o) = src.bias()(o);
    }
}

/// The float convolution of a block's convolution: itself, or a quantized layer's master weights.
template <class Conv>
[[nodiscard]] const conv2d& master(const Conv& c) noexcept {
    if constexpr (std::is_same_v<Conv, conv2d>) {
        return c;
    } else {
        return c.float_conv();
    }
}

/// A fresh conv2d of src's geometry with all of its values.
[[nodiscard]] inline conv2d clone(const conv2d& src) {
    conv2d c(src.in_channels(), src.out_channels(), src.kernel(), src.options());
    copy_selected(c, src, all_channels(src.out_channels()), all_channels(src.in_channels()));
    return c;
}
[[nodiscard]] inline batchnorm clone(const batchnorm& src) {
    batchnorm b(src.channels(), src.momentum(), src.eps(), src.with_relu());
    copy_selected(b, src, all_channels(src.channels()));
    return b;
}

/// Throws unless `mask` was computed for a model with net's prunable layers.
template <prunable_model Model>
void check_mask_fits(const Model& net, const channel_mask& mask) {
    const auto bns = prunable_batchnorms(net);
    bool ok = bns.size() == mask.layers();
    for (std::size_t i = 0; ok && i < bns.size(); ++i) {
        ok = bns[i]->name() == mask.names[i] && bns[i]->channels() == mask.layer(i).size();
    }
    if (!ok) {
        throw prune_error(concat("frugal::shrink: the mask (", mask.layers(), " layers, ", mask.size(),
                                 " channels) was not computed for this model (", bns.size(), " prunable layers)"));
    }
    for (std::size_t i = 0; i < mask.layers(); ++i) {
        if (mask.kept(i) == 0) {
            throw prune_error(concat("frugal::shrink: the mask removes every channel of ", mask.names[i]));
        }
    }
}

} // namespace detail

/// VGG with only the channels `mask` keeps (mask from ticket_mask(net, p)).
/// The units may use any convolution with float master weights (conv2d, or
/// quantized_conv after a low-precision search); the shrunk network is a
/// float one.
template <class ConvMaker>
[[nodiscard]] vgg_t shrink(const basic_vgg_t<ConvMaker>& net, const channel_mask& mask) {
    using detail::master;
    detail::check_mask_fits(net, mask);
    const auto& units = net.template get<0>();
    std::vector<vgg_unit> small;
    small.reserve(units.size());
    std::vector<std::size_t> ins = detail::all_channels(units[0].conv().in_channels());
    for (std::size_t i = 0; i < units.size(); ++i) {
        const std::vector<std::size_t> outs = mask.kept_channels(i);
        small.emplace_back(ins.size(), outs.size(), units[i].pooled());
        detail::copy_selected(small.back().conv(), master(units[i].conv()), outs, ins);
        detail::copy_selected(small.back().bn(), units[i].bn(), outs);
        ins = outs;
    }
    const dense& head = net.template get<2>();
    dense classifier(ins.size(), head.out_features(), head.has_bias());
    detail::copy_selected(classifier, head, ins);
    vgg_t out(repeated<vgg_unit>(std::move(small)), global_avg_pool{}, std::move(classifier));
    out.set_input_grad(master(units[0].conv()).input_grad());
    return out;
}

/// CIFAR ResNet whose blocks keep only the inner channels `mask` keeps. The
/// blocks may use any convolution with float master weights (conv2d, or
/// quantized_conv after a low-precision search: `float_conv()`); the shrunk
/// network is a float one.
template <class ConvMaker>
[[nodiscard]] cifar_resnet_t<basic_block<>> shrink(const cifar_resnet_t<basic_block<ConvMaker>>& net,
                                                   const channel_mask& mask) {
    using block = basic_block<>;
    using detail::master;
    detail::check_mask_fits(net, mask);
    const auto& blocks = net.template get<2>();
    std::vector<block> small;
    small.reserve(blocks.size());
    for (std::size_t i = 0; i < blocks.size(); ++i) {
        const basic_block<ConvMaker>& b = blocks[i];
        const std::vector<std::size_t> mid = mask.kept_channels(i);
        const auto all_in = detail::all_channels(b.in_channels()), all_out = detail::all_channels(b.out_channels());
        small.emplace_back(b.in_channels(), mid.size(), b.out_channels(), b.stride());
        block& s = small.back();
        detail::copy_selected(s.conv1(), master(b.conv1()), mid, all_in);
        detail::copy_selected(s.bn1(), b.bn1(), mid);
        detail::copy_selected(s.conv2(), master(b.conv2()), all_out, mid);
        detail::copy_selected(s.bn2(), b.bn2(), all_out);
        if (b.has_projection()) {
            detail::copy_selected(s.projection_conv(), master(b.projection_conv()), all_out, all_in);
            detail::copy_selected(s.projection_bn(), b.projection_bn(), all_out);
        }
    }
    const dense& head = net.template get<4>();
    dense classifier(head.in_features(), head.out_features(), head.has_bias());
    detail::copy_selected(classifier, head, detail::all_channels(head.in_features()));
    cifar_resnet_t<block> out(detail::clone(net.template get<0>()), detail::clone(net.template get<1>()),
                              repeated<block>(std::move(small)), global_avg_pool{}, std::move(classifier));
    out.set_input_grad(net.template get<0>().input_grad());
    return out;
}

/// The VGG width list (0 = pool) that `mask` leaves of `config`: each
/// convolution's width replaced by its surviving channels.
[[nodiscard]] inline std::vector<std::size_t> pruned_vgg_config(const std::vector<std::size_t>& config,
                                                                const channel_mask& mask) {
    std::vector<std::size_t> out = config;
    std::size_t layer = 0;
    for (auto& w : out) {
        if (w == 0) {
            continue;
        }
        if (layer >= mask.layers() || mask.layer(layer).size() != w) {
            throw prune_error(detail::concat("frugal::pruned_vgg_config: the mask (", mask.layers(),
                                             " layers) does not match the configuration at convolution ", layer));
        }
        w = mask.kept(layer++);
    }
    if (layer != mask.layers()) {
        throw prune_error(detail::concat("frugal::pruned_vgg_config: the configuration has ", layer,
                                         " convolutions, the mask ", mask.layers(), " layers"));
    }
    return out;
}

/// A CIFAR ResNet (freshly initialised) whose block i has inner width mids[i]:
/// the structure of a pruned ticket (the same arguments as cifar_resnet).
[[nodiscard]] inline cifar_resnet_t<basic_block<>> pruned_cifar_resnet(std::size_t depth,
                                                                       const std::vector<std::size_t>& mids,
                                                                       std::size_t in_channels = 1,
                                                                       std::size_t classes = 10,
                                                                       std::uint64_t seed = 1, std::size_t width = 16) {
    using block = basic_block<>;
    const std::size_t n = 3 * resnet_blocks_per_stage(depth);
    if (mids.size() != n) {
        throw prune_error(detail::concat("frugal::pruned_cifar_resnet: ResNet-", depth, " has ", n, " blocks, got ",
                                         mids.size(), " inner widths"));
    }
    std::size_t i = 0;
    auto blocks = resnet_stages<block>(depth, width, [&](std::size_t in, std::size_t out, std::size_t s) {
        return block(in, mids[i++], out, s);
    });
    cifar_resnet_t<block> net(conv2d(in_channels, width, 3, {1, 1, false}), batchnorm(width, 0.1f, 1e-5f, true),
                              repeated<block>(std::move(blocks)), global_avg_pool{}, dense(4 * width, classes));
    rng g(seed);
    net.reset_parameters(g);
    net.set_input_grad(false);
    return net;
}

} // namespace frugal

#endif
