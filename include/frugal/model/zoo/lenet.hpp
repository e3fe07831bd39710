#ifndef FRUGAL_MODEL_ZOO_LENET_HPP
#define FRUGAL_MODEL_ZOO_LENET_HPP

/// @file
/// LeNet-5 (ReLU and max-pool variant): conv 5x5 -> 6, pool, conv 5x5 -> 16,
/// pool, dense 400 -> 120 -> 84 -> classes. For 28 x 28 inputs the first
/// convolution pads by 2, so both 28 x 28 and 32 x 32 images reach the
/// classic 16 x 5 x 5 feature map.

#include <cstddef>
#include <cstdint>

#include "frugal/layers/activation.hpp"
#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/dense.hpp"
#include "frugal/layers/pool.hpp"
#include "frugal/model/sequential.hpp"

namespace frugal {

using lenet5_t = sequential<conv2d, relu, max_pool, conv2d, relu, max_pool, flatten, dense, relu, dense, relu, dense>;

/// @param in_channels 1 (Fashion-MNIST) or 3 (CIFAR); @param image 28 or 32
[[nodiscard]] inline lenet5_t lenet5(std::size_t in_channels = 1, std::size_t image = 28, std::size_t classes = 10,
                                     std::uint64_t seed = 1) {
    if (image != 28 && image != 32) {
        throw error(detail::concat("frugal::lenet5: images must be 28 x 28 or 32 x 32, not ", image, " x ", image));
    }
    lenet5_t net(conv2d(in_channels, 6, 5, {1, image == 28 ? 2u : 0u, true}), relu{}, max_pool(2),
                 conv2d(6, 16, 5, {1, 0, true}), relu{}, max_pool(2), flatten{}, dense(400, 120), relu{},
                 dense(120, 84), relu{}, dense(84, classes));
    rng g(seed);
    net.reset_parameters(g);
    net.set_input_grad(false);
    return net;
}

} // namespace frugal

#endif
