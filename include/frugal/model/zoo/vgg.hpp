#ifndef FRUGAL_MODEL_ZOO_VGG_HPP
#define FRUGAL_MODEL_ZOO_VGG_HPP

/// @file
/// VGG-16 with batch normalization, CIFAR variant (as used by network
/// slimming and Early-Bird tickets): 13 3x3 convolutions with widths
/// 64 64 | 128 128 | 256 256 256 | 512 512 512 | 512 512 512, each followed by
/// batch normalization and ReLU, max pooling after each group while the
/// resolution allows, global average pooling and one dense classifier.
/// On 32 x 32 images the five pools reach 1 x 1; on 28 x 28 the fifth pool
/// is left out (28 -> 14 -> 7 -> 3 -> 1).
///
/// The convolutions are conv2d by default; `vgg<quantized_conv_maker>(...)`
/// builds the same network on integer convolutions (EB Train's low-precision
/// search; every convolution quantized, the classifier float).

#include <cstddef>
#include <cstdint>
#include <vector>

#include "frugal/layers/activation.hpp"
#include "frugal/layers/batchnorm.hpp"
#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/dense.hpp"
#include "frugal/layers/pool.hpp"
#include "frugal/model/sequential.hpp"

namespace frugal {

/// conv 3x3 -> batch norm -> ReLU, then a 2x2 max pool when `pool` is set.
/// ConvMaker builds the convolution (plain_conv: conv2d).
template <class ConvMaker = plain_conv>
class basic_vgg_unit {
public:
    using conv_type = typename ConvMaker::type;
    static_assert(layer<conv_type>, "frugal::basic_vgg_unit<ConvMaker>: ConvMaker::type must model frugal::layer");

    basic_vgg_unit(std::size_t in, std::size_t out, bool pool)
        : conv_(ConvMaker::make(in, out, 3, {1, 1, false})), bn_(out, 0.1f, 1e-5f, true), pool_(2), pooled_(pool) {}

    [[nodiscard]] conv_type& conv() noexcept { return conv_; }
    [[nodiscard]] batchnorm& bn() noexcept { return bn_; }
    [[nodiscard]] const conv_type& conv() const noexcept { return conv_; }
    [[nodiscard]] const batchnorm& bn() const noexcept { return bn_; }
    [[nodiscard]] bool pooled() const noexcept { return pooled_; }

    void set_name(std::string prefix) {
        conv_.set_name(child_name(prefix, "conv"));
        bn_.set_name(child_name(prefix, "bn"));
        pool_.set_name(child_name(prefix, "pool"));
    }
    void set_input_grad(bool on) { conv_.set_input_grad(on); }
    void reset_parameters(rng& g) {
        conv_.reset_parameters(g);
        bn_.reset_parameters(g);
    }
    [[nodiscard]] shape4 output_shape(const shape4& x) const {
        const shape4 s = bn_.output_shape(conv_.output_shape(x));
        return pooled_ ? pool_.output_shape(s) : s;
    }
    const tensor4& forward(context& ctx, const tensor4& x) {
        const tensor4& a = bn_.forward(ctx, conv_.forward(ctx, x)); // bn_ applies the ReLU
        return pooled_ ? pool_.forward(ctx, a) : a;
    }
    const tensor4& backward(context& ctx, const tensor4& dy) {
        const tensor4& g = pooled_ ? pool_.backward(ctx, dy) : dy;
        return conv_.backward(ctx, bn_.backward(ctx, g));
    }
    void collect_parameters(std::vector<parameter>& ps) {
        conv_.collect_parameters(ps);
        bn_.collect_parameters(ps);
    }
    void save(archive_writer& a) const {
        a.tag("vgg_unit/1");
        a.u32(pooled_ ? 1 : 0);
        conv_.save(a);
        bn_.save(a);
    }
    void load(archive_reader& a) {
        a.expect("vgg_unit/1");
        const std::size_t at = a.offset();
        if ((a.u32() != 0) != pooled_) {
            a.fail(at, "vgg_unit: the checkpoint's pooling differs from the model's");
        }
        conv_.load(a);
        bn_.load(a);
    }
    template <class F>
    void for_each_layer(F&& f) {
        f(conv_);
        f(bn_);
        if (pooled_) {
            f(pool_);
        }
    }

private:
    conv_type conv_;
    batchnorm bn_; // with its ReLU
    max_pool pool_;
    bool pooled_;
};

using vgg_unit = basic_vgg_unit<>;
static_assert(layer<vgg_unit>);

template <class ConvMaker = plain_conv>
using basic_vgg_t = sequential<repeated<basic_vgg_unit<ConvMaker>>, global_avg_pool, dense>;
using vgg_t = basic_vgg_t<>;

/// The VGG-16 convolution widths (CIFAR variant); 0 marks a pool.
inline const std::vector<std::size_t>& vgg16_config() {
    static const std::vector<std::size_t> cfg = {64, 64, 0, 128, 128, 0, 256, 256, 256, 0,
                                                 512, 512, 512, 0, 512, 512, 512, 0};
    return cfg;
}

/// VGG from a width list (0 = pool after the previous convolution), e.g.
/// vgg16_config(), or a pruned list; `image` is the input height and width.
template <class ConvMaker = plain_conv>
[[nodiscard]] basic_vgg_t<ConvMaker> vgg(const std::vector<std::size_t>& config, std::size_t in_channels = 1,
                                         std::size_t image = 28, std::size_t classes = 10, std::uint64_t seed = 1) {
    using unit = basic_vgg_unit<ConvMaker>;
    std::vector<unit> units;
    std::size_t in = in_channels, size = image;
    for (std::size_t i = 0; i < config.size(); ++i) {
        if (config[i] == 0) {
            continue;
        }
        const bool pool_next = i + 1 < config.size() && config[i + 1] == 0 && size >= 2;
        units.emplace_back(in, config[i], pool_next);
        in = config[i];
        size = pool_next ? size / 2 : size;
    }
    if (units.empty()) {
        throw error("frugal::vgg: the configuration has no convolution");
    }
    basic_vgg_t<ConvMaker> net(repeated<unit>(std::move(units)), global_avg_pool{}, dense(in, classes));
    rng g(seed);
    net.reset_parameters(g);
    net.set_input_grad(false);
    return net;
}

/// VGG-16-BN for CIFAR-style inputs.
template <class ConvMaker = plain_conv>
[[nodiscard]] basic_vgg_t<ConvMaker> vgg16(std::size_t in_channels = 1, std::size_t image = 28,
                                           std::size_t classes = 10, std::uint64_t seed = 1) {
    return vgg<ConvMaker>(vgg16_config(), in_channels, image, classes, seed);
}

} // namespace frugal

#endif
