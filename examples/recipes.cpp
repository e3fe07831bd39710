// The flagship: trains the FP32 baseline and a recipe of combined techniques
// (or every technique alone and combined) on Fashion-MNIST with a CIFAR-style
// ResNet, then prints the comparison table (accuracy, wall time, operations
// by format, energy, savings) and writes the accuracy-vs-energy plot.
//
//   recipes                                          combined recipe (SMD + SLU + PFQ) vs FP32, ResNet-38
//   recipes --recipe all --out runs/recipes          the baseline, each technique alone, and combined
//   recipes --recipe-epochs 18                       the recipe gets 18 nominal epochs, the baseline --epochs
//   recipes --depth 20 --subset 4096 --test-subset 2000 --epochs 3   a short run (scripts/run-example)
//   recipes --help
//
// Each recipe is one explicit instantiation of frugal::recipe<...>: the
// techniques are types; every number on the command line is data. Runs
// with --out resume: a finished run is read back, not trained again
// (--resume off trains every run from the start).

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iostream>
#include <map>
#include <sstream>
#include <string>
#include <vector>

#include <frugal/cost/energy.hpp>
#include <frugal/cost/report.hpp>
#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/tensor/parallel.hpp>
#include <frugal/train/recipe.hpp>
#include <frugal/train/trainer.hpp>

#include "common/cli.hpp"
#include "common/data.hpp"
#include "common/schedule.hpp"

namespace {

namespace tq = frugal::technique;

// the recipes of the comparison: one instantiation each
using fp32 = frugal::recipe<>;
using smd = frugal::recipe<tq::smd>;
using slu = frugal::recipe<tq::slu>;
using pfq = frugal::recipe<tq::pfq>;
using psg = frugal::recipe<tq::psg>;
using combined = frugal::recipe<tq::smd, tq::slu, tq::pfq>;
using e2train = frugal::recipe<tq::smd, tq::slu, tq::psg>;

struct settings {
    frugal::recipe_options opts;
    std::size_t epochs = 12;
    std::size_t recipe_epochs = 12; ///< nominal epochs of the non-baseline runs
    double lr = 0.1, sign_lr = frugal::signsgd::default_lr;
    double gate_lr = 0.0; ///< SLU gates' learning rate (0: the run's)
    std::string schedule = "step";
    std::filesystem::path out;
    bool resume = true;
};

template <class Recipe>
frugal::run_report run(const settings& s, frugal::batch_loader& train_data, frugal::batch_loader& test_data) {
    std::string name = Recipe::name();
    if (Recipe::smd && s.opts.smd_momentum_step) { // its own run folder: never read back the other mode's run
        name += "-mstep";
    }
    std::printf("\n== %s: %s\n", name.c_str(), Recipe::name() == "fp32" ? "the FP32 SGD baseline" : "recipe");
    if constexpr (Recipe::smd) {
        std::printf("SMD: p %.2f, %s\n", s.opts.drop_probability,
                    s.opts.smd_momentum_step ? "a dropped batch takes a zero-gradient optimizer step"
                                             : "a dropped batch does nothing");
    }
    const bool sign = Recipe::psg || Recipe::signsgd;
    const double lr = sign ? s.sign_lr : s.lr;
    frugal::recipe_options opts = s.opts;
    if (s.gate_lr > 0.0) { // the gates' own rate, as a multiple of this run's
        opts.slu.gate_lr_scale = static_cast<float>(s.gate_lr / lr);
    }
    auto net = Recipe::make_model(opts);
    auto opt = Recipe::make_optimizer(frugal::parameters_of(net), opts);
    const std::size_t epochs = Recipe::name() == "fp32" ? s.epochs : s.recipe_epochs;
    const std::uint64_t iters = epochs * train_data.batches_per_epoch();
    auto sched = Recipe::make_schedule(opts, iters);
    frugal::fit_options o;
    o.epochs = epochs;
    o.seed = s.opts.seed;
    o.out_dir = s.out.empty() ? std::filesystem::path{} : s.out / name;
    o.resume = s.resume;
    o.schedule = cli::named_schedule(s.schedule, lr, iters);
    if constexpr (Recipe::pfq) {
        std::printf("precision: %s\n", sched.describe().c_str());
    }
    o.on_epoch = [&](const frugal::epoch_record& r) {
        if constexpr (Recipe::pfq) {
            std::printf("  last step ran at %s\n", sched.at(r.step - 1).name().c_str());
        }
        if constexpr (Recipe::slu) {
            auto& stack = net.template get<2>();
            const auto f = stack.eval_executed_fraction();
            double mean = 0.0; // the first block always runs: the gated ones are 1..
            for (std::size_t i = 1; i < f.size(); ++i) {
                mean += f[i] / static_cast<double>(f.size() - 1);
            }
            std::printf("  SLU: %.1f%% of the gated blocks executed in evaluation (target %.0f%%)\n", 100.0 * mean,
                        100.0 * stack.options().target_exec);
            stack.reset_eval_report();
        }
    };
    const auto result = frugal::fit(net, opt, train_data, &test_data, o, Recipe::make_sampler(opts), &sched);
    std::map<std::string, std::string> settings{{"recipe", name},
                                                {"epochs", std::to_string(epochs)},
                                                {"lr", std::to_string(lr)},
                                                {"schedule", s.schedule}};
    if constexpr (Recipe::smd) {
        settings["smd_momentum_step"] = s.opts.smd_momentum_step ? "on" : "off";
    }
    if constexpr (Recipe::psg) {
        settings["sign_scope"] = opts.psg_scope == frugal::sign_scope::all ? "all" : "weights";
    }
    if constexpr (Recipe::slu) {
        settings["gate_lr"] = std::to_string(lr * static_cast<double>(opts.slu.gate_lr_scale));
    }
    frugal::run_report report = frugal::make_report(name, "resnet" + std::to_string(s.opts.depth), result.history,
                                                    result.meter, settings);
    if (!o.out_dir.empty()) {
        frugal::write_run(o.out_dir, report, frugal::energy_table::horowitz_45nm());
    }
    return report;
}

std::vector<double> parse_fractions(const std::string& text, cli::args& a) {
    std::vector<double> f;
    std::stringstream in(text);
    std::string item;
    while (std::getline(in, item, ',')) {
        try {
            f.push_back(std::stod(item));
        } catch (const std::exception&) {
            a.fail("--pfq-at takes fractions separated by commas, e.g. 0.4,0.7,0.9 (got '" + text + "')");
        }
    }
    return f;
}

} // namespace

int main(int argc, char** argv) try {
    cli::args a(argc, argv, "recipes",
                "train the FP32 baseline and a recipe of combined techniques, then compare accuracy, time and energy");
    const std::string which =
        a.str("recipe", "combined", "combined (smd+slu+pfq), e2train (smd+slu+psg), smd, slu, pfq, psg, or all");
    settings s;
    s.opts.depth = static_cast<std::size_t>(a.integer("depth", 38, "ResNet depth 6n + 2"));
    s.epochs = static_cast<std::size_t>(a.integer("epochs", 12, "nominal epochs of every run"));
    const long recipe_epochs = a.integer("recipe-epochs", 0,
                                         "nominal epochs of the recipes (0: --epochs), e.g. more epochs for sampled "
                                         "recipes as E2-Train's energy-ratio setting does");
    const long batch = a.integer("batch", 128, "mini-batch size");
    s.lr = a.real("lr", 0.1, "initial learning rate of SGD runs");
    s.sign_lr = a.real("sign-lr", frugal::signsgd::default_lr, "initial learning rate of sign-update runs (PSG)");
    s.schedule = a.str("schedule", "step", "learning-rate schedule: step (x0.1 at 50% and 75%) or cosine");
    s.opts.drop_probability = a.real("drop", 0.5, "SMD: probability of dropping a mini-batch");
    s.opts.smd_momentum_step =
        a.flag("smd-momentum-step", false, "SMD: a dropped batch still takes a zero-gradient optimizer step");
    s.opts.slu.target_exec = static_cast<float>(1.0 - a.real("skip", 0.4, "SLU: target share of skipped blocks"));
    s.gate_lr = a.real("gate-lr", 0.0, "SLU: learning rate of the gate network (0: the run's)");
    const std::string scope =
        a.str("sign-scope", "all", "PSG: parameters the sign covers: all, or weights (batch norm, biases and gates "
                                   "keep exact gradients)");
    const std::string pfq_at =
        a.str("pfq-at", "0.4,0.7,0.9", "PFQ: fractions of the run where the next stage starts (empty: the indicator)");
    const long seed = a.integer("seed", 1, "seed of initialisation, shuffling, augmentation and sampling");
    const long threads = a.integer("threads", 0, "threads (0: every core)");
    const long subset = a.integer("subset", 0, "train on this many images only (0: all 60000)");
    const long test_subset = a.integer("test-subset", 0, "evaluate on this many test images only (0: all 10000)");
    const std::string out = a.str("out", "", "output folder: one run folder per recipe, comparison.svg");
    s.resume = a.flag("resume", true, "continue (or read back) the runs found in --out; off trains them again");
    const std::string data = a.str("data", frugal::default_fashion_mnist_dir().string(), "Fashion-MNIST folder");
    a.finish();
    if (threads > 0) {
        frugal::set_num_threads(static_cast<int>(threads));
    }
    if (s.epochs == 0 || batch <= 0 || recipe_epochs < 0) {
        a.fail("--epochs and --batch must be positive, --recipe-epochs positive or 0");
    }
    if (!(s.lr > 0.0) || !(s.sign_lr > 0.0) || !(s.gate_lr >= 0.0) || !std::isfinite(s.lr + s.sign_lr + s.gate_lr)) {
        a.fail("--lr and --sign-lr must be positive and finite, --gate-lr finite and positive or 0");
    }
    if (scope != "all" && scope != "weights") {
        a.fail("--sign-scope must be all or weights, not '" + scope + "'");
    }
    s.opts.psg_scope = scope == "all" ? frugal::sign_scope::all : frugal::sign_scope::weights;
    s.recipe_epochs = recipe_epochs > 0 ? static_cast<std::size_t>(recipe_epochs) : s.epochs;
    s.opts.seed = static_cast<std::uint64_t>(seed);
    s.opts.slu.validate();
    s.opts.pfq_switch_at = pfq_at.empty() ? std::vector<double>{} : parse_fractions(pfq_at, a);
    s.out = out;

    cli::data_options d;
    d.dir = data;
    d.subset = static_cast<std::size_t>(std::max(0L, subset));
    d.test_subset = static_cast<std::size_t>(std::max(0L, test_subset));
    d.subset_seed = s.opts.seed;
    d.batch = static_cast<std::size_t>(batch);
    d.seed = s.opts.seed;
    cli::fashion_data fm(d);
    std::printf("frugal recipes: ResNet-%zu, %zu epochs (recipes: %zu), batch %ld, %zu training images, %d threads\n",
                s.opts.depth, s.epochs, s.recipe_epochs, batch, fm.train_set.size(), frugal::num_threads());

    std::vector<frugal::run_report> runs;
    runs.push_back(run<fp32>(s, fm.train, fm.test));
    if (which == "combined" || which == "all") {
        if (which == "all") {
            runs.push_back(run<smd>(s, fm.train, fm.test));
            runs.push_back(run<slu>(s, fm.train, fm.test));
            runs.push_back(run<pfq>(s, fm.train, fm.test));
        }
        runs.push_back(run<combined>(s, fm.train, fm.test));
    } else if (which == "e2train") {
        runs.push_back(run<e2train>(s, fm.train, fm.test));
    } else if (which == "smd") {
        runs.push_back(run<smd>(s, fm.train, fm.test));
    } else if (which == "slu") {
        runs.push_back(run<slu>(s, fm.train, fm.test));
    } else if (which == "pfq") {
        runs.push_back(run<pfq>(s, fm.train, fm.test));
    } else if (which == "psg") {
        runs.push_back(run<psg>(s, fm.train, fm.test));
    } else {
        a.fail("unknown recipe '" + which + "' (combined, e2train, smd, slu, pfq, psg, all)");
    }

    const auto table = frugal::energy_table::horowitz_45nm();
    std::printf("\n");
    frugal::print_comparison(std::cout, runs, 0, table);
    const std::filesystem::path plot = s.out.empty() ? std::filesystem::path("comparison.svg") : s.out / "comparison.svg";
    frugal::write_comparison_plot(plot, runs, table);
    std::printf("plot: %s\n", plot.string().c_str());
    return 0;
} catch (const frugal::error& e) {
    std::fprintf(stderr, "recipes: %s\n", e.what());
    return 1;
}
