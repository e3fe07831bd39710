#ifndef FRUGAL_MODEL_ZOO_RESNET_HPP
#define FRUGAL_MODEL_ZOO_RESNET_HPP

/// @file
/// CIFAR ResNets of depth 6n + 2 (20, 32, 38, 44, 56, 74, 110, ...): a 3x3
/// stem convolution to 16 channels with batch normalization and ReLU, three stages of n basic blocks with 16,
/// 32 and 64 channels (the first block of stages 2 and 3 halves the
/// resolution and uses a projection shortcut), global average pooling and a
/// dense classifier. Works for 1 x 28 x 28 and 3 x 32 x 32 inputs.
///
/// The block type is a template parameter: `cifar_resnet_t<basic_block<>>` is
/// the plain network; methods that change the blocks (gating, quantized or
/// shift-add convolutions) use the same skeleton with their own block.

#include <cstddef>
#include <cstdint>
#include <vector>

#include "frugal/layers/activation.hpp"
#include "frugal/layers/batchnorm.hpp"
#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/dense.hpp"
#include "frugal/layers/pool.hpp"
#include "frugal/layers/residual.hpp"
#include "frugal/model/sequential.hpp"

namespace frugal {

template <class Block = basic_block<>>
using cifar_resnet_t = sequential<conv2d, batchnorm, repeated<Block>, global_avg_pool, dense>;

/// Checks depth = 6n + 2 and returns n.
[[nodiscard]] inline std::size_t resnet_blocks_per_stage(std::size_t depth) {
    if (depth < 8 || (depth - 2) % 6 != 0) {
        throw error(detail::concat("frugal::cifar_resnet: depth must be 6n + 2 (20, 38, 56, 74, 110, ...), not ", depth));
    }
    return (depth - 2) / 6;
}

/// The blocks of the three stages, built with `make(in, out, stride)`.
template <class Block, class Make>
[[nodiscard]] std::vector<Block> resnet_stages(std::size_t depth, std::size_t width, Make&& make) {
    const std::size_t n = resnet_blocks_per_stage(depth);
    std::vector<Block> blocks;
    std::size_t in = width;
    for (std::size_t stage = 0; stage < 3; ++stage) {
        const std::size_t out = width << stage;
        for (std::size_t i = 0; i < n; ++i) {
            blocks.push_back(make(in, out, (i == 0 && stage > 0) ? 2 : 1));
            in = out;
        }
    }
    return blocks;
}

/// A CIFAR ResNet of the given depth with plain basic blocks.
template <class Block = basic_block<>>
[[nodiscard]] cifar_resnet_t<Block> cifar_resnet(std::size_t depth, std::size_t in_channels = 1,
                                                 std::size_t classes = 10, std::uint64_t seed = 1,
                                                 std::size_t width = 16) {
    auto blocks = resnet_stages<Block>(depth, width,
                                       [](std::size_t in, std::size_t out, std::size_t s) { return Block(in, out, s); });
    cifar_resnet_t<Block> net(conv2d(in_channels, width, 3, {1, 1, false}), batchnorm(width, 0.1f, 1e-5f, true),
                              repeated<Block>(std::move(blocks)), global_avg_pool{}, dense(4 * width, classes));
    rng g(seed);
    net.reset_parameters(g);
    net.set_input_grad(false);
    return net;
}

} // namespace frugal

#endif
