// Early-Bird tickets (EB Train) on Fashion-MNIST, and the baselines it is
// compared with (SPEC section 2):
//
//   eb      search with the slimming penalty, one ticket mask per epoch, stop
//           when the detector fires, shrink, continue training the small
//           network on the original schedule (EB Train "FF")
//   ns      network slimming: train the dense network for the whole budget,
//           prune, fine-tune (--finetune-epochs, default the whole budget again)
//   reinit  the ticket's structure found as in eb, fresh random weights,
//           trained for the whole budget
//   dense   the unpruned reference (no penalty, no pruning)
//
// --search-bits 8 runs the dense search (and ns's dense training) on 8-bit
// integer convolutions (FracTrain's quantized_conv, a8w8e8: on a ResNet the
// residual blocks' convolutions, the stem float; on VGG every convolution);
// the ticket is shrunk to a float network, which retrains in FP32 (SPEC 2.2's
// low-precision search; its SWALP averaging is not used).
//
//   early_bird --method eb --model vgg16 --ratio 0.5 --epochs 160 --out runs/eb-vgg16-50
//   early_bird --method ns --model resnet20 --ratio 0.3 --epochs 40 --out runs/ns-r20-30
//   early_bird --method eb --model resnet20 --epochs 6 --subset 1024 --batch 64   (a smoke test)
//
// The folder given by --out receives one sub-folder per phase (search/,
// retrain/ or finetune/) with metrics.csv and checkpoint.bin, the ticket
// masks of every search epoch (search/masks.txt), the mask-distance heat map
// (mask_distance.svg) and summary.txt. Running the same command again resumes.

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <sstream>
#include <string>
#include <unistd.h>
#include <vector>

#include <frugal/cost/energy.hpp>
#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/model/zoo/dfq_resnet.hpp>
#include <frugal/model/zoo/resnet.hpp>
#include <frugal/model/zoo/vgg.hpp>
#include <frugal/optim/schedule.hpp>
#include <frugal/optim/sgd.hpp>
#include <frugal/prune/heatmap.hpp>
#include <frugal/prune/mask.hpp>
#include <frugal/prune/shrink.hpp>
#include <frugal/prune/slimming.hpp>
#include <frugal/tensor/parallel.hpp>
#include <frugal/train/trainer.hpp>

#include "common/cli.hpp"

namespace {

namespace fs = std::filesystem;

struct settings {
    std::string method, model;
    double ratio = 0.5, lr = 0.1, wd = 1e-4, lambda = 1e-4, retrain_lambda = 1e-4, epsilon = 0.1;
    std::uint64_t epochs = 160, finetune_epochs = 160, seed = 1;
    int search_bits = 0; ///< 0: FP32 search; 2..8: integer convolutions at that width
    fs::path out;
};

struct loaders {
    frugal::batch_loader& train;
    frugal::batch_loader& test;
};

/// The SPEC 2.3 schedule scaled to the budget: lr, x0.1 at 50% and 75% of the
/// epochs, seen from step `offset` on (a phase that starts mid-schedule).
frugal::lr_schedule schedule(const settings& s, std::uint64_t per_epoch, std::uint64_t offset) {
    frugal::step_schedule st{static_cast<float>(s.lr), {}, 0.1f};
    for (const std::uint64_t m : {s.epochs / 2 * per_epoch, s.epochs * 3 / 4 * per_epoch}) {
        if (m <= offset) {
            st.base *= st.gamma;
        } else {
            st.milestones.push_back(m - offset);
        }
    }
    return frugal::lr_schedule::step(st);
}

using slim_optimizer = frugal::optimizer<frugal::slimming<>, frugal::sgd>;

slim_optimizer make_optimizer(std::vector<frugal::parameter> ps, const settings& s, double lambda) {
    return slim_optimizer(std::move(ps), frugal::sgd{0.9f, static_cast<float>(s.wd), false},
                          frugal::slimming<>{static_cast<float>(lambda)});
}

/// Totals of the training epochs of one phase.
struct phase_totals {
    std::uint64_t epochs = 0, steps = 0;
    double train_seconds = 0.0, macs = 0.0;
    frugal::op_counts ops;
    std::uint64_t bytes = 0;
    double test_accuracy = 0.0;

    void add(const std::vector<frugal::epoch_record>& h) {
        for (const auto& r : h) {
            ++epochs;
            steps += r.executed;
            train_seconds += r.train_seconds;
            macs += r.macs;
            for (const auto& [k, v] : r.ops) {
                ops[k] += v;
            }
            bytes += r.bytes;
            test_accuracy = r.test_accuracy;
        }
    }
    [[nodiscard]] double seconds_per_step() const { return steps ? train_seconds / static_cast<double>(steps) : 0.0; }
    [[nodiscard]] double macs_per_step() const { return steps ? macs / static_cast<double>(steps) : 0.0; }
};

std::string mask_bits(const frugal::channel_mask& m) {
    std::string s;
    for (const auto k : m.keep) {
        s += k != 0 ? '1' : '0';
    }
    return s;
}

std::string out_of_step(const fs::path& dir, std::size_t epochs, std::size_t masks) {
    return dir.string() + ": the checkpoint holds " + std::to_string(epochs) + " epochs but masks.txt " +
           std::to_string(masks) + " masks (the run was stopped between the two; use a new --out)";
}

struct search_outcome {
    frugal::early_bird_detector detector;
    std::optional<std::uint64_t> eb_epoch; ///< epochs trained when the detector fired
    phase_totals totals;
};

/// Dense training with the slimming penalty (lambda), one ticket mask per
/// epoch fed to the detector; stops at the early-bird epoch when asked.
/// Resumable: the checkpoint and the masks live in `dir`.
template <class Model>
search_outcome search(Model& net, const settings& s, loaders& data, const fs::path& dir, double lambda,
                      bool stop_at_eb) {
    search_outcome out{frugal::early_bird_detector(s.epsilon), std::nullopt, {}};
    auto opt = make_optimizer(frugal::parameters_of(net), s, lambda);
    const fs::path masks_file = dir / "masks.txt";
    // masks of epochs an earlier run of this command already trained
    if (fs::exists(masks_file)) {
        std::ifstream in(masks_file);
        const auto layout = frugal::ticket_mask(net, s.ratio);
        std::uint64_t epoch = 0;
        std::string bits;
        while (in >> epoch >> bits) {
            auto m = layout;
            if (bits.size() != m.keep.size() || epoch != out.detector.size() + 1) {
                throw frugal::io_error(masks_file.string() + ": not the masks of this model and ratio (use a new --out)");
            }
            for (std::size_t i = 0; i < bits.size(); ++i) {
                m.keep[i] = bits[i] == '1' ? 1 : 0;
            }
            out.detector.push(std::move(m));
        }
    }
    frugal::fit_options o;
    o.out_dir = dir;
    o.seed = s.seed;
    o.label = "search";
    o.schedule = schedule(s, data.train.batches_per_epoch(), 0);
    const bool done = (stop_at_eb && out.detector.found()) || out.detector.size() >= s.epochs;
    std::vector<frugal::epoch_record> history;
    if (done) {
        // only load the checkpoint of the last search epoch
        o.epochs = out.detector.size();
        history = frugal::fit(net, opt, data.train, &data.test, o).history;
    }
    o.epochs = s.epochs;
    o.stop_after = 1;
    while (!done) {
        history = frugal::fit(net, opt, data.train, &data.test, o).history;
        if (history.size() != out.detector.size() + 1) {
            throw frugal::io_error(out_of_step(dir, history.size(), out.detector.size()));
        }
        const auto mask = frugal::ticket_mask(net, s.ratio);
        for (const auto& w : mask.warnings) {
            std::printf("  note: %s\n", w.c_str());
        }
        {
            std::ofstream m(masks_file, std::ios::app);
            m << history.size() << ' ' << mask_bits(mask) << '\n';
        }
        const bool fired = out.detector.push(mask);
        std::string dist;
        for (const double d : out.detector.last_distances()) {
            char buf[16];
            std::snprintf(buf, sizeof buf, " %.3f", d);
            dist += buf;
        }
        std::printf("  ticket mask after epoch %zu: %zu of %zu channels kept; distances to older masks:%s%s\n",
                    history.size(), mask.kept(), mask.size(), dist.empty() ? " (FIFO not full)" : dist.c_str(),
                    fired ? "  <- early bird" : "");
        if ((stop_at_eb && out.detector.found()) || history.size() >= s.epochs) {
            break;
        }
    }
    if (out.detector.found_at()) {
        out.eb_epoch = *out.detector.found_at() + 1;
    }
    out.totals.add(history);
    return out;
}

/// Trains `net` for `epochs` epochs in `dir` on the schedule seen from `offset` steps on.
template <class Model>
phase_totals train_phase(Model& net, const settings& s, loaders& data, const fs::path& dir, std::uint64_t epochs,
                         std::uint64_t offset, double lambda, const std::string& label) {
    phase_totals t;
    if (epochs == 0) {
        return t;
    }
    auto opt = make_optimizer(frugal::parameters_of(net), s, lambda);
    frugal::fit_options o;
    o.out_dir = dir;
    o.seed = s.seed;
    o.label = label;
    o.epochs = epochs;
    o.schedule = schedule(s, data.train.batches_per_epoch(), offset);
    t.add(frugal::fit(net, opt, data.train, &data.test, o).history);
    return t;
}

template <class Model>
std::size_t parameter_count(Model& net) {
    std::size_t n = 0;
    for (const auto& p : frugal::parameters_of(net)) {
        n += p.value.size();
    }
    return n;
}

/// Forward multiply-accumulates of one evaluation sample.
template <class Model>
double forward_macs(Model& net) {
    frugal::cost_meter meter;
    frugal::context ctx;
    ctx.mode = frugal::run_mode::eval;
    ctx.meter = &meter;
    frugal::tensor4 x = frugal::tensor4::from_shape({1, 1, 28, 28});
    x.fill(0.0f);
    (void)net.forward(ctx, x);
    double n = 0.0;
    for (const auto& l : meter.layers()) {
        n += static_cast<double>(l[frugal::phase::forward].count(frugal::op_kind::mac));
    }
    return n;
}

/// Runs the chosen method on `net`; `ticket(mask, seed)` builds a freshly
/// initialised network of a mask's structure (for reinit).
template <class Model, class Ticket>
int run(Model net, const settings& s, loaders& data, Ticket&& ticket) {
    const std::size_t dense_params = parameter_count(net);
    const double dense_macs = forward_macs(net);
    std::ostringstream report;
    auto say = [&](const std::string& line) {
        std::printf("%s\n", line.c_str());
        report << line << '\n';
    };
    char buf[512];

    const bool plain = s.method == "dense";
    const bool stop_at_eb = s.method == "eb" || s.method == "reinit";
    auto found = search(net, s, data, s.out / "search", plain ? 0.0 : s.lambda, stop_at_eb);
    phase_totals total = found.totals;
    const auto& det = found.detector;
    if (det.size() > 0) {
        frugal::heatmap_options ho;
        ho.title = s.model + ", p = " + std::to_string(static_cast<int>(s.ratio * 100 + 0.5)) + "%: mask distance";
        if (det.found_at()) {
            ho.highlight = *det.found_at();
        }
        frugal::write_mask_distance_svg(s.out / "mask_distance.svg", det.distance_matrix(), ho);
    }
    say("method " + s.method + ", model " + s.model + ", ratio " + std::to_string(s.ratio) + ", " +
        std::to_string(s.epochs) + " epochs");
    if (found.eb_epoch) {
        std::snprintf(buf, sizeof buf, "early-bird ticket: epoch %llu (epsilon %.3g, %zu masks)",
                      static_cast<unsigned long long>(*found.eb_epoch), s.epsilon, det.size());
    } else {
        std::snprintf(buf, sizeof buf, "early-bird ticket: not found in %zu epochs (epsilon %.3g)", det.size(),
                      s.epsilon);
    }
    say(buf);

    phase_totals pruned_phase;
    double pruned_macs = dense_macs;
    std::size_t pruned_params = dense_params;
    if (!plain) {
        const auto mask = frugal::ticket_mask(net, s.ratio);
        for (const auto& w : mask.warnings) {
            say("note: " + w);
        }
        std::snprintf(buf, sizeof buf, "ticket: %zu of %zu prunable channels kept", mask.kept(), mask.size());
        say(buf);
        if (s.method == "eb") {
            auto small = frugal::shrink(net, mask);
            pruned_params = parameter_count(small);
            pruned_macs = forward_macs(small);
            const std::uint64_t done = found.totals.epochs;
            pruned_phase = train_phase(small, s, data, s.out / "retrain", s.epochs - done,
                                       done * data.train.batches_per_epoch(), s.retrain_lambda, "retrain");
        } else if (s.method == "ns") {
            auto small = frugal::shrink(net, mask);
            pruned_params = parameter_count(small);
            pruned_macs = forward_macs(small);
            pruned_phase = train_phase(small, s, data, s.out / "finetune", s.finetune_epochs, 0, s.retrain_lambda,
                                       "finetune");
        } else { // reinit
            auto small = ticket(mask, s.seed + 1);
            pruned_params = parameter_count(small);
            pruned_macs = forward_macs(small);
            pruned_phase = train_phase(small, s, data, s.out / "reinit", s.epochs, 0, s.retrain_lambda, "reinit");
        }
    }
    for (const auto& [k, v] : pruned_phase.ops) {
        total.ops[k] += v;
    }
    total.train_seconds += pruned_phase.train_seconds;
    total.macs += pruned_phase.macs;
    total.bytes += pruned_phase.bytes;
    total.epochs += pruned_phase.epochs;
    const double accuracy = pruned_phase.epochs > 0 ? pruned_phase.test_accuracy : found.totals.test_accuracy;
    const auto energy = frugal::estimate(total.ops, total.bytes, frugal::energy_table::horowitz_45nm());

    std::snprintf(buf, sizeof buf, "parameters: dense %zu, trained network %zu (%.1f%%)", dense_params, pruned_params,
                  100.0 * static_cast<double>(pruned_params) / static_cast<double>(dense_params));
    say(buf);
    std::snprintf(buf, sizeof buf, "forward MACs per sample: dense %.4g, trained network %.4g (%.1f%% saved)",
                  dense_macs, pruned_macs, 100.0 * (1.0 - pruned_macs / dense_macs));
    say(buf);
    std::snprintf(buf, sizeof buf, "dense phase: %llu epochs, %.1f s training, %.3g s/step, %.4g MACs/step",
                  static_cast<unsigned long long>(found.totals.epochs), found.totals.train_seconds,
                  found.totals.seconds_per_step(), found.totals.macs_per_step());
    say(buf);
    if (pruned_phase.epochs > 0) {
        const double time_saving = 1.0 - pruned_phase.seconds_per_step() / found.totals.seconds_per_step();
        const double mac_saving = 1.0 - pruned_phase.macs_per_step() / found.totals.macs_per_step();
        std::snprintf(buf, sizeof buf,
                      "pruned phase: %llu epochs, %.1f s training, %.3g s/step, %.4g MACs/step "
                      "(step time saved %.1f%% of MACs saved %.1f%%: %.0f%% realized)",
                      static_cast<unsigned long long>(pruned_phase.epochs), pruned_phase.train_seconds,
                      pruned_phase.seconds_per_step(), pruned_phase.macs_per_step(), 100.0 * time_saving,
                      100.0 * mac_saving, mac_saving > 0 ? 100.0 * time_saving / mac_saving : 0.0);
        say(buf);
    }
    std::snprintf(buf, sizeof buf,
                  "total training: %llu epochs, %.1f s, %.4g MACs, %.4g J counted energy (45 nm table, operations only)",
                  static_cast<unsigned long long>(total.epochs), total.train_seconds, total.macs, energy.joules);
    say(buf);
    std::snprintf(buf, sizeof buf, "final test accuracy %.2f%%", 100.0 * accuracy);
    say(buf);
    std::ofstream(s.out / "summary.txt") << report.str();
    return 0;
}

} // namespace

int main(int argc, char** argv) try {
    cli::args a(argc, argv, "early_bird", "Early-Bird tickets (EB Train) and its baselines on Fashion-MNIST");
    settings s;
    s.method = a.str("method", "eb", "eb (EB Train), ns (train-prune-fine-tune), reinit (re-initialised ticket) or dense");
    s.model = a.str("model", "vgg16", "vgg16 or resnet<6n+2> (resnet20, resnet56, ...)");
    s.ratio = a.real("ratio", 0.5, "channel pruning ratio p in (0, 1)");
    s.epochs = static_cast<std::uint64_t>(a.integer("epochs", 160, "training budget in epochs (LR x0.1 at 50% and 75%)"));
    const long finetune = a.integer("finetune-epochs", -1, "ns: fine-tuning epochs (-1: the same as --epochs)");
    const long batch = a.integer("batch", 256, "mini-batch size");
    s.lr = a.real("lr", 0.1, "initial learning rate");
    s.wd = a.real("wd", 1e-4, "weight decay");
    s.lambda = a.real("lambda", 1e-4, "L1 penalty on batch-norm scales while searching");
    s.retrain_lambda = a.real("retrain-lambda", 1e-4, "L1 penalty while training the pruned network");
    s.epsilon = a.real("epsilon", 0.1, "early-bird threshold on the mask distance");
    s.search_bits = static_cast<int>(
        a.integer("search-bits", 0, "dense search on integer convolutions of this width (2..8; 0: FP32)"));
    const std::string out = a.str("out", "", "output folder (resumes if present; empty: a temporary folder)");
    s.seed = static_cast<std::uint64_t>(a.integer("seed", 1, "seed of initialisation, shuffling and augmentation"));
    const long threads = a.integer("threads", 0, "threads (0: every core)");
    const long subset = a.integer("subset", 0, "train on this many images only (0: all 60000)");
    const long test_subset = a.integer("test-subset", 0, "evaluate on this many test images only (0: all 10000)");
    const std::string data_dir = a.str("data", frugal::default_fashion_mnist_dir().string(), "Fashion-MNIST folder");
    a.finish();
    if (s.method != "eb" && s.method != "ns" && s.method != "reinit" && s.method != "dense") {
        a.fail("unknown --method '" + s.method + "' (eb, ns, reinit, dense)");
    }
    if (!(s.ratio > 0.0 && s.ratio < 1.0)) {
        a.fail("--ratio must be in (0, 1)");
    }
    if (s.search_bits != 0 && (s.search_bits < 2 || s.search_bits > 8)) {
        a.fail("--search-bits must be 0 (FP32) or 2..8");
    }
    if (s.epochs == 0 || batch <= 0) {
        a.fail("--epochs and --batch must be positive");
    }
    s.finetune_epochs = finetune < 0 ? s.epochs : static_cast<std::uint64_t>(finetune);
    if (threads > 0) {
        frugal::set_num_threads(static_cast<int>(threads));
    }
    const bool temporary = out.empty();
    s.out = temporary ? fs::temp_directory_path() / ("frugal-early-bird-" + std::to_string(::getpid())) : fs::path(out);
    fs::create_directories(s.out);

    auto train_set = frugal::load_fashion_mnist(frugal::data_split::train, data_dir);
    if (subset > 0) {
        train_set = frugal::subset(train_set, static_cast<std::size_t>(subset), s.seed);
    }
    auto test_set = frugal::load_fashion_mnist(frugal::data_split::test, data_dir);
    if (test_subset > 0) {
        test_set = frugal::subset(test_set, static_cast<std::size_t>(test_subset), s.seed);
    }
    const auto norm = frugal::normalization::from_dataset(train_set);
    frugal::batch_options bo;
    bo.batch_size = static_cast<std::size_t>(batch);
    bo.seed = s.seed;
    bo.augment.crop_padding = 2;
    bo.augment.flip = true;
    frugal::batch_loader train_data(train_set, norm, bo);
    frugal::batch_loader test_data(test_set, norm, frugal::batch_options::evaluation(500));
    loaders data{train_data, test_data};
    std::printf("frugal early_bird: %s on %s, p = %g, %llu epochs, batch %ld, lr %g, wd %g, lambda %g, epsilon %g, "
                "search %s, %d threads, %zu training images, output %s\n",
                s.method.c_str(), s.model.c_str(), s.ratio, static_cast<unsigned long long>(s.epochs), batch, s.lr,
                s.wd, s.lambda, s.epsilon, s.search_bits ? (std::to_string(s.search_bits) + "-bit").c_str() : "fp32",
                frugal::num_threads(), train_set.size(), s.out.string().c_str());

    int rc = 2;
    if (s.model == "vgg16") {
        const auto ticket = [](const frugal::channel_mask& m, std::uint64_t seed) {
            return frugal::vgg(frugal::pruned_vgg_config(frugal::vgg16_config(), m), 1, 28, 10, seed);
        };
        if (s.search_bits > 0) {
            auto net = frugal::vgg16<frugal::quantized_conv_maker>(1, 28, 10, s.seed);
            frugal::set_model_precision(net, {s.search_bits, s.search_bits, s.search_bits});
            rc = run(std::move(net), s, data, ticket);
        } else {
            rc = run(frugal::vgg16(1, 28, 10, s.seed), s, data, ticket);
        }
    } else if (s.model.rfind("resnet", 0) == 0) {
        const std::size_t depth = static_cast<std::size_t>(std::stoul(s.model.substr(6)));
        const auto ticket = [depth](const frugal::channel_mask& m, std::uint64_t seed) {
            return frugal::pruned_cifar_resnet(depth, m.kept_per_layer(), 1, 10, seed);
        };
        if (s.search_bits > 0) {
            auto net = frugal::cifar_resnet<frugal::quantized_block>(depth, 1, 10, s.seed);
            frugal::set_model_precision(net, {s.search_bits, s.search_bits, s.search_bits});
            rc = run(std::move(net), s, data, ticket);
        } else {
            rc = run(frugal::cifar_resnet(depth, 1, 10, s.seed), s, data, ticket);
        }
    } else {
        a.fail("unknown model '" + s.model + "' (vgg16, resnet<6n+2>)");
    }
    if (temporary) {
        std::error_code ec;
        fs::remove_all(s.out, ec);
    }
    return rc;
} catch (const frugal::error& e) {
    std::fprintf(stderr, "early_bird: %s\n", e.what());
    return 1;
} catch (const std::exception& e) {
    std::fprintf(stderr, "early_bird: %s\n", e.what());
    return 1;
}
