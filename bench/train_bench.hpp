#ifndef FRUGAL_BENCH_TRAIN_BENCH_HPP
#define FRUGAL_BENCH_TRAIN_BENCH_HPP

// Helpers of the training-step benchmarks: Fashion-MNIST batches in a fixed
// order, and "subjects" (a network with its own optimizer, loss and random
// source) that run a number of training steps and return their seconds, so
// that a benchmark can interleave several networks in one process, or run
// each measurement in a process of its own (isolated()).

#include <algorithm>
#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <string>
#include <utility>
#include <cerrno>
#include <cstdio>
#include <stdexcept>
#include <vector>

#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include <frugal/cost/meter.hpp>
#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/layers/loss.hpp>
#include <frugal/optim/sgd.hpp>

namespace bench {

/// The Fashion-MNIST training set and its batches of 128, unshuffled.
struct fashion_batches {
    frugal::image_dataset data = frugal::load_fashion_mnist(frugal::data_split::train);
    frugal::batch_loader loader{data, frugal::normalization::from_dataset(data), options()};

    fashion_batches() = default;
    fashion_batches(const fashion_batches&) = delete;
    fashion_batches& operator=(const fashion_batches&) = delete;

    static frugal::batch_options options() {
        frugal::batch_options bo;
        bo.batch_size = 128;
        bo.shuffle = false;
        return bo;
    }
};

/// A network under test: run(steps, meter) trains `steps` steps (SGD with
/// momentum, lr 0.01) with the meter on when given, and returns the seconds.
struct train_subject {
    std::string name;
    std::function<double(int, frugal::cost_meter*)> run;
};

template <class Net>
train_subject make_train_subject(std::string name, Net& net, frugal::batch_loader& loader, std::uint64_t seed = 7) {
    struct state {
        frugal::optimizer<> opt;
        frugal::softmax_cross_entropy loss;
        frugal::context ctx;
        frugal::batch b;
        std::size_t next = 0;
        explicit state(std::vector<frugal::parameter> ps) : opt(std::move(ps), frugal::sgd{0.9f, 1e-4f, false}) {}
    };
    auto st = std::make_shared<state>(frugal::parameters_of(net));
    st->ctx.random = frugal::rng(seed);
    return {std::move(name), [st, &net, &loader](int steps, frugal::cost_meter* meter) {
                st->ctx.meter = meter;
                const auto t = std::chrono::steady_clock::now();
                for (int i = 0; i < steps; ++i) {
                    loader.fill(0, st->next++ % loader.batches_per_epoch(), st->b);
                    st->loss.forward(net.forward(st->ctx, st->b.x), st->b.y);
                    net.backward(st->ctx, st->loss.backward());
                    st->opt.step(st->ctx, 0.01f);
                }
                st->ctx.meter = nullptr;
                return std::chrono::duration<double>(std::chrono::steady_clock::now() - t).count();
            }};
}

/// Seconds per step of each subject: `runs` rounds of `steps` steps, the
/// subjects' order rotated every round; t[i] holds subject i's rounds.
inline std::vector<std::vector<double>> interleaved(std::vector<train_subject>& subjects, int steps, int runs,
                                                    frugal::cost_meter* meter) {
    std::vector<std::vector<double>> t(subjects.size());
    for (int r = 0; r < runs; ++r) {
        for (std::size_t i = 0; i < subjects.size(); ++i) {
            const std::size_t j = (i + static_cast<std::size_t>(r)) % subjects.size();
            t[j].push_back(subjects[j].run(steps, meter) / steps);
        }
    }
    return t;
}

/// What one isolated measurement returns: seconds per step and MACs per step.
struct isolated_result {
    double seconds_per_step = 0.0;
    double macs_per_step = 0.0;
};

/// Like interleaved(), but every (round, subject) measurement runs in a process of its own
/// (fork; the child builds subject i, warms it up and times it: measure(i)), so the subjects
/// share no allocator cache, no L3-resident buffers and no threads: each measures what a
/// program training that one network sees. The caller must not have started OpenMP threads.
/// Every run of a subject repeats the same computation (a fresh network, the same batches and
/// seed), so the spread of its runs is the host's alone.
/// t[i] holds subject i's rounds; macs[i] its MACs per step (from its first measurement).
template <class Measure>
std::vector<std::vector<double>> isolated(std::size_t subjects, int runs, Measure&& measure,
                                          std::vector<double>& macs) {
    std::vector<std::vector<double>> t(subjects);
    macs.assign(subjects, 0.0);
    for (int r = 0; r < runs; ++r) {
        for (std::size_t k = 0; k < subjects; ++k) {
            const std::size_t i = (k + static_cast<std::size_t>(r)) % subjects;
            int fd[2];
            if (::pipe(fd) != 0) {
                throw std::runtime_error("bench: pipe failed");
            }
            std::fflush(nullptr); // or the child would print the parent's buffered output again
            const pid_t pid = ::fork();
            if (pid < 0) {
                ::close(fd[0]);
                ::close(fd[1]);
                throw std::runtime_error("bench: fork failed");
            }
            if (pid == 0) {
                ::close(fd[0]);
                int code = 0;
                try {
                    const isolated_result res = measure(i);
                    if (::write(fd[1], &res, sizeof res) != static_cast<ssize_t>(sizeof res)) {
                        code = 3;
                    }
                } catch (const std::exception& e) {
                    std::fprintf(stderr, "bench: subject %zu failed: %s\n", i, e.what());
                    code = 2;
                } catch (...) {
                    std::fprintf(stderr, "bench: subject %zu failed\n", i);
                    code = 2;
                }
                ::close(fd[1]);
                std::fflush(nullptr);
                ::_exit(code); // never returns into the parent's loop
            }
            ::close(fd[1]);
            isolated_result res;
            std::size_t got = 0;
            while (got < sizeof res) {
                const ssize_t r = ::read(fd[0], reinterpret_cast<char*>(&res) + got, sizeof res - got);
                if (r > 0) {
                    got += static_cast<std::size_t>(r);
                } else if (r == 0 || errno != EINTR) {
                    break;
                }
            }
            ::close(fd[0]);
            int status = 0;
            while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
            }
            if (got != sizeof res || !WIFEXITED(status) || WEXITSTATUS(status) != 0) {
                throw std::runtime_error("bench: the measurement process of subject " + std::to_string(i) +
                                         " failed");
            }
            t[i].push_back(res.seconds_per_step);
            if (macs[i] == 0.0) {
                macs[i] = res.macs_per_step;
            }
        }
    }
    return t;
}

inline double median_of(std::vector<double> v) {
    std::sort(v.begin(), v.end());
    return v.empty() ? 0.0 : v[v.size() / 2];
}

} // namespace bench

#endif
