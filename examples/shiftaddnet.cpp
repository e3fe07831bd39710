// Trains ShiftAddNet ResNet-20 (or its shift-only / adder-only ablations, or
// the FP32 ResNet-20 baseline under the same recipe) on Fashion-MNIST, then
// prints the operations training executed, by kind and number format.
//
//   shiftaddnet --model shiftadd --epochs 15 --out runs/shiftadd
//   shiftaddnet --model fp32 --epochs 15 --out runs/fp32          (the baseline)
//   shiftaddnet --model shiftadd --fix8 on                        (fixed-point training: FIX8 adders, 8-bit errors)
//   shiftaddnet --model shiftadd --fixed-shift on                 (shift layers frozen at init)
//   shiftaddnet --model shiftadd --subset 256 --test-subset 256 --epochs 1 --batch 64   (a quick check)
//   shiftaddnet --help

#include <algorithm>
#include <cstdio>
#include <string>

#include <frugal/cost/report.hpp>
#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/model/zoo/shiftaddnet.hpp>
#include <frugal/optim/schedule.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/tensor/parallel.hpp>
#include <frugal/train/trainer.hpp>

#include "common/cli.hpp"
#include "common/data.hpp"
#include "common/report.hpp"
#include "common/schedule.hpp"

namespace {

struct recipe {
    std::size_t epochs, batch;
    double lr, weight_decay;
    std::string schedule;
    std::string name;  // run name in run.json: the model and its modes
    std::string model; // e.g. resnet20
};

template <class Model>
int train(Model& net, const recipe& r, frugal::batch_loader& train_data, frugal::batch_loader& test_data,
          frugal::fit_options o) {
    // P and S of the shift layers carry decay = false: weight decay skips them
    frugal::optimizer<> opt(frugal::parameters_of(net), frugal::sgd{0.9f, static_cast<float>(r.weight_decay), false});
    const std::uint64_t iters = r.epochs * train_data.batches_per_epoch();
    o.schedule = cli::named_schedule(r.schedule, r.lr, iters);
    const auto result = frugal::fit(net, opt, train_data, &test_data, o);
    if (result.history.empty()) {
        return 1;
    }
    const auto& last = result.history.back();
    std::printf("final test accuracy %.2f%% after %llu epochs (%.1f s of training in this run)\n",
                100.0 * last.test_accuracy, static_cast<unsigned long long>(last.epoch), result.seconds);
    std::printf("operations executed by this run (training and evaluation, all layers):\n");
    for (const auto& [key, count] : result.meter.all_ops()) {
        std::printf("  %-22s %20llu\n", key.name().c_str(), static_cast<unsigned long long>(count));
    }
    cli::write_report(o.out_dir, r.name, r.model, result.history, result.meter,
                      {{"epochs", std::to_string(r.epochs)}, {"lr", std::to_string(r.lr)}, {"schedule", r.schedule}});
    return 0;
}

} // namespace

int main(int argc, char** argv) try {
    cli::args a(argc, argv, "shiftaddnet", "train ShiftAddNet ResNet-20 and its ablations on Fashion-MNIST");
    const std::string model = a.str("model", "shiftadd", "shiftadd, shift, adder or fp32 (the ordinary ResNet)");
    const long depth = a.integer("depth", 20, "ResNet depth 6n + 2");
    const bool fix8 = a.flag("fix8", false,
                             "fixed-point training: FIX8 adder layers (8-bit codes on a shared power-of-two grid) "
                             "and a fixed-point backward of both layers with 8-bit errors");
    const bool fixed_shift = a.flag("fixed-shift", false, "freeze the shift layers at their initial values");
    recipe r;
    r.epochs = static_cast<std::size_t>(a.integer("epochs", 3, "training epochs"));
    r.batch = static_cast<std::size_t>(a.integer("batch", 128, "mini-batch size"));
    r.lr = a.real("lr", 0.1, "initial learning rate");
    r.weight_decay = a.real("wd", 1e-4, "weight decay (never applied to the shift layers' P and S)");
    r.schedule = a.str("schedule", "step", "step (x0.1 at 50% and 75%) or cosine");
    const long crop = a.integer("crop", 2, "random-crop padding in pixels (0: no crop)");
    const bool flip = a.flag("flip", true, "random horizontal flip");
    const std::string out = a.str("out", "", "output folder for metrics.csv and checkpoint.bin (resumes if present)");
    const long seed = a.integer("seed", 1, "seed of initialisation, shuffling and augmentation");
    const long threads = a.integer("threads", 0, "threads (0: every core)");
    const long subset = a.integer("subset", 0, "train on this many images only (0: all 60000)");
    const long test_subset = a.integer("test-subset", 0, "evaluate on this many test images only (0: all 10000)");
    const std::string data = a.str("data", frugal::default_fashion_mnist_dir().string(), "Fashion-MNIST folder");
    a.finish();
    if (threads > 0) {
        frugal::set_num_threads(static_cast<int>(threads));
    }
    if (r.epochs == 0 || r.batch == 0) {
        a.fail("--epochs and --batch must be positive");
    }
    if ((fix8 || fixed_shift) && model == "fp32") {
        a.fail("--fix8 and --fixed-shift apply to the shift and adder models");
    }

    cli::data_options dopts;
    dopts.dir = data;
    dopts.subset = static_cast<std::size_t>(std::max(0L, subset));
    dopts.test_subset = static_cast<std::size_t>(std::max(0L, test_subset));
    dopts.subset_seed = static_cast<std::uint64_t>(seed);
    dopts.batch = r.batch;
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
    std::printf("frugal shiftaddnet: %s resnet%ld%s%s, %zu epochs, batch %zu, lr %g (%s), wd %g, crop %ld, flip %s, "
                "%d threads, %zu training images\n",
                model.c_str(), depth, fix8 ? ", FIX8 adders, 8-bit fixed-point backward" : "", fixed_shift ? ", fixed shift" : "", r.epochs,
                r.batch, r.lr, r.schedule.c_str(), r.weight_decay, crop, flip ? "on" : "off", frugal::num_threads(),
                train_set.size());
    const auto s = static_cast<std::uint64_t>(seed);
    const auto d = static_cast<std::size_t>(depth);
    r.name = model + (fix8 ? "-fix8" : "") + (fixed_shift ? "-fixed-shift" : "");
    r.model = "resnet" + std::to_string(depth);
    using fp = frugal::shiftadd_config<frugal::adder_precision::fp32, false>;
    using fp_fixed = frugal::shiftadd_config<frugal::adder_precision::fp32, true>;
    using q8 = frugal::shiftadd_config<frugal::adder_precision::fix8, false>;
    using q8_fixed = frugal::shiftadd_config<frugal::adder_precision::fix8, true>;
    // one instantiation per (model, configuration) pair
    auto by_config = [&](auto make) {
        if (fix8) {
            return fixed_shift ? make(q8_fixed{}) : make(q8{});
        }
        return fixed_shift ? make(fp_fixed{}) : make(fp{});
    };
    if (model == "fp32") {
        auto net = frugal::cifar_resnet(d, 1, 10, s);
        return train(net, r, train_data, test_data, o);
    }
    if (model == "shiftadd") {
        return by_config([&]<class C>(C) {
            auto net = frugal::shiftaddnet_resnet<C>(d, 1, 10, s);
            return train(net, r, train_data, test_data, o);
        });
    }
    if (model == "shift") {
        if (fix8) {
            a.fail("--fix8 changes the adder layers; the shift model has none");
        }
        return by_config([&]<class C>(C) {
            auto net = frugal::shift_resnet<C>(d, 1, 10, s);
            return train(net, r, train_data, test_data, o);
        });
    }
    if (model == "adder") {
        if (fixed_shift) {
            a.fail("--fixed-shift freezes the shift layers; the adder model has none");
        }
        return by_config([&]<class C>(C) {
            auto net = frugal::adder_resnet<C>(d, 1, 10, s);
            return train(net, r, train_data, test_data, o);
        });
    }
    a.fail("unknown model '" + model + "' (shiftadd, shift, adder, fp32)");
} catch (const frugal::error& e) {
    std::fprintf(stderr, "shiftaddnet: %s\n", e.what());
    return 1;
}
