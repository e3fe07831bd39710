#ifndef FRUGAL_MODEL_ZOO_SHIFTADDNET_HPP
#define FRUGAL_MODEL_ZOO_SHIFTADDNET_HPP

/// @file
/// ShiftAddNet (SPEC 4): every convolution of a CIFAR ResNet's basic blocks
/// becomes a shift layer followed by an adder layer,
/// `Shift(k x k, in -> out, stride s, pad) -> Adder(k x k, out -> out, stride 1,
/// same padding)`, and the batch normalization that followed the
/// convolution follows the adder (the block's bn1 / bn2 / shortcut bn). The
/// 1x1 projection shortcuts become 1x1 shift + 1x1 adder. The stem
/// convolution and the final dense classifier stay ordinary, as in the paper.
///
/// The zoo has the three networks of the ablation, each a
/// `cifar_resnet_t<basic_block<Maker>>`:
/// - `shiftaddnet_resnet`: shift then adder (`shift_add_conv`);
/// - `shift_resnet`: shift layers only (DeepShift-PS);
/// - `adder_resnet`: adder layers only (AdderNet).
/// The variants (FIX8 adders, frozen "fixed shift" layers, float shift
/// path) are chosen by the maker's configuration type, at compile time.

#include <cstddef>
#include <cstdint>
#include <string>
#include <utility>
#include <vector>

#include "frugal/layers/adder.hpp"
#include "frugal/layers/batchnorm.hpp"
#include "frugal/layers/conv2d.hpp"
#include "frugal/layers/dense.hpp"
#include "frugal/layers/layer.hpp"
#include "frugal/layers/pool.hpp"
#include "frugal/layers/residual.hpp"
#include "frugal/layers/shift.hpp"
#include "frugal/model/sequential.hpp"
#include "frugal/model/zoo/resnet.hpp"

namespace frugal {

/// The compile-time configuration of a ShiftAddNet's layers. `ErrorBits`
/// (0, or 2..8) is the width of the errors of the fixed-point backward of
/// both layers; FIX8 trains in fixed point end to end by default (8-bit
/// errors, SPEC 4.2), `shiftadd_config<adder_precision::fix8, false,
/// shift_arithmetic::fixed, 0>` keeps a float backward.
template <adder_precision Precision = adder_precision::fp32, bool FixedShift = false,
          shift_arithmetic Arithmetic = shift_arithmetic::fixed,
          int ErrorBits = (Precision == adder_precision::fix8 ? 8 : 0)>
struct shiftadd_config {
    static constexpr adder_precision precision = Precision;
    static constexpr bool fixed_shift = FixedShift;
    static constexpr shift_arithmetic arithmetic = Arithmetic;
    static constexpr int error_bits = ErrorBits;
    static_assert(ErrorBits == 0 || Precision == adder_precision::fix8,
                  "shiftadd_config: a fixed-point backward (ErrorBits > 0) needs FIX8 adders");

    [[nodiscard]] static shift_options shift(const conv_options& o) {
        shift_options s;
        s.stride = o.stride;
        s.padding = o.padding;
        s.arithmetic = Arithmetic;
        s.freeze_shift = FixedShift;
        s.error_bits = ErrorBits;
        if (FixedShift) {
            // the fixed-shift variant reads signs with threshold 0.5 (SPEC 4.2 [impl])
            s.sign = sign_rule::threshold;
            s.threshold = 0.5f;
        }
        return s;
    }
    [[nodiscard]] static adder_options adder(std::size_t stride, std::size_t padding) {
        adder_options a;
        a.stride = stride;
        a.padding = padding;
        a.precision = Precision;
        a.error_bits = ErrorBits;
        return a;
    }
};

/// Checks that a block's convolution asks for no bias (shift and adder layers have none).
inline void shiftadd_check_no_bias(const conv_options& o, const char* what) {
    if (o.bias) {
        throw error(detail::concat("frugal::", what, ": shift and adder layers have no bias"));
    }
}

/// One convolution of ShiftAddNet: a shift layer (in -> out, the
/// convolution's stride and padding), then an adder layer (out -> out, same
/// kernel, stride 1, same padding). The batch norm that follows belongs to
/// the enclosing block.
template <class Config = shiftadd_config<>>
class shift_add_conv {
public:
    shift_add_conv(std::size_t in, std::size_t out, std::size_t k, conv_options o)
        : shift_(in, out, k, Config::shift(o)), adder_(out, out, k, Config::adder(1, (k - 1) / 2)) {
        shiftadd_check_no_bias(o, "shift_add_conv");
        set_name("");
    }

    [[nodiscard]] shift_conv2d& shift_layer() noexcept { return shift_; }
    [[nodiscard]] adder_conv2d& adder_layer() noexcept { return adder_; }
    [[nodiscard]] const shift_conv2d& shift_layer() const noexcept { return shift_; }
    [[nodiscard]] const adder_conv2d& adder_layer() const noexcept { return adder_; }
    [[nodiscard]] const std::string& kind() const noexcept { return kind_; }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }

    void set_name(std::string prefix) {
        name_ = std::move(prefix);
        shift_.set_name(child_name(name_, "shift"));
        adder_.set_name(child_name(name_, "adder"));
    }
    void set_input_grad(bool on) {
        shift_.set_input_grad(on);
        adder_.set_input_grad(true);
    }
    void reset_parameters(rng& g) {
        shift_.reset_parameters(g);
        adder_.reset_parameters(g);
    }
    [[nodiscard]] shape4 output_shape(const shape4& x) const { return adder_.output_shape(shift_.output_shape(x)); }
    const tensor4& forward(context& ctx, const tensor4& x) { return adder_.forward(ctx, shift_.forward(ctx, x)); }
    const tensor4& backward(context& ctx, const tensor4& dy) { return shift_.backward(ctx, adder_.backward(ctx, dy)); }
    void collect_parameters(std::vector<parameter>& ps) {
        shift_.collect_parameters(ps);
        adder_.collect_parameters(ps);
    }
    void save(archive_writer& a) const {
        a.tag("shift_add_conv/1");
        shift_.save(a);
        adder_.save(a);
    }
    void load(archive_reader& a) {
        a.expect("shift_add_conv/1");
        shift_.load(a);
        adder_.load(a);
    }
    /// Visits the shift and the adder layer.
    template <class F>
    void for_each_layer(F&& f) {
        f(shift_);
        f(adder_);
    }

private:
    shift_conv2d shift_;
    adder_conv2d adder_;
    std::string kind_ = "shift_add_conv";
    std::string name_;
};

/// basic_block makers (see frugal::plain_conv).
template <class Config = shiftadd_config<>>
struct shift_add_maker {
    using type = shift_add_conv<Config>;
    [[nodiscard]] static type make(std::size_t in, std::size_t out, std::size_t k, conv_options o) {
        return type(in, out, k, o);
    }
};
template <class Config = shiftadd_config<>>
struct shift_maker {
    using type = shift_conv2d;
    [[nodiscard]] static type make(std::size_t in, std::size_t out, std::size_t k, conv_options o) {
        shiftadd_check_no_bias(o, "shift_maker");
        return type(in, out, k, Config::shift(o));
    }
};
template <class Config = shiftadd_config<>>
struct adder_maker {
    using type = adder_conv2d;
    [[nodiscard]] static type make(std::size_t in, std::size_t out, std::size_t k, conv_options o) {
        shiftadd_check_no_bias(o, "adder_maker");
        return type(in, out, k, Config::adder(o.stride, o.padding));
    }
};

static_assert(layer<shift_add_conv<>>);

template <class Config = shiftadd_config<>>
using shiftaddnet_resnet_t = cifar_resnet_t<basic_block<shift_add_maker<Config>>>;
template <class Config = shiftadd_config<>>
using shift_resnet_t = cifar_resnet_t<basic_block<shift_maker<Config>>>;
template <class Config = shiftadd_config<>>
using adder_resnet_t = cifar_resnet_t<basic_block<adder_maker<Config>>>;

/// ShiftAddNet ResNet of depth 6n + 2 (ResNet-20 by default).
template <class Config = shiftadd_config<>>
[[nodiscard]] shiftaddnet_resnet_t<Config> shiftaddnet_resnet(std::size_t depth = 20, std::size_t in_channels = 1,
                                                              std::size_t classes = 10, std::uint64_t seed = 1,
                                                              std::size_t width = 16) {
    return cifar_resnet<basic_block<shift_add_maker<Config>>>(depth, in_channels, classes, seed, width);
}
/// The shift-only ablation (every block convolution a shift layer).
template <class Config = shiftadd_config<>>
[[nodiscard]] shift_resnet_t<Config> shift_resnet(std::size_t depth = 20, std::size_t in_channels = 1,
                                                  std::size_t classes = 10, std::uint64_t seed = 1,
                                                  std::size_t width = 16) {
    return cifar_resnet<basic_block<shift_maker<Config>>>(depth, in_channels, classes, seed, width);
}
/// The adder-only ablation (every block convolution an adder layer).
template <class Config = shiftadd_config<>>
[[nodiscard]] adder_resnet_t<Config> adder_resnet(std::size_t depth = 20, std::size_t in_channels = 1,
                                                  std::size_t classes = 10, std::uint64_t seed = 1,
                                                  std::size_t width = 16) {
    return cifar_resnet<basic_block<adder_maker<Config>>>(depth, in_channels, classes, seed, width);
}

} // namespace frugal

#endif
