#ifndef FRUGAL_TRAIN_TRAINER_HPP
#define FRUGAL_TRAIN_TRAINER_HPP

/// @file
/// frugal::fit: the training loop. Epochs of mini-batches (a Sampler decides
/// which nominal batches execute), evaluation after each epoch, a progress
/// bar, per-epoch metrics in CSV, checkpoints written atomically with a
/// checksum, and resume that continues exactly where the run stopped: the
/// batch order, the augmentation and every random draw of a step are pure
/// functions of (seed, epoch, step), and the checkpoint holds the weights,
/// the optimizer state and the history, so a resumed run produces the same
/// weights bit for bit as one that was never interrupted.
///
/// A non-finite loss stops the run with frugal::divergence_error; the last
/// good checkpoint stays on disk.

#include <algorithm>
#include <chrono>
#include <cmath>
#include <concepts>
#include <cstdint>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <functional>
#include <string>
#include <system_error>
#include <vector>

#include "frugal/cost/meter.hpp"
#include "frugal/data/batch.hpp"
#include "frugal/error.hpp"
#include "frugal/layers/layer.hpp"
#include "frugal/layers/loss.hpp"
#include "frugal/optim/schedule.hpp"
#include "frugal/tensor/serialize.hpp"
#include "frugal/train/checkpoint.hpp"
#include "frugal/train/precision_schedule.hpp"
#include "frugal/train/progress.hpp"

namespace frugal {

/// Runs every nominal mini-batch (the plain sampler).
struct every_batch {
    static constexpr const char* name = "every_batch";
    [[nodiscard]] bool take(std::uint64_t /*epoch*/, std::uint64_t /*batch*/) const noexcept { return true; }
};

/// What one epoch did.
struct epoch_record {
    std::uint64_t epoch = 0;          ///< 1-based
    std::uint64_t step = 0;           ///< nominal iterations so far (what the LR schedule sees)
    std::uint64_t executed = 0;       ///< mini-batches that ran this epoch
    std::uint64_t nominal = 0;        ///< mini-batches the epoch had
    double train_loss = 0.0;          ///< mean over executed batches
    double train_accuracy = 0.0;
    double test_loss = 0.0;
    double test_accuracy = 0.0;
    double lr = 0.0;                  ///< at the epoch's last step
    double train_seconds = 0.0;       ///< wall time of the training steps
    double eval_seconds = 0.0;
    double macs = 0.0;                ///< multiply-accumulates executed in training this epoch (all formats)
    op_counts ops;                    ///< every operation training executed this epoch, by kind and format
    std::uint64_t bytes = 0;          ///< bytes the training kernels read and wrote this epoch
};

/// How fit runs.
struct fit_options {
    std::uint64_t epochs = 10;
    lr_schedule schedule = lr_schedule::constant(0.05f);
    /// Folder for metrics.csv and checkpoint.bin; empty writes nothing.
    std::filesystem::path out_dir;
    /// Continue from out_dir/checkpoint.bin when it exists.
    bool resume = true;
    std::uint64_t seed = 1;
    bool progress = true;
    /// Record what the kernels execute (frugal::cost_meter).
    bool meter = true;
    /// Stop after this many epochs in this call (0: run to `epochs`), as if
    /// the run were interrupted: resume continues from there.
    std::uint64_t stop_after = 0;
    /// Label of progress lines.
    std::string label = "epoch";
    /// Called after each epoch (metrics written, checkpoint saved).
    std::function<void(const epoch_record&)> on_epoch;
};

/// Everything fit produced.
struct fit_result {
    std::vector<epoch_record> history; ///< every epoch of the run, resumed ones included
    cost_meter meter;                 ///< costs recorded by this call
    double seconds = 0.0;             ///< wall time of this call
    bool resumed = false;
    std::uint64_t resumed_from = 0;   ///< epochs done before this call
};

/// Mean loss and accuracy of a model over a loader, in evaluation mode.
template <class Model>
std::pair<double, double> evaluate(Model& model, batch_loader& loader, std::uint64_t epoch = 0) {
    context ctx;
    ctx.mode = run_mode::eval;
    softmax_cross_entropy loss;
    batch b;
    double total = 0.0;
    std::size_t correct = 0, count = 0;
    for (std::size_t i = 0; i < loader.batches_per_epoch(); ++i) {
        loader.fill(epoch, i, b);
        const float l = loss.forward(model.forward(ctx, b.x), b.y);
        total += static_cast<double>(l) * static_cast<double>(b.size());
        correct += loss.correct();
        count += b.size();
    }
    return {count ? total / static_cast<double>(count) : 0.0,
            count ? static_cast<double>(correct) / static_cast<double>(count) : 0.0};
}

namespace detail {

inline void save_history(archive_writer& a, const std::vector<epoch_record>& h) {
    a.tag("history/2");
    a.u64(h.size());
    for (const auto& r : h) {
        a.u64(r.epoch);
        a.u64(r.step);
        a.u64(r.executed);
        a.u64(r.nominal);
        for (double v : {r.train_loss, r.train_accuracy, r.test_loss, r.test_accuracy, r.lr, r.train_seconds,
                         r.eval_seconds, r.macs}) {
            a.f64(v);
        }
        a.u64(r.bytes);
        a.u64(r.ops.size());
        for (const auto& [k, n] : r.ops) {
            a.u32(static_cast<std::uint32_t>(k.kind) | (std::uint32_t{k.a.bits} << 8) |
                  (std::uint32_t{k.a.floating} << 16) | (std::uint32_t{k.b.bits} << 17) |
                  (std::uint32_t{k.b.floating} << 25));
            a.u64(n);
        }
    }
}

inline std::vector<epoch_record> load_history(archive_reader& a) {
    a.expect("history/2");
    const std::uint64_t n = a.u64();
    if (n > 1000000) {
        a.fail(a.offset(), "implausible history length (corrupt checkpoint)");
    }
    std::vector<epoch_record> h(n);
    for (auto& r : h) {
        r.epoch = a.u64();
        r.step = a.u64();
        r.executed = a.u64();
        r.nominal = a.u64();
        for (double* v : {&r.train_loss, &r.train_accuracy, &r.test_loss, &r.test_accuracy, &r.lr, &r.train_seconds,
                          &r.eval_seconds, &r.macs}) {
            *v = a.f64();
        }
        r.bytes = a.u64();
        const std::uint64_t kinds = a.u64();
        if (kinds > 4096) {
            a.fail(a.offset(), "implausible operation count table (corrupt checkpoint)");
        }
        for (std::uint64_t i = 0; i < kinds; ++i) {
            const std::uint32_t code = a.u32();
            const op_key k{static_cast<op_kind>(code & 0xff),
                           {static_cast<std::uint8_t>((code >> 8) & 0xff), ((code >> 16) & 1) != 0},
                           {static_cast<std::uint8_t>((code >> 17) & 0xff), ((code >> 25) & 1) != 0}};
            if (static_cast<std::size_t>(k.kind) >= op_kind_count) {
                a.fail(a.offset() - 4, "unknown operation kind (corrupt checkpoint)");
            }
            r.ops[k] = a.u64();
        }
    }
    return h;
}

inline void write_metrics_csv(const std::filesystem::path& file, const std::vector<epoch_record>& h) {
    const std::filesystem::path tmp = file.string() + ".tmp";
    {
        std::ofstream out(tmp);
        if (!out) {
            throw io_error(concat(file.string(), ": cannot write metrics"));
        }
        out << "epoch,step,executed_batches,nominal_batches,train_loss,train_accuracy,test_loss,test_accuracy,lr,"
               "train_seconds,eval_seconds,train_macs\n";
        char line[512];
        for (const auto& r : h) {
            std::snprintf(line, sizeof line, "%llu,%llu,%llu,%llu,%.6f,%.6f,%.6f,%.6f,%.6g,%.3f,%.3f,%.6g\n",
                          static_cast<unsigned long long>(r.epoch), static_cast<unsigned long long>(r.step),
                          static_cast<unsigned long long>(r.executed), static_cast<unsigned long long>(r.nominal),
                          r.train_loss, r.train_accuracy, r.test_loss, r.test_accuracy, r.lr, r.train_seconds,
                          r.eval_seconds, r.macs);
            out << line;
        }
        if (!out) {
            throw io_error(concat(file.string(), ": cannot write metrics"));
        }
    }
    std::filesystem::rename(tmp, file);
}

template <class Model>
bool parameters_finite(Model& model) {
    std::vector<parameter> ps;
    model.collect_parameters(ps);
    for (const auto& p : ps) {
        for (const float v : p.value) {
            if (!std::isfinite(v)) {
                return false;
            }
        }
    }
    return true;
}

} // namespace detail

/// Trains `model` with `opt` on `train`, evaluating on `test` (may be null)
/// after every epoch. See fit_options; throws frugal::divergence_error on a
/// non-finite loss, frugal::io_error when out_dir cannot be written.
/// `schedule` (may be null; frugal/train/precision_schedule.hpp) sets the
/// model's bit widths (or, with `apply(model, step)`, whatever it drives)
/// before every executed step, sees each step's loss, and is saved in the
/// checkpoint with the model and the optimizer.
template <class Model, class Optimizer, class Sampler = every_batch, class Schedule = no_precision_schedule>
fit_result fit(Model& model, Optimizer& opt, batch_loader& train, batch_loader* test, const fit_options& o,
               Sampler sampler = {}, Schedule* schedule = nullptr) {
    static_assert(!Schedule::active || precision_schedule<Schedule> ||
                      (training_schedule<Schedule> && requires(Schedule& s, Model& m) { s.apply(m, std::uint64_t{}); }),
                  "frugal::fit: the schedule needs observe, save, load, describe and either at(step) -> bit_widths "
                  "or apply(model, step)");
    fit_result result;
    const auto start = std::chrono::steady_clock::now();
    const std::filesystem::path ckpt = o.out_dir.empty() ? std::filesystem::path{} : o.out_dir / "checkpoint.bin";
    if (!o.out_dir.empty()) {
        std::error_code ec;
        std::filesystem::create_directories(o.out_dir, ec);
        if (ec || !std::filesystem::is_directory(o.out_dir)) {
            throw io_error(detail::concat(o.out_dir.string(), ": cannot create the output folder: ", ec.message()));
        }
        // fail now, not after the first epoch, if the folder is not writable
        write_checkpoint(o.out_dir / ".write-test", {});
        std::filesystem::remove(o.out_dir / ".write-test");
    }

    std::uint64_t step = 0;
    std::vector<epoch_record> history;
    if (o.resume && !ckpt.empty() && std::filesystem::exists(ckpt)) {
        const auto payload = read_checkpoint(ckpt);
        archive_reader a(payload, ckpt.string());
        a.expect("frugal-fit/1");
        const std::size_t at = a.offset();
        const std::uint64_t seed = a.u64();
        if (seed != o.seed) {
            a.fail(at, detail::concat("the checkpoint was made with seed ", seed, ", this run asks for seed ", o.seed,
                                      " (use a new output folder or the same seed)"));
        }
        step = a.u64();
        history = detail::load_history(a);
        model.load(a);
        opt.load(a);
        if constexpr (Schedule::active) {
            if (schedule != nullptr) {
                schedule->load(a);
            }
        }
        result.resumed = true;
        result.resumed_from = history.size();
    }

    const std::uint64_t per_epoch = train.batches_per_epoch();
    const std::uint64_t first_epoch = history.size() + 1;
    std::uint64_t ran = 0;
    softmax_cross_entropy loss;
    batch b;
    context ctx;
    ctx.meter = o.meter ? &result.meter : nullptr;
    progress_bar bar(o.progress);
    [[maybe_unused]] bit_widths widths{};
    [[maybe_unused]] bool widths_set = false;

    for (std::uint64_t epoch = first_epoch; epoch <= o.epochs; ++epoch) {
        if (o.stop_after != 0 && ran == o.stop_after) {
            break;
        }
        epoch_record rec;
        rec.epoch = epoch;
        rec.nominal = per_epoch;
        const op_counts ops_before = result.meter.all_ops();
        const std::uint64_t bytes_before = result.meter.all_bytes();
        bar.start(detail::concat(o.label, ' ', epoch, '/', o.epochs), per_epoch);
        const auto t0 = std::chrono::steady_clock::now();
        double loss_sum = 0.0;
        std::size_t correct = 0, seen = 0;
        for (std::uint64_t i = 0; i < per_epoch; ++i, ++step) {
            const float lr = o.schedule(step);
            rec.lr = lr;
            if (!sampler.take(epoch, i)) {
                if constexpr (requires { { sampler.step_when_dropped() } -> std::convertible_to<bool>; }) {
                    if (sampler.step_when_dropped()) { // SMD as its authors ran it: a step with zero gradients
                        for (const auto& p : opt.parameters()) {
                            std::fill(p.grad.begin(), p.grad.end(), 0.0f);
                        }
                        ctx.step = step;
                        opt.step(ctx, lr);
                    }
                }
                bar.update(i + 1, seen ? static_cast<float>(loss_sum / static_cast<double>(rec.executed)) : 0.0f,
                           seen ? static_cast<float>(correct) / static_cast<float>(seen) : 0.0f);
                continue;
            }
            if constexpr (Schedule::active) {
                if (schedule != nullptr) {
                    if constexpr (requires { schedule->apply(model, step); }) {
                        schedule->apply(model, step);
                    } else {
                        const bit_widths now = schedule->at(step);
                        if (!widths_set || now != widths) {
                            set_model_precision(model, now);
                            widths = now;
                            widths_set = true;
                        }
                    }
                }
            }
            train.fill(epoch - 1, i, b);
            ctx.mode = run_mode::train;
            ctx.step = step;
            ctx.random = rng(o.seed, 0x5743000000000000ULL + step);
            const float l = loss.forward(model.forward(ctx, b.x), b.y);
            if (!std::isfinite(l)) {
                throw divergence_error(detail::concat(
                    "frugal::fit: the loss became ", l, " at epoch ", epoch, ", batch ", i + 1, " (step ", step,
                    ", learning rate ", lr, "); training stopped",
                    ckpt.empty() ? std::string() : "; the last good checkpoint is " + ckpt.string() +
                                                     " (epoch " + std::to_string(history.size()) + ")",
                    ". Lower the learning rate or check the data."));
            }
            model.backward(ctx, loss.backward());
            opt.step(ctx, lr);
            if constexpr (Schedule::active) {
                if (schedule != nullptr) {
                    schedule->observe(step, l);
                }
            }
            loss_sum += l;
            correct += loss.correct();
            seen += b.size();
            ++rec.executed;
            bar.update(i + 1, static_cast<float>(loss_sum / static_cast<double>(rec.executed)),
                       static_cast<float>(correct) / static_cast<float>(seen));
        }
        rec.step = step;
        rec.train_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t0).count();
        rec.train_loss = rec.executed ? loss_sum / static_cast<double>(rec.executed) : 0.0;
        rec.train_accuracy = seen ? static_cast<double>(correct) / static_cast<double>(seen) : 0.0;
        rec.ops = difference(result.meter.all_ops(), ops_before);
        rec.bytes = result.meter.all_bytes() - bytes_before;
        for (const auto& [k, v] : rec.ops) {
            rec.macs += k.kind == op_kind::mac ? static_cast<double>(v) : 0.0;
        }
        if (!detail::parameters_finite(model)) {
            throw divergence_error(detail::concat("frugal::fit: a parameter became NaN or infinite in epoch ", epoch,
                                                  "; training stopped",
                                                  ckpt.empty() ? std::string()
                                                               : "; the last good checkpoint is " + ckpt.string()));
        }
        if (test != nullptr) {
            const auto t1 = std::chrono::steady_clock::now();
            const auto [tl, ta] = evaluate(model, *test);
            rec.test_loss = tl;
            rec.test_accuracy = ta;
            rec.eval_seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
        }
        history.push_back(rec);
        char summary[256];
        std::snprintf(summary, sizeof summary,
                      "loss %.4f  train acc %.2f%%  test loss %.4f  test acc %.2f%%  (%.1f s, %llu/%llu batches)",
                      rec.train_loss, 100.0 * rec.train_accuracy, rec.test_loss, 100.0 * rec.test_accuracy,
                      rec.train_seconds, static_cast<unsigned long long>(rec.executed),
                      static_cast<unsigned long long>(rec.nominal));
        bar.finish(summary);
        if (!o.out_dir.empty()) {
            archive_writer a;
            a.tag("frugal-fit/1");
            a.u64(o.seed);
            a.u64(step);
            detail::save_history(a, history);
            model.save(a);
            opt.save(a);
            if constexpr (Schedule::active) {
                if (schedule != nullptr) {
                    schedule->save(a);
                }
            }
            write_checkpoint(ckpt, a.bytes());
            detail::write_metrics_csv(o.out_dir / "metrics.csv", history);
        }
        if (o.on_epoch) {
            o.on_epoch(rec);
        }
        ++ran;
    }
    result.seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    result.history = std::move(history);
    return result;
}

} // namespace frugal

#endif
