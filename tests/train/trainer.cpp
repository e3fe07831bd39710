// The trainer: a run that is interrupted (stopped, or killed by a signal)
// and resumed ends with the same weights bit for bit as one that never
// stopped; divergence stops the run and keeps the last good checkpoint;
// unwritable folders and corrupt checkpoints give clear errors; and a short
// real training run learns.

#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <string>
#include <thread>

#include <spawn.h>
#include <sys/wait.h>
#include <unistd.h>

#include "train/tiny_run.hpp"
#include "temp_dir.hpp"

namespace fs = std::filesystem;
namespace fr = frugal;

extern char** environ;

using test::temp_dir;

TEST_SUITE("train/trainer") {

TEST_CASE("a stopped and resumed run equals an uninterrupted one bit for bit") {
    temp_dir a, b;
    const auto whole = tiny::run(a.path(), 3);
    const auto first = tiny::run(b.path(), 3, 1); // "interrupted" after one epoch
    REQUIRE(first.fit.history.size() == 1);
    const auto rest = tiny::run(b.path(), 3);     // resumes from b/checkpoint.bin
    CHECK(rest.fit.resumed);
    CHECK(rest.fit.resumed_from == 1);
    REQUIRE(rest.fit.history.size() == 3);
    REQUIRE(whole.weights.size() == rest.weights.size());
    CHECK(std::memcmp(whole.weights.data(), rest.weights.data(), whole.weights.size() * sizeof(float)) == 0);
    for (std::size_t e = 0; e < 3; ++e) {
        CHECK(whole.fit.history[e].train_loss == rest.fit.history[e].train_loss);
    }
    // the metrics CSV has a header and one line per epoch
    std::ifstream csv(b.path() / "metrics.csv");
    std::string line;
    int lines = 0;
    while (std::getline(csv, line)) {
        ++lines;
    }
    CHECK(lines == 4);
}

TEST_CASE("a run killed by SIGKILL resumes to the same weights") {
    temp_dir a, b;
    const auto whole = tiny::run(a.path(), 3, 0, 4096);
    std::string child = FRUGAL_TEST_KILL_CHILD;
    std::string out = b.path().string();
    std::string epochs = "3";
    std::string images = "4096"; // the same run as `whole`
    char* args[] = {child.data(), out.data(), epochs.data(), images.data(), nullptr};
    pid_t pid = 0;
    REQUIRE(posix_spawn(&pid, child.c_str(), nullptr, nullptr, args, environ) == 0);
    // wait for the first checkpoint, then kill the child in the middle of a later epoch
    const auto start = std::chrono::steady_clock::now();
    while (!fs::exists(b.path() / "checkpoint.bin") &&
           std::chrono::steady_clock::now() - start < std::chrono::seconds(120)) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    REQUIRE(fs::exists(b.path() / "checkpoint.bin"));
    std::this_thread::sleep_for(std::chrono::milliseconds(150));
    ::kill(pid, SIGKILL);
    int status = 0;
    ::waitpid(pid, &status, 0);
    const bool killed = WIFSIGNALED(status);
    INFO("the child " << (killed ? "was killed" : "finished before the kill"));
    const auto resumed = tiny::run(b.path(), 3, 0, 4096);
    CHECK(resumed.fit.resumed);
    REQUIRE(whole.weights.size() == resumed.weights.size());
    CHECK(std::memcmp(whole.weights.data(), resumed.weights.data(), whole.weights.size() * sizeof(float)) == 0);
}

TEST_CASE("a diverging run stops with a clear error and keeps the last good checkpoint") {
    temp_dir d;
    (void)tiny::run(d.path(), 3, 1); // one good epoch
    const auto good = fr::read_checkpoint(d.path() / "checkpoint.bin");
    try {
        (void)tiny::run(d.path(), 3, 0, 1024, 1e6f); // resumes, then explodes
        FAIL("no divergence error");
    } catch (const fr::divergence_error& e) {
        const std::string m = e.what();
        CHECK(m.find("epoch 2") != std::string::npos);
        CHECK(m.find("checkpoint.bin") != std::string::npos);
    }
    CHECK(fr::read_checkpoint(d.path() / "checkpoint.bin") == good);
}

TEST_CASE("unwritable output folders and corrupt checkpoints give clear errors") {
    temp_dir d;
    fs::create_directories(d.path());
    {
        std::ofstream f(d.path() / "a-file");
        f << "x";
    }
    CHECK_THROWS_AS((void)tiny::run(d.path() / "a-file" / "sub", 1), fr::io_error);
    if (::geteuid() != 0) { // root ignores permissions
        fs::create_directories(d.path() / "ro");
        fs::permissions(d.path() / "ro", fs::perms::owner_read | fs::perms::owner_exec);
        CHECK_THROWS_AS((void)tiny::run(d.path() / "ro", 1), fr::io_error);
    }
    // a corrupt checkpoint: one flipped byte
    temp_dir c;
    (void)tiny::run(c.path(), 2, 1);
    const fs::path ck = c.path() / "checkpoint.bin";
    {
        std::fstream f(ck, std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(100);
        char byte = 0;
        f.read(&byte, 1);
        f.seekp(100);
        byte = static_cast<char>(byte ^ 0x5a);
        f.write(&byte, 1);
    }
    try {
        (void)tiny::run(c.path(), 2);
        FAIL("no error");
    } catch (const fr::io_error& e) {
        CHECK(std::string(e.what()).find("checksum") != std::string::npos);
        CHECK(std::string(e.what()).find("checkpoint.bin") != std::string::npos);
    }
    // a truncated one
    fs::resize_file(ck, fs::file_size(ck) / 2);
    CHECK_THROWS_AS((void)tiny::run(c.path(), 2), fr::io_error);
    // not a checkpoint at all
    {
        std::ofstream f(ck, std::ios::trunc);
        f << "hello";
    }
    CHECK_THROWS_AS((void)fr::read_checkpoint(ck), fr::io_error);
}

TEST_CASE("a short real training run learns Fashion-MNIST") {
    // LeNet-5 on 6000 training images for 3 epochs: a broken backward pass
    // cannot reach 80% on 2000 test images
    const auto train = fr::subset(fr::load_fashion_mnist(fr::data_split::train), 6000, 1);
    const auto test = fr::subset(fr::load_fashion_mnist(fr::data_split::test), 2000, 1);
    const auto norm = fr::normalization::from_dataset(train);
    fr::batch_options bo;
    bo.batch_size = 32;
    fr::batch_loader tl(train, norm, bo);
    fr::batch_loader vl(test, norm, fr::batch_options::evaluation(500));
    auto net = fr::lenet5();
    fr::optimizer<> opt(fr::parameters_of(net), fr::sgd{0.9f, 5e-4f, true});
    fr::fit_options o;
    o.epochs = 3;
    o.progress = false;
    o.schedule = fr::lr_schedule::cosine({0.03f, 3 * tl.batches_per_epoch(), 0.0f});
    const auto start = std::chrono::steady_clock::now();
    const auto r = fr::fit(net, opt, tl, &vl, o);
    const double seconds = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
    INFO("test accuracy " << r.history.back().test_accuracy << " in " << seconds << " s");
    CHECK(r.history.back().test_accuracy > 0.80);
    CHECK(r.history.back().train_loss < r.history.front().train_loss);
    CHECK(r.history.back().macs > 0.0);
}

} // TEST_SUITE
