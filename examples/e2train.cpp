// E2-Train on Fashion-MNIST: stochastic mini-batch dropping (SMD), selective
// layer update (SLU) and predictive sign gradient descent (PSG), alone or
// together, against the FP32 SGD baseline, with a CIFAR-style ResNet.
//
//   e2train --recipe baseline --epochs 12 --out runs/base
//   e2train --recipe smd --epochs 16 --out runs/smd        (energy ratio 0.67: 4/3 of the baseline's epochs, half dropped)
//   e2train --recipe slu --skip 0.4 --out runs/slu40
//   e2train --recipe psg --out runs/psg
//   e2train --recipe e2train --skip 0.4 --epochs 16 --out runs/e2
//   e2train --recipe smd --subset small --epochs 1        (a quick check)
//   e2train --help
//
// The recipe picks one of five explicit instantiations (the techniques are
// types: model, optimizer rules and sampler); every other option is data.

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <frugal/cost/energy.hpp>
#include <frugal/cost/meter.hpp>
#include <frugal/cost/report.hpp>
#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/layers/gated.hpp>
#include <frugal/model/zoo/gated_resnet.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/optim/psg.hpp>
#include <frugal/optim/schedule.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/tensor/parallel.hpp>
#include <frugal/train/sampler.hpp>
#include <frugal/train/trainer.hpp>

#include "common/cli.hpp"
#include "common/report.hpp"
#include "common/schedule.hpp"

namespace {

struct settings {
    std::string recipe;
    std::size_t depth = 38, epochs = 12, batch = 128;
    double lr = 0.1, weight_decay = 1e-4, momentum = 0.9;
    std::string schedule = "step";
    double p_drop = 0.5;
    bool smd_momentum_step = false;
    frugal::slu_options slu;
    frugal::psg_options psg;
    frugal::sign_scope sign_scope = frugal::sign_scope::all;
    bool swa = true;
    std::uint64_t seed = 1;
};

/// Resets every batch normalization's running statistics and re-estimates
/// them with training-mode forwards (after swapping SWA weights in).
template <class Model>
void recompute_batchnorm(Model& net, frugal::batch_loader& data, std::size_t batches) {
    net.for_each_layer([](auto& l) {
        if constexpr (requires { l.running_mean(); l.running_var(); }) {
            l.running_mean().fill(0.0f);
            l.running_var().fill(1.0f);
        }
    });
    frugal::context ctx;
    ctx.mode = frugal::run_mode::train;
    frugal::batch b;
    for (std::size_t i = 0; i < std::min(batches, data.batches_per_epoch()); ++i) {
        data.fill(0, i, b);
        ctx.random = frugal::rng(0x5357, i);
        (void)net.forward(ctx, b.x);
    }
}

/// Operations of the whole run by kind and formats, and the FP32-equivalent
/// MACs of SPEC §5.2's bilinear model (a x b bits cost a*b/1024 of an FP32 MAC).
void print_costs(const frugal::op_counts& ops) {
    double equivalent = 0.0, macs = 0.0;
    std::printf("operations executed in training:\n");
    for (const auto& [k, n] : ops) {
        std::printf("  %-22s %14.4g\n", k.name().c_str(), static_cast<double>(n));
        if (k.kind == frugal::op_kind::mac) {
            macs += static_cast<double>(n);
            equivalent += static_cast<double>(n) * k.a.bits * k.b.bits / 1024.0;
        }
    }
    std::printf("MACs %.4g, FP32-equivalent MACs (bilinear bit model) %.4g\n", macs, equivalent);
}

template <class Model, class GradientRule, class UpdateRule, class Sampler>
int run(Model& net, const settings& s, UpdateRule update, Sampler sampler, frugal::batch_loader& train_data,
        frugal::batch_loader& test_data, frugal::fit_options o, GradientRule gradient = {}) {
    frugal::optimizer<GradientRule, UpdateRule> opt(frugal::parameters_of(net), update, gradient);
    const std::uint64_t iters = s.epochs * train_data.batches_per_epoch();
    o.schedule = cli::named_schedule(s.schedule, s.lr, iters); // indexed by nominal iterations (SMD)
    constexpr bool gated_model = requires { net.template get<2>().eval_executed_fraction(); };
    constexpr bool psg_model = std::is_same_v<GradientRule, frugal::predictive_sign>;
    const bool use_swa = s.swa && psg_model;
    frugal::weight_average swa(frugal::parameters_of(net));
    const std::uint64_t swa_start = std::max<std::uint64_t>(1, (3 * s.epochs + 3) / 4); // from 75% of the run
    o.on_epoch = [&](const frugal::epoch_record& r) {
        if constexpr (gated_model) {
            auto& stack = net.template get<2>();
            const auto f = stack.eval_executed_fraction();
            double mean = 0.0;
            std::printf("  SLU executed fraction per block (evaluation):");
            for (std::size_t i = 0; i < f.size(); ++i) {
                std::printf(" %.2f", f[i]);
                mean += i > 0 ? f[i] / static_cast<double>(f.size() - 1) : 0.0;
            }
            std::printf("  (gated blocks: %.1f%% executed, target %.0f%%)\n", 100.0 * mean,
                        100.0 * stack.options().target_exec);
            stack.reset_eval_report();
        }
        if constexpr (psg_model) {
            const auto st = frugal::psg_statistics(net);
            std::printf("  PSG: %.1f%% of weight-gradient entries needed the full 8x16-bit product\n",
                        100.0 * st.full_fraction());
        }
        if (use_swa && r.epoch >= swa_start) {
            swa.accumulate();
        }
    };
    const auto result = frugal::fit(net, opt, train_data, &test_data, o, sampler);
    if (result.history.empty()) {
        return 1;
    }
    double train_seconds = 0.0;
    std::uint64_t executed = 0, nominal = 0;
    frugal::op_counts ops;
    for (const auto& r : result.history) {
        train_seconds += r.train_seconds;
        executed += r.executed;
        nominal += r.nominal;
        for (const auto& [k, n] : r.ops) {
            ops[k] += n;
        }
    }
    const auto& last = result.history.back();
    std::printf("\nrecipe %s: final test accuracy %.2f%% after %llu epochs\n", s.recipe.c_str(),
                100.0 * last.test_accuracy, static_cast<unsigned long long>(last.epoch));
    std::printf("training time %.1f s (%.2f s per nominal epoch), %llu of %llu nominal batches executed\n",
                train_seconds, train_seconds / static_cast<double>(result.history.size()),
                static_cast<unsigned long long>(executed), static_cast<unsigned long long>(nominal));
    print_costs(ops);
    cli::write_report(o.out_dir, s.recipe, "resnet" + std::to_string(s.depth), result.history, result.meter,
                      {{"recipe", s.recipe}, {"epochs", std::to_string(s.epochs)}, {"schedule", s.schedule}});
    if (use_swa && swa.count() > 0) {
        swa.swap();
        recompute_batchnorm(net, train_data, 100);
        const auto [loss, acc] = frugal::evaluate(net, test_data);
        std::printf("SWA (%llu epochs averaged): test accuracy %.2f%% (SGD weights: %.2f%%)\n",
                    static_cast<unsigned long long>(swa.count()), 100.0 * acc, 100.0 * last.test_accuracy);
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) try {
    cli::args a(argc, argv, "e2train", "E2-Train (SMD, SLU, PSG) on Fashion-MNIST with a CIFAR-style ResNet");
    settings s;
    s.recipe = a.str("recipe", "e2train", "baseline, smd, slu, psg or e2train (smd + slu + psg)");
    const bool psg_recipe = s.recipe == "psg" || s.recipe == "e2train";
    s.depth = static_cast<std::size_t>(a.integer("depth", 38, "ResNet depth 6n + 2 (38: ResNet-38)"));
    s.epochs = static_cast<std::size_t>(a.integer("epochs", 12, "nominal epochs (the LR schedule's length)"));
    s.batch = static_cast<std::size_t>(a.integer("batch", 128, "mini-batch size"));
    s.lr = a.real("lr", psg_recipe ? frugal::signsgd::default_lr : 0.1, "initial learning rate");
    s.schedule = a.str("schedule", "step", "learning rate: step (x0.1 at 50% and 75%) or cosine (to 0)");
    if (s.schedule != "step" && s.schedule != "cosine") {
        a.fail("--schedule must be step or cosine, not '" + s.schedule + "'");
    }
    s.weight_decay = a.real("wd", 1e-4, "weight decay");
    s.momentum = a.real("momentum", 0.9, "momentum");
    s.p_drop = a.real("p-drop", 0.5, "SMD: drop probability of a mini-batch");
    s.smd_momentum_step = a.flag("smd-momentum-step", false, "SMD: dropped batches still take a zero-gradient step");
    s.slu.target_exec = static_cast<float>(1.0 - a.real("skip", 0.4, "SLU: target skip ratio (0.2, 0.4, 0.6)"));
    const double alpha = a.real("alpha", 0.0,
                                "SLU: regularizer weight (0: 1e-3 in execute mode, SPEC's 1e-5 in simulate mode)");
    const std::string slu_mode = a.str("slu-mode", "execute", "SLU: execute (skip for real) or simulate");
    s.slu.alpha = static_cast<float>(alpha); // 0: slu_options picks by mode
    const double gate_lr = a.real("gate-lr", 0.0, "SLU: learning rate of the gate network (0: the model's); with "
                                                  "--sign-scope weights the gates take exact SGD steps at this rate");
    s.psg.beta = static_cast<float>(a.real("beta", 0.05, "PSG: tau = beta * max |g_msb|"));
    s.swa = a.flag("swa", true, "PSG: stochastic weight averaging from 75% of the epochs");
    const std::string scope = a.str("sign-scope", "all", "PSG: parameters the sign rule covers: all, or weights "
                                                        "(conv/linear weights; batch norm and biases keep SGD)");
    if (scope != "all" && scope != "weights") {
        a.fail("--sign-scope must be all or weights, not '" + scope + "'");
    }
    s.sign_scope = scope == "all" ? frugal::sign_scope::all : frugal::sign_scope::weights;
    if (gate_lr < 0.0) {
        a.fail("--gate-lr must be >= 0");
    }
    s.slu.gate_lr_scale = gate_lr > 0.0 ? static_cast<float>(gate_lr / s.lr) : 1.0f;
    const std::string subset = a.str("subset", "0", "train on this many images (0: all 60000; small: 1024)");
    const long test_subset = a.integer("test-subset", 0, "evaluate on this many test images (0: all 10000)");
    s.seed = static_cast<std::uint64_t>(a.integer("seed", 1, "seed of initialisation, data order, augmentation, SMD"));
    const long crop = a.integer("crop", 2, "random-crop padding in pixels (0: no crop)");
    const bool flip = a.flag("flip", true, "random horizontal flip");
    const std::string out = a.str("out", "", "output folder for metrics.csv and checkpoint.bin (resumes if present)");
    const long threads = a.integer("threads", 0, "threads (0: every core)");
    const std::string data = a.str("data", frugal::default_fashion_mnist_dir().string(), "Fashion-MNIST folder");
    a.finish();
    if (threads > 0) {
        frugal::set_num_threads(static_cast<int>(threads));
    }
    if (s.epochs == 0 || s.batch == 0) {
        a.fail("--epochs and --batch must be positive");
    }
    if (slu_mode != "execute" && slu_mode != "simulate") {
        a.fail("--slu-mode must be execute or simulate");
    }
    s.slu.mode = slu_mode == "simulate" ? frugal::slu_mode::simulate : frugal::slu_mode::execute;
    long train_images = 0;
    if (subset == "small") {
        train_images = 1024;
    } else {
        char* end = nullptr;
        train_images = std::strtol(subset.c_str(), &end, 10);
        if (end == subset.c_str() || *end != '\0' || train_images < 0) {
            a.fail("--subset expects a number of images or 'small', got '" + subset + "'");
        }
    }

    auto train_set = frugal::load_fashion_mnist(frugal::data_split::train, data);
    if (train_images > 0) {
        train_set = frugal::subset(train_set, static_cast<std::size_t>(train_images), s.seed);
    }
    auto test_set = frugal::load_fashion_mnist(frugal::data_split::test, data);
    const long test_images = test_subset > 0 ? test_subset : (subset == "small" ? 1000 : 0);
    if (test_images > 0) {
        test_set = frugal::subset(test_set, static_cast<std::size_t>(test_images), 1);
    }
    const auto norm = frugal::normalization::from_dataset(train_set);
    frugal::batch_options bo;
    bo.batch_size = s.batch;
    bo.seed = s.seed;
    bo.augment.crop_padding = static_cast<std::size_t>(crop);
    bo.augment.flip = flip;
    frugal::batch_loader train_data(train_set, norm, bo);
    frugal::batch_loader test_data(test_set, norm, frugal::batch_options::evaluation(500));

    frugal::fit_options o;
    o.epochs = s.epochs;
    o.out_dir = out;
    o.seed = s.seed;
    o.label = s.recipe;
    std::printf("frugal e2train: recipe %s, ResNet-%zu, %zu epochs, batch %zu, lr %g, wd %g, %d threads, %zu training "
                "and %zu test images\n",
                s.recipe.c_str(), s.depth, s.epochs, s.batch, s.lr, s.weight_decay, frugal::num_threads(),
                train_set.size(), test_set.size());
    if (s.recipe == "smd" || s.recipe == "e2train") {
        std::printf("  SMD: p %.2f, %s\n", s.p_drop, s.smd_momentum_step ? "zero-gradient step on drops" : "drops do nothing");
    }
    if (s.recipe == "slu" || s.recipe == "e2train") {
        std::printf("  SLU: target execution %.0f%%, alpha %g, %s mode, gate learning rate %g\n",
                    100.0 * s.slu.target_exec, s.slu.effective_alpha(), slu_mode.c_str(),
                    s.lr * static_cast<double>(s.slu.gate_lr_scale));
    }
    if (psg_recipe) {
        std::printf("  PSG: beta %g, x/w %d bits (MSB %d), errors %d bits (MSB %d), sign on %s, SWA %s\n", s.psg.beta,
                    s.psg.bits_x, s.psg.msb_x, s.psg.bits_g, s.psg.msb_g,
                    s.sign_scope == frugal::sign_scope::all ? "every parameter" : "conv/linear weights",
                    s.swa ? "on" : "off");
    }

    const auto mom = static_cast<float>(s.momentum), wd = static_cast<float>(s.weight_decay);
    const frugal::stochastic_drop smd(s.p_drop, s.seed, s.smd_momentum_step);
    using plain_block = frugal::basic_block<>;
    using psg_block = frugal::basic_block<frugal::psg_conv_maker>;
    // sign, then SGD with momentum and weight decay: with every parameter signed this
    // is signsgd's update exactly (v = mu v + sign(g) + wd w; w -= lr v)
    const frugal::predictive_sign psg_rule{s.sign_scope};
    if (s.recipe == "baseline" || s.recipe == "smd") {
        auto net = frugal::cifar_resnet<plain_block>(s.depth, 1, 10, s.seed);
        if (s.recipe == "baseline") {
            return run<decltype(net), frugal::exact_gradient>(net, s, frugal::sgd{mom, wd, false},
                                                              frugal::every_batch{}, train_data, test_data, o);
        }
        return run<decltype(net), frugal::exact_gradient>(net, s, frugal::sgd{mom, wd, false}, smd, train_data,
                                                          test_data, o);
    }
    if (s.recipe == "slu") {
        auto net = frugal::gated_cifar_resnet<plain_block>(s.depth, s.slu, 1, 10, s.seed);
        return run<decltype(net), frugal::exact_gradient>(net, s, frugal::sgd{mom, wd, false}, frugal::every_batch{},
                                                          train_data, test_data, o);
    }
    if (s.recipe == "psg") {
        auto net = frugal::cifar_resnet<psg_block>(s.depth, 1, 10, s.seed);
        frugal::configure_psg(net, s.psg);
        return run<decltype(net), frugal::predictive_sign>(net, s, frugal::sgd{mom, wd, false}, frugal::every_batch{},
                                                           train_data, test_data, o, psg_rule);
    }
    if (s.recipe == "e2train") {
        auto net = frugal::gated_cifar_resnet<psg_block>(s.depth, s.slu, 1, 10, s.seed);
        frugal::configure_psg(net, s.psg);
        return run<decltype(net), frugal::predictive_sign>(net, s, frugal::sgd{mom, wd, false}, smd, train_data,
                                                           test_data, o, psg_rule);
    }
    a.fail("unknown recipe '" + s.recipe + "' (baseline, smd, slu, psg, e2train)");
} catch (const frugal::error& e) {
    std::fprintf(stderr, "e2train: %s\n", e.what());
    return 1;
}
