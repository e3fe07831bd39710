// FracTrain on Fashion-MNIST: a CIFAR ResNet whose residual-block
// convolutions run on 8-bit (and narrower) integer kernels, trained with a
// precision schedule, next to the same ResNet in FP32:
//
//   fractrain --mode static8                  the static FW-8/BW-8 baseline (SBM)
//   fractrain --mode pfq                      PFQ, stages a3w3e6 -> a4w4e6 -> a6w6e8 -> a8w8e8 by the
//                                             turning-point indicator (chunks of --pfq-chunk steps)
//   fractrain --mode pfq --pfq-at 0.4,0.7,0.9 PFQ with the stages switched at those fractions of the run
//   fractrain --mode cpt --cpt-cycles 8       CPT: forward widths cycle 3..8, errors 8 bits
//   fractrain --mode dfq --dfq-target 3       DFQ: a gate picks each sample's (activation, error) widths
//                                             per block, the cost held near 3% of FP32
//   fractrain --mode fractrain                PFQ + DFQ: the DFQ target rises 1.5 -> 3% at PFQ's turning
//                                             points (indicator chunks of --pfq-chunk steps)
//   fractrain --mode fp32                     the float ResNet (same recipe)
//   fractrain --mode pfq --depth 20 --subset 2048 --epochs 2 --test-subset 1000   (a quick check)
//
// Each run ends with the operations it executed by format and, with --out,
// a run.json for frugal-report (BitOPs and energy against another run).

#include <algorithm>
#include <cstdio>
#include <sstream>
#include <string>
#include <type_traits>
#include <vector>

#include <frugal/cost/report.hpp>
#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/layers/quantized_conv.hpp>
#include <frugal/model/zoo/dfq_resnet.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/optim/schedule.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/tensor/parallel.hpp>
#include <frugal/train/precision_schedule.hpp>
#include <frugal/train/trainer.hpp>

#include "common/cli.hpp"
#include "common/data.hpp"
#include "common/report.hpp"
#include "common/schedule.hpp"

namespace {

struct recipe {
    std::size_t epochs = 0;
    double lr = 0.1, weight_decay = 1e-4;
    std::string schedule, name, model;
};

std::vector<double> parse_fractions(const std::string& s, cli::args& a) {
    std::vector<double> out;
    std::stringstream in(s);
    std::string item;
    while (std::getline(in, item, ',')) {
        char* end = nullptr;
        const double v = std::strtod(item.c_str(), &end);
        if (end == item.c_str() || *end != '\0' || !(v > 0.0 && v < 1.0) || (!out.empty() && v <= out.back())) {
            a.fail("--pfq-at takes increasing fractions in (0, 1) separated by commas, e.g. 0.4,0.7,0.9 (got '" + s +
                   "')");
        }
        out.push_back(v);
    }
    return out;
}

/// The steps at `fractions` of a run of `iters` steps.
std::vector<std::uint64_t> switch_steps(const std::vector<double>& fractions, std::uint64_t iters) {
    std::vector<std::uint64_t> steps;
    for (double f : fractions) {
        steps.push_back(static_cast<std::uint64_t>(f * static_cast<double>(iters)));
    }
    return steps;
}

template <class Model, class Schedule>
int train(Model& net, const recipe& r, frugal::batch_loader& train_data, frugal::batch_loader& test_data,
          frugal::fit_options o, Schedule* precision) {
    frugal::optimizer<> opt(frugal::parameters_of(net), frugal::sgd{0.9f, static_cast<float>(r.weight_decay), true});
    const std::uint64_t iters = r.epochs * train_data.batches_per_epoch();
    o.schedule = cli::named_schedule(r.schedule, r.lr, iters);
    if constexpr (Schedule::active) {
        std::printf("schedule: %s\n", precision->describe().c_str());
    }
    if constexpr (frugal::precision_schedule<Schedule>) {
        o.on_epoch = [&](const frugal::epoch_record& rec) {
            std::printf("  epoch %llu: last step %llu ran at %s\n", static_cast<unsigned long long>(rec.epoch),
                        static_cast<unsigned long long>(rec.step - 1), precision->at(rec.step - 1).name().c_str());
        };
    }
    if constexpr (requires { net.template get<2>().reset_eval_report(); }) {
        auto prev = o.on_epoch;
        auto& stack = net.template get<2>();
        stack.reset_eval_report();
        const std::uint64_t epochs = r.epochs;
        o.on_epoch = [&stack, prev, epochs](const frugal::epoch_record& rec) {
            if (prev) {
                prev(rec);
            }
            std::printf("  DFQ: target %.2f%%, evaluation cp %.2f%%\n", static_cast<double>(stack.options().target),
                        stack.eval_cost_percent());
            if (rec.epoch < epochs) { // the last epoch's evaluation stays for the final report
                stack.reset_eval_report();
            }
        };
    }
    const auto result = frugal::fit(net, opt, train_data, &test_data, o, frugal::every_batch{}, precision);
    if (result.history.empty()) {
        return 1;
    }
    if constexpr (requires { precision->turning_points(); }) {
        if (!precision->fixed_steps()) {
            std::printf("turning points at steps:");
            for (auto s : precision->turning_points()) {
                std::printf(" %llu", static_cast<unsigned long long>(s));
            }
            std::printf("%s\n", precision->turning_points().empty() ? " none" : "");
        }
    }
    if constexpr (requires { net.template get<2>().eval_option_fraction(); }) {
        auto& stack = net.template get<2>();
        std::printf("DFQ: target cp %.2f%%, last training batch cp %.2f%%, evaluation cp %.2f%%\n",
                    static_cast<double>(stack.options().target), stack.cost_percent(), stack.eval_cost_percent());
        std::printf("DFQ options chosen in evaluation, per block (share of samples):\n");
        const auto f = stack.eval_option_fraction();
        for (std::size_t i = 0; i < f.size(); ++i) {
            std::printf("  block %2zu:", i);
            for (std::size_t k = 0; k < f[i].size(); ++k) {
                std::printf("  %s %5.1f%%", std::remove_reference_t<decltype(stack)>::widths(k).name().c_str(),
                            100.0 * f[i][k]);
            }
            std::printf("\n");
        }
    }
    const auto& last = result.history.back();
    std::printf("final test accuracy %.2f%% after %llu epochs (%.1f s of training in this run)\n",
                100.0 * last.test_accuracy, static_cast<unsigned long long>(last.epoch), result.seconds);
    frugal::op_counts train_ops;
    double train_seconds = 0.0;
    for (const auto& e : result.history) {
        for (const auto& [k, n] : e.ops) {
            train_ops[k] += n;
        }
        train_seconds += e.train_seconds;
    }
    std::printf("training: %.1f s of steps, %.4g BitOPs in fp32-MAC equivalents (a x b / 1024 per MAC)\n",
                train_seconds, frugal::bitops_fp32_macs(train_ops));
    std::printf("multiply-accumulates of training by format:\n");
    for (const auto& [key, count] : train_ops) {
        if (key.kind == frugal::op_kind::mac) {
            std::printf("  %-22s %20llu\n", key.name().c_str(), static_cast<unsigned long long>(count));
        }
    }
    cli::write_report(o.out_dir, r.name, r.model, result.history, result.meter,
                      {{"epochs", std::to_string(r.epochs)}, {"lr", std::to_string(r.lr)}, {"schedule", r.schedule}});
    return 0;
}

} // namespace

int main(int argc, char** argv) try {
    cli::args a(argc, argv, "fractrain", "train a ResNet with FracTrain's precision schedules on Fashion-MNIST");
    const std::string mode = a.str("mode", "pfq", "static8, pfq, cpt, dfq, fractrain or fp32");
    const long depth = a.integer("depth", 20, "ResNet depth 6n + 2");
    recipe r;
    r.epochs = static_cast<std::size_t>(a.integer("epochs", 4, "training epochs"));
    const long batch = a.integer("batch", 128, "mini-batch size");
    r.lr = a.real("lr", 0.1, "initial learning rate");
    r.weight_decay = a.real("wd", 1e-4, "weight decay");
    r.schedule = a.str("schedule", "step", "learning rate: step (x0.1 at 50% and 75%) or cosine");
    const std::string pfq_at = a.str("pfq-at", "", "PFQ switch points as fractions of the run (empty: the indicator)");
    const long pfq_chunk = a.integer("pfq-chunk", 400, "PFQ indicator: steps per chunk");
    const double pfq_eps = a.real("pfq-eps", 0.05, "PFQ indicator: initial eps");
    const double pfq_alpha = a.real("pfq-alpha", 0.3, "PFQ indicator: eps multiplier after turning points 1 and 2");
    const double dfq_target_arg =
        a.real("dfq-target", 0.0, "DFQ: target cost, percent of FP32 (FracTrain: the start); 0: 3 (DFQ), 1.5 (FracTrain)");
    const double dfq_beta = a.real("dfq-beta", 1e-3, "DFQ: weight of the cost term");
    const double dfq_step = a.real("dfq-step", 0.5, "FracTrain: target increase per PFQ turning point");
    const double gate_lr = a.real("gate-lr", 1.0, "learning-rate multiplier of the DFQ gate");
    const bool dfq_hold = a.flag("dfq-hold", true,
                                 "DFQ: the cost term holds when every choice already sits at the end it pushes toward");
    const long cpt_min = a.integer("cpt-min", 3, "CPT: lowest forward width");
    const long cpt_max = a.integer("cpt-max", 8, "CPT: highest forward width");
    const long cpt_cycles = a.integer("cpt-cycles", 8, "CPT: cycles over the run");
    const long cpt_error = a.integer("cpt-error", 8, "CPT: error width");
    const long crop = a.integer("crop", 2, "random-crop padding in pixels (0: no crop)");
    const bool flip = a.flag("flip", true, "random horizontal flip");
    const std::string out = a.str("out", "", "output folder for metrics.csv, checkpoint.bin and run.json (resumes)");
    const long seed = a.integer("seed", 1, "seed of initialisation, shuffling and augmentation");
    const long threads = a.integer("threads", 0, "threads (0: every core)");
    const long subset = a.integer("subset", 0, "train on this many images only (0: all 60000)");
    const long test_subset = a.integer("test-subset", 0, "evaluate on this many test images only (0: all 10000)");
    const std::string data = a.str("data", frugal::default_fashion_mnist_dir().string(), "Fashion-MNIST folder");
    a.finish();
    if (threads > 0) {
        frugal::set_num_threads(static_cast<int>(threads));
    }
    if (r.epochs == 0 || batch <= 0) {
        a.fail("--epochs and --batch must be positive");
    }
    if (mode != "static8" && mode != "pfq" && mode != "cpt" && mode != "fp32" && mode != "dfq" &&
        mode != "fractrain") {
        a.fail("unknown mode '" + mode + "' (static8, pfq, cpt, dfq, fractrain, fp32)");
    }
    const double dfq_target = dfq_target_arg > 0.0 ? dfq_target_arg : (mode == "fractrain" ? 1.5 : 3.0);
    if (pfq_chunk <= 0 || cpt_cycles <= 0) {
        a.fail("--pfq-chunk and --cpt-cycles must be positive");
    }
    const std::vector<double> pfq_fractions = pfq_at.empty() ? std::vector<double>{} : parse_fractions(pfq_at, a);

    cli::data_options dopts;
    dopts.dir = data;
    dopts.subset = static_cast<std::size_t>(std::max(0L, subset));
    dopts.test_subset = static_cast<std::size_t>(std::max(0L, test_subset));
    dopts.subset_seed = static_cast<std::uint64_t>(seed);
    dopts.batch = static_cast<std::size_t>(batch);
    dopts.seed = static_cast<std::uint64_t>(seed);
    dopts.crop = static_cast<std::size_t>(std::max(0L, crop));
    dopts.flip = flip;
    cli::fashion_data fm(dopts);
    frugal::batch_loader& train_data = fm.train;
    frugal::batch_loader& test_data = fm.test;
    const frugal::image_dataset& train_set = fm.train_set;

    frugal::fit_options o;
    o.epochs = r.epochs;
    o.out_dir = out;
    o.seed = static_cast<std::uint64_t>(seed);
    const std::uint64_t iters = r.epochs * train_data.batches_per_epoch();
    std::printf("frugal fractrain: %s resnet%ld, %zu epochs (%llu steps), batch %ld, lr %g (%s), wd %g, %d threads, "
                "%zu training images, integer kernel %s\n",
                mode.c_str(), depth, r.epochs, static_cast<unsigned long long>(iters), batch, r.lr,
                r.schedule.c_str(), r.weight_decay, frugal::num_threads(), train_set.size(),
                frugal::kernels::igemm_path());
    const auto s = static_cast<std::uint64_t>(seed);
    const auto d = static_cast<std::size_t>(depth);
    r.name = mode;
    r.model = "resnet" + std::to_string(depth);
    if (mode == "fp32") {
        auto net = frugal::cifar_resnet(d, 1, 10, s);
        return train(net, r, train_data, test_data, o, static_cast<frugal::no_precision_schedule*>(nullptr));
    }
    if (mode == "dfq" || mode == "fractrain") {
        frugal::dfq_options dopt;
        dopt.target = static_cast<float>(dfq_target);
        dopt.beta = static_cast<float>(dfq_beta);
        dopt.gate_lr_scale = static_cast<float>(gate_lr);
        dopt.hold_at_extremes = dfq_hold;
        if (mode == "fractrain") {
            dopt.rule = frugal::dfq_sign_rule::fractrain;
        }
        auto net = frugal::dfq_cifar_resnet(d, dopt, 1, 10, s);
        auto& stack = net.get<2>();
        if (mode == "dfq") {
            frugal::no_precision_schedule* none = nullptr;
            return train(net, r, train_data, test_data, o, none);
        }
        using rising = frugal::rising_target<std::remove_reference_t<decltype(stack)>>;
        if (!pfq_at.empty()) { // the target rises at the given fractions of the run
            auto sched = rising::at_steps(stack, static_cast<float>(dfq_target), static_cast<float>(dfq_step),
                                          switch_steps(pfq_fractions, iters));
            return train(net, r, train_data, test_data, o, &sched);
        }
        frugal::pfq_indicator ind;
        ind.chunk = static_cast<std::uint64_t>(pfq_chunk);
        ind.eps = pfq_eps;
        ind.alpha = pfq_alpha;
        rising sched(stack, static_cast<float>(dfq_target), static_cast<float>(dfq_step), 3, ind);
        return train(net, r, train_data, test_data, o, &sched);
    }
    // the stem convolution and the classifier stay float (SPEC §3.2); every block convolution is quantized
    auto net = frugal::cifar_resnet<frugal::basic_block<frugal::quantized_conv_maker>>(d, 1, 10, s);
    if (mode == "static8") {
        frugal::fixed_precision sched({8, 8, 8});
        return train(net, r, train_data, test_data, o, &sched);
    }
    if (mode == "cpt") {
        frugal::cyclic_precision sched(static_cast<int>(cpt_min), static_cast<int>(cpt_max),
                                       std::max<std::uint64_t>(1, iters / static_cast<std::uint64_t>(cpt_cycles)),
                                       static_cast<int>(cpt_error));
        r.name = "cpt";
        return train(net, r, train_data, test_data, o, &sched);
    }
    if (!pfq_at.empty()) {
        auto sched = frugal::progressive_precision::at_steps(frugal::progressive_precision::default_stages(),
                                                             switch_steps(pfq_fractions, iters));
        r.name = "pfq-at-" + pfq_at;
        return train(net, r, train_data, test_data, o, &sched);
    }
    frugal::pfq_indicator ind;
    ind.chunk = static_cast<std::uint64_t>(pfq_chunk);
    ind.eps = pfq_eps;
    ind.alpha = pfq_alpha;
    frugal::progressive_precision sched(frugal::progressive_precision::default_stages(), ind);
    r.name = "pfq";
    return train(net, r, train_data, test_data, o, &sched);
} catch (const frugal::error& e) {
    std::fprintf(stderr, "fractrain: %s\n", e.what());
    return 1;
}
