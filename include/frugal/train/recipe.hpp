#ifndef FRUGAL_TRAIN_RECIPE_HPP
#define FRUGAL_TRAIN_RECIPE_HPP

/// @file
/// A recipe: the techniques of a training run, chosen by type, resolved into
/// the types `frugal::fit` takes (model, optimizer, sampler, precision
/// schedule) at compile time:
///
///     using r = frugal::recipe<frugal::technique::smd, frugal::technique::slu,
///                              frugal::technique::pfq, frugal::technique::signsgd>;
///     auto net = r::make_model(38, opts);                  // gated ResNet-38 of 8-bit blocks
///     r::optimizer_type opt = r::make_optimizer(frugal::parameters_of(net), opts);
///     auto sched = r::make_schedule(opts, iterations);     // PFQ
///     frugal::fit(net, opt, train, &test, fit_opts, r::make_sampler(opts), &sched);
///
/// Techniques (tags in `frugal::technique`), by what they decide:
/// - how a block's convolutions compute (at most one): `fractrain8` (8-bit
///   forward, input- and weight-gradient products on the integer kernels,
///   FW-8/BW-8), `pfq` (the same kernels with FracTrain's progressive
///   precision), `psg` (E2-Train's predictive sign gradient: 8-bit
///   activations and weights, 16-bit errors, the sign predicted from the
///   most significant bits), `shiftadd<Config>` (ShiftAddNet's shift and
///   adder layers);
/// - which blocks run per sample: `slu` (E2-Train's gated blocks);
/// - which mini-batches run: `smd` (E2-Train's stochastic dropping);
/// - the optimizer: `signsgd` (sign updates with momentum; PSG already takes
///   the sign and pairs with SGD updates), `slimming` (EB Train's L1 penalty
///   on the batch-norm scales, for the ticket search).
/// Without a tag the recipe keeps the FP32 default (plain convolutions,
/// every block, every batch, SGD): `recipe<>` is the baseline.
///
/// Combinations that cannot work are compile-time errors with one sentence
/// saying why (e.g. PSG with FracTrain: both decide how the convolutions
/// compute). The CIFAR-style ResNet of depth 6n + 2 is the network.

#include <cstddef>
#include <cstdint>
#include <string>
#include <type_traits>
#include <utility>
#include <vector>

#include "frugal/error.hpp"
#include "frugal/layers/gated.hpp"
#include "frugal/layers/quantized_conv.hpp"
#include "frugal/layers/residual.hpp"
#include "frugal/model/zoo/gated_resnet.hpp"
#include "frugal/model/zoo/resnet.hpp"
#include "frugal/model/zoo/shiftaddnet.hpp"
#include "frugal/numeric/precision.hpp"
#include "frugal/optim/psg.hpp"
#include "frugal/optim/sgd.hpp"
#include "frugal/prune/slimming.hpp"
#include "frugal/train/precision_schedule.hpp"
#include "frugal/train/sampler.hpp"
#include "frugal/train/trainer.hpp" // every_batch

namespace frugal {

/// The techniques a recipe combines (tags).
namespace technique {
struct smd {};        ///< E2-Train: stochastic mini-batch dropping
struct slu {};        ///< E2-Train: selective layer update (gated residual blocks)
struct psg {};        ///< E2-Train: predictive sign gradient descent
struct signsgd {};    ///< sign updates (signSGD with momentum)
struct slimming {};   ///< EB Train: L1 penalty on batch-norm scales
struct fractrain8 {}; ///< FracTrain's integer kernels at FW-8 / BW-8 (the static baseline)
struct pfq {};        ///< FracTrain: progressive fractional quantization
/// ShiftAddNet: shift then adder layers in place of the block convolutions.
template <class Config = shiftadd_config<>>
struct shiftadd {
    using config = Config;
};
} // namespace technique

namespace detail {
template <class T>
struct is_shiftadd_tag : std::false_type {};
template <class C>
struct is_shiftadd_tag<technique::shiftadd<C>> : std::true_type {
    using config = C;
};
template <class T>
inline constexpr bool is_technique =
    std::is_same_v<T, technique::smd> || std::is_same_v<T, technique::slu> || std::is_same_v<T, technique::psg> ||
    std::is_same_v<T, technique::signsgd> || std::is_same_v<T, technique::slimming> ||
    std::is_same_v<T, technique::fractrain8> || std::is_same_v<T, technique::pfq> || is_shiftadd_tag<T>::value;

/// The Config of the recipe's shiftadd<Config> tag (the default without one).
template <class... Ts>
struct shiftadd_config_of {
    using type = shiftadd_config<>;
};
template <class C, class... Ts>
struct shiftadd_config_of<technique::shiftadd<C>, Ts...> {
    using type = C;
};
template <class T, class... Ts>
struct shiftadd_config_of<T, Ts...> : shiftadd_config_of<Ts...> {};
} // namespace detail

/// The data of a recipe: every hyperparameter of every technique, with the
/// papers' defaults (SPEC). A technique that is not in the recipe ignores
/// its fields.
struct recipe_options {
    std::uint64_t seed = 1;
    std::size_t depth = 38;      ///< ResNet depth 6n + 2
    std::size_t in_channels = 1; ///< 1 for Fashion-MNIST
    std::size_t classes = 10;
    float momentum = 0.9f;
    float weight_decay = 1e-4f;
    double drop_probability = 0.5; ///< SMD's p
    /// SMD: a dropped batch still runs the optimizer step with a zero
    /// gradient (momentum and weight decay move the weights), as the
    /// authors' implementation does (SPEC 1.2(a)); off: it does nothing.
    bool smd_momentum_step = false;
    slu_options slu{};             ///< SLU gates (target executed share, regularizer)
    psg_options psg{};             ///< PSG bit widths and beta
    /// PSG: which parameters take the sign (`all`: signSGD's form; `weights`:
    /// conv/linear weights only, batch norm, biases and SLU's gates keep
    /// their exact gradient, e.g. with `slu.gate_lr_scale` for the gates).
    sign_scope psg_scope = sign_scope::all;
    float slimming_lambda = 1e-4f; ///< EB's L1 strength
    /// PFQ: stages, and the fractions of the run where each next stage starts
    /// (empty: the turning-point indicator decides, SPEC 3.2).
    std::vector<bit_widths> pfq_stages = progressive_precision::default_stages();
    std::vector<double> pfq_switch_at{};
    pfq_indicator pfq_indicator_options{};
};

/// The techniques `Ts...` resolved into the types and objects `fit` takes.
template <class... Ts>
struct recipe {
    static_assert((detail::is_technique<Ts> && ...),
                  "frugal::recipe: every argument must be a tag from frugal::technique (smd, slu, psg, signsgd, "
                  "slimming, fractrain8, pfq, shiftadd<Config>)");

    static constexpr bool smd = (std::is_same_v<Ts, technique::smd> || ...);
    static constexpr bool slu = (std::is_same_v<Ts, technique::slu> || ...);
    static constexpr bool psg = (std::is_same_v<Ts, technique::psg> || ...);
    static constexpr bool signsgd = (std::is_same_v<Ts, technique::signsgd> || ...);
    static constexpr bool slimming = (std::is_same_v<Ts, technique::slimming> || ...);
    static constexpr bool fractrain8 = (std::is_same_v<Ts, technique::fractrain8> || ...);
    static constexpr bool pfq = (std::is_same_v<Ts, technique::pfq> || ...);
    static constexpr bool shiftadd = (detail::is_shiftadd_tag<Ts>::value || ...);
    static constexpr bool quantized = fractrain8 || pfq;

    static_assert(((0 + ... + int{std::is_same_v<Ts, technique::smd>}) <= 1) &&
                      ((0 + ... + int{std::is_same_v<Ts, technique::slu>}) <= 1) &&
                      ((0 + ... + int{std::is_same_v<Ts, technique::psg>}) <= 1) &&
                      ((0 + ... + int{std::is_same_v<Ts, technique::signsgd>}) <= 1) &&
                      ((0 + ... + int{std::is_same_v<Ts, technique::slimming>}) <= 1) &&
                      ((0 + ... + int{std::is_same_v<Ts, technique::fractrain8>}) <= 1) &&
                      ((0 + ... + int{std::is_same_v<Ts, technique::pfq>}) <= 1) &&
                      ((0 + ... + int{detail::is_shiftadd_tag<Ts>::value}) <= 1),
                  "frugal::recipe: a technique is named twice");
    static_assert(int{psg} + int{quantized} + int{shiftadd} <= 1,
                  "frugal::recipe: PSG, FracTrain (fractrain8, pfq) and ShiftAddNet (shiftadd) each decide how the "
                  "block convolutions compute; pick one (FracTrain with technique::signsgd gives sign updates on "
                  "low-precision gradients)");
    static_assert(!(fractrain8 && pfq),
                  "frugal::recipe: fractrain8 (fixed FW-8/BW-8) and pfq (progressive precision) are two precision "
                  "schedules; pick one");
    static_assert(!(psg && signsgd),
                  "frugal::recipe: PSG's gradient rule already takes the sign and pairs with SGD momentum updates; "
                  "drop technique::signsgd");

    /// How the block convolutions compute.
    using conv_maker = std::conditional_t<
        psg, psg_conv_maker,
        std::conditional_t<quantized, quantized_conv_maker,
                           std::conditional_t<shiftadd, shift_add_maker<typename detail::shiftadd_config_of<Ts...>::type>,
                                              plain_conv>>>;
    using block = basic_block<conv_maker>;
    using model_type = std::conditional_t<slu, gated_cifar_resnet_t<block>, cifar_resnet_t<block>>;
    using base_gradient = std::conditional_t<psg, predictive_sign, exact_gradient>;
    using gradient_rule = std::conditional_t<slimming, frugal::slimming<base_gradient>, base_gradient>;
    using update_rule = std::conditional_t<signsgd, frugal::signsgd, sgd>;
    using optimizer_type = optimizer<gradient_rule, update_rule>;
    using sampler_type = std::conditional_t<smd, stochastic_drop, every_batch>;
    using schedule_type =
        std::conditional_t<pfq, progressive_precision,
                           std::conditional_t<fractrain8, fixed_precision, no_precision_schedule>>;

    /// The techniques, joined by '+' ("fp32" for none), e.g. "smd+slu+pfq+signsgd".
    [[nodiscard]] static std::string name() {
        std::string s;
        auto add = [&](bool on, const char* what) {
            if (on) {
                s += s.empty() ? "" : "+";
                s += what;
            }
        };
        add(smd, "smd");
        add(slu, "slu");
        add(fractrain8, "fractrain8");
        add(pfq, "pfq");
        add(psg, "psg");
        add(shiftadd, "shiftadd");
        add(signsgd, "signsgd");
        add(slimming, "slimming");
        return s.empty() ? "fp32" : s;
    }

    /// The ResNet of depth o.depth with the recipe's blocks (and gates).
    [[nodiscard]] static model_type make_model(const recipe_options& o) {
        auto net = [&] {
            if constexpr (slu) {
                return gated_cifar_resnet<block>(o.depth, o.slu, o.in_channels, o.classes, o.seed);
            } else {
                return cifar_resnet<block>(o.depth, o.in_channels, o.classes, o.seed);
            }
        }();
        if constexpr (psg) {
            configure_psg(net, o.psg);
        }
        return net;
    }

    /// The optimizer over `params` with the recipe's gradient and update rules.
    [[nodiscard]] static optimizer_type make_optimizer(std::vector<parameter> params, const recipe_options& o) {
        update_rule u{};
        u.momentum = o.momentum;
        u.weight_decay = o.weight_decay;
        gradient_rule g{};
        if constexpr (slimming) {
            g.lambda = o.slimming_lambda;
        }
        if constexpr (psg && slimming) {
            g.inner.scope = o.psg_scope;
        } else if constexpr (psg) {
            g.scope = o.psg_scope;
        }
        return optimizer_type(std::move(params), u, g);
    }

    [[nodiscard]] static sampler_type make_sampler(const recipe_options& o) {
        if constexpr (smd) {
            return stochastic_drop(o.drop_probability, o.seed, o.smd_momentum_step);
        } else {
            return every_batch{};
        }
    }

    /// The precision schedule for a run of `iterations` nominal steps
    /// (PFQ's fixed switch points are fractions of it).
    [[nodiscard]] static schedule_type make_schedule(const recipe_options& o, std::uint64_t iterations) {
        if constexpr (pfq) {
            if (o.pfq_switch_at.empty()) {
                return progressive_precision(o.pfq_stages, o.pfq_indicator_options);
            }
            std::vector<std::uint64_t> steps;
            for (const double f : o.pfq_switch_at) {
                if (!(f > 0.0 && f < 1.0)) {
                    throw error(detail::concat("frugal::recipe: a PFQ switch point must be a fraction of the run in "
                                               "(0, 1), not ",
                                               f));
                }
                steps.push_back(static_cast<std::uint64_t>(f * static_cast<double>(iterations)));
            }
            return progressive_precision::at_steps(o.pfq_stages, std::move(steps));
        } else if constexpr (fractrain8) {
            return fixed_precision(bit_widths{8, 8, 8});
        } else {
            return no_precision_schedule{};
        }
    }
};

} // namespace frugal

#endif
