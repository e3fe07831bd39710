// Trains a model of frugal's zoo on Fashion-MNIST in FP32: the plain path
// every method in frugal is measured against.
//
//   train_fmnist --model resnet20 --epochs 15 --out runs/resnet20
//   train_fmnist --model lenet5 --epochs 10 --lr 0.05
//   train_fmnist --help
//
// With --out, the folder also receives the run's report (run.json,
// epochs.csv, layers.csv, curves.svg, layer-energy.svg) for frugal-report.

#include <cstdio>
#include <iostream>
#include <map>
#include <string>
#include <vector>

#include <frugal/cost/energy.hpp>
#include <frugal/cost/report.hpp>

#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/model/zoo/lenet.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/model/zoo/vgg.hpp>
#include <frugal/optim/schedule.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/tensor/parallel.hpp>
#include <frugal/train/trainer.hpp>

#include "common/cli.hpp"
#include "common/schedule.hpp"

namespace {

struct recipe {
    std::string model;
    std::size_t epochs, batch;
    double lr, weight_decay;
    std::string schedule;
    std::string out;
    frugal::energy_table table = frugal::energy_table::horowitz_45nm();
    std::string baseline; ///< a run folder to compare against, or empty
};

template <class Model>
int train(Model& net, const recipe& r, frugal::batch_loader& train_data, frugal::batch_loader& test_data,
          frugal::fit_options o) {
    frugal::optimizer<> opt(frugal::parameters_of(net), frugal::sgd{0.9f, static_cast<float>(r.weight_decay), true});
    const std::uint64_t iters = r.epochs * train_data.batches_per_epoch();
    o.schedule = cli::named_schedule(r.schedule, r.lr, iters);
    const auto result = frugal::fit(net, opt, train_data, &test_data, o);
    if (result.history.empty()) {
        return 1;
    }
    const auto& last = result.history.back();
    std::printf("final test accuracy %.2f%% after %llu epochs (%.1f s of training in this run)\n",
                100.0 * last.test_accuracy, static_cast<unsigned long long>(last.epoch), result.seconds);
    const std::map<std::string, std::string> settings{{"epochs", std::to_string(r.epochs)},
                                                      {"batch", std::to_string(r.batch)},
                                                      {"lr", std::to_string(r.lr)},
                                                      {"weight_decay", std::to_string(r.weight_decay)},
                                                      {"schedule", r.schedule}};
    const frugal::run_report report = frugal::make_report("fp32", r.model, result.history, result.meter, settings);
    std::vector<frugal::run_report> runs;
    if (!r.baseline.empty()) {
        runs.push_back(frugal::read_run(r.baseline));
    }
    runs.push_back(report);
    std::printf("\n");
    frugal::print_comparison(std::cout, runs, 0, r.table);
    if (!r.out.empty()) {
        frugal::write_run(r.out, report, r.table);
        std::printf("report: %s/{run.json, epochs.csv, layers.csv, curves.svg, layer-energy.svg}\n", r.out.c_str());
    }
    return 0;
}

} // namespace

int main(int argc, char** argv) try {
    cli::args a(argc, argv, "train_fmnist", "train a frugal zoo model on Fashion-MNIST (FP32)");
    const std::string model = a.str("model", "lenet5", "lenet5, resnet20/38/56/74/110 or vgg16");
    recipe r;
    r.model = model;
    r.epochs = static_cast<std::size_t>(a.integer("epochs", 3, "training epochs"));
    const bool small = model == "lenet5";
    r.batch = static_cast<std::size_t>(a.integer("batch", small ? 16 : 128, "mini-batch size"));
    r.lr = a.real("lr", small ? 0.015 : 0.1, "initial learning rate");
    r.weight_decay = a.real("wd", 5e-4, "weight decay");
    r.schedule = a.str("schedule", "cosine", "cosine or step (x0.1 at 50% and 75%)");
    const long crop = a.integer("crop", small ? 0 : 2, "random-crop padding in pixels (0: no crop)");
    const bool flip = a.flag("flip", true, "random horizontal flip");
    const std::string out =
        a.str("out", "", "output folder for metrics.csv, checkpoint.bin and the run report (resumes if present)");
    const std::string table = a.str("energy-table", "", "energy table JSON (default: 45 nm, docs/energy-model.md)");
    r.baseline = a.str("baseline", "", "a run folder to compare this run against in the final table");
    const long seed = a.integer("seed", 1, "seed of initialisation, shuffling and augmentation");
    const long threads = a.integer("threads", 0, "threads (0: every core)");
    const long subset = a.integer("subset", 0, "train on this many images only (0: all 60000)");
    const std::string data = a.str("data", frugal::default_fashion_mnist_dir().string(), "Fashion-MNIST folder");
    a.finish();
    r.out = out;
    if (!table.empty()) {
        r.table = frugal::energy_table::load_json(table);
    }
    if (!r.baseline.empty()) {
        (void)frugal::read_run(r.baseline); // a bad baseline fails now, not after training
    }
    if (threads > 0) {
        frugal::set_num_threads(static_cast<int>(threads));
    }
    if (r.epochs == 0 || r.batch == 0) {
        a.fail("--epochs and --batch must be positive");
    }

    auto train_set = frugal::load_fashion_mnist(frugal::data_split::train, data);
    if (subset > 0) {
        train_set = frugal::subset(train_set, static_cast<std::size_t>(subset), static_cast<std::uint64_t>(seed));
    }
    const auto test_set = frugal::load_fashion_mnist(frugal::data_split::test, data);
    const auto norm = frugal::normalization::from_dataset(train_set);
    frugal::batch_options bo;
    bo.batch_size = r.batch;
    bo.seed = static_cast<std::uint64_t>(seed);
    bo.augment.crop_padding = static_cast<std::size_t>(crop);
    bo.augment.flip = flip;
    frugal::batch_loader train_data(train_set, norm, bo);
    frugal::batch_loader test_data(test_set, norm, frugal::batch_options::evaluation(500));

    frugal::fit_options o;
    o.epochs = r.epochs;
    o.out_dir = out;
    o.seed = static_cast<std::uint64_t>(seed);
    std::printf("frugal train_fmnist: %s, %zu epochs, batch %zu, lr %g (%s), wd %g, crop %ld, flip %s, %d threads, "
                "%zu training images\n",
                model.c_str(), r.epochs, r.batch, r.lr, r.schedule.c_str(), r.weight_decay, crop, flip ? "on" : "off",
                frugal::num_threads(), train_set.size());
    const auto s = static_cast<std::uint64_t>(seed);
    if (model == "lenet5") {
        auto net = frugal::lenet5(1, 28, 10, s);
        return train(net, r, train_data, test_data, o);
    }
    if (model.rfind("resnet", 0) == 0) {
        auto net = frugal::cifar_resnet(static_cast<std::size_t>(std::stoul(model.substr(6))), 1, 10, s);
        return train(net, r, train_data, test_data, o);
    }
    if (model == "vgg16") {
        auto net = frugal::vgg16(1, 28, 10, s);
        return train(net, r, train_data, test_data, o);
    }
    a.fail("unknown model '" + model + "' (lenet5, resnet<6n+2>, vgg16)");
} catch (const frugal::error& e) {
    std::fprintf(stderr, "train_fmnist: %s\n", e.what());
    return 1;
}
