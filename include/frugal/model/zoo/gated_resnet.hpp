#ifndef FRUGAL_MODEL_ZOO_GATED_RESNET_HPP
#define FRUGAL_MODEL_ZOO_GATED_RESNET_HPP

/// @file
/// The CIFAR ResNet of zoo/resnet.hpp with E2-Train's selective layer update:
/// the 3n residual blocks of the three stages are one `gated<Block, Gate>`
/// (layer 2 of the sequential, in place of `repeated<Block>`), which owns the
/// gate network shared by every block (one LSTM over the whole depth, as in
/// SkipNet). Stem convolution, pooling and classifier are unchanged.

#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "frugal/layers/batchnorm.hpp"
#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/dense.hpp"
#include "frugal/layers/gate.hpp"
#include "frugal/layers/gated.hpp"
#include "frugal/layers/pool.hpp"
#include "frugal/layers/residual.hpp"
#include "frugal/model/sequential.hpp"
#include "frugal/model/zoo/resnet.hpp"

namespace frugal {

template <class Block = basic_block<>, class Gate = recurrent_gate>
using gated_cifar_resnet_t = sequential<conv2d, batchnorm, gated<Block, Gate>, global_avg_pool, dense>;

/// A gated CIFAR ResNet of depth 6n + 2; `net.template get<2>()` is the gated stack.
template <class Block = basic_block<>, class Gate = recurrent_gate>
[[nodiscard]] gated_cifar_resnet_t<Block, Gate> gated_cifar_resnet(std::size_t depth, slu_options slu = {},
                                                                   std::size_t in_channels = 1,
                                                                   std::size_t classes = 10, std::uint64_t seed = 1,
                                                                   std::size_t width = 16) {
    auto blocks = resnet_stages<Block>(depth, width,
                                       [](std::size_t in, std::size_t out, std::size_t s) { return Block(in, out, s); });
    gated_cifar_resnet_t<Block, Gate> net(conv2d(in_channels, width, 3, {1, 1, false}),
                                          batchnorm(width, 0.1f, 1e-5f, true), gated<Block, Gate>(std::move(blocks), slu),
                                          global_avg_pool{}, dense(4 * width, classes));
    rng g(seed);
    net.reset_parameters(g);
    net.set_input_grad(false);
    return net;
}

} // namespace frugal

#endif
