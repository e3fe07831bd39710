#ifndef FRUGAL_MODEL_ZOO_DFQ_RESNET_HPP
#define FRUGAL_MODEL_ZOO_DFQ_RESNET_HPP

/// @file
/// FracTrain's CIFAR ResNets: the quantized ResNet (every residual-block
/// convolution on the integer kernels; the stem and the classifier float,
/// SPEC §3.2) and its DFQ form, whose blocks are run by
/// `dynamic_precision` with a gate choosing each sample's precision per block.

#include <cstddef>
#include <cstdint>

#include "frugal/layers/dynamic_precision.hpp"
#include "frugal/layers/quantized_conv.hpp"
#include "frugal/model/zoo/resnet.hpp"

namespace frugal {

/// The residual block of FracTrain's networks: both convolutions (and the projection) quantized.
using quantized_block = basic_block<quantized_conv_maker>;

template <class Set = dfq_default_set>
using dfq_cifar_resnet_t =
    sequential<conv2d, batchnorm, dynamic_precision<quantized_block, Set>, global_avg_pool, dense>;

/// A DFQ CIFAR ResNet of depth 6n + 2; `net.template get<2>()` is the dynamic_precision stack.
template <class Set = dfq_default_set>
[[nodiscard]] dfq_cifar_resnet_t<Set> dfq_cifar_resnet(std::size_t depth, dfq_options o = {},
                                                       std::size_t in_channels = 1, std::size_t classes = 10,
                                                       std::uint64_t seed = 1, std::size_t width = 16) {
    auto blocks = resnet_stages<quantized_block>(
        depth, width, [](std::size_t in, std::size_t out, std::size_t s) { return quantized_block(in, out, s); });
    dfq_cifar_resnet_t<Set> net(conv2d(in_channels, width, 3, {1, 1, false}), batchnorm(width, 0.1f, 1e-5f, true),
                                dynamic_precision<quantized_block, Set>(std::move(blocks), o), global_avg_pool{},
                                dense(4 * width, classes));
    rng g(seed);
    net.reset_parameters(g);
    net.set_input_grad(false);
    return net;
}

} // namespace frugal

#endif
