#ifndef FRUGAL_TRAIN_PROGRESS_HPP
#define FRUGAL_TRAIN_PROGRESS_HPP

/// @file
/// Progress display: on a terminal, one line redrawn in place (batches/s,
/// loss, accuracy, ETA); otherwise (a log file, CI) plain lines, a few per
/// epoch, so logs stay readable.

#include <chrono>
#include <cstdio>
#include <string>

#include <unistd.h>

namespace frugal {

class progress_bar {
public:
    /// @param enabled  false prints nothing; @param out  stdout or stderr
    explicit progress_bar(bool enabled = true, std::FILE* out = stdout)
        : enabled_(enabled), out_(out), tty_(::isatty(::fileno(out)) != 0) {}

    void start(const std::string& label, std::size_t total) {
        label_ = label;
        total_ = total;
        start_ = last_ = std::chrono::steady_clock::now();
        next_plain_ = total / 4;
    }

    /// After batch `done` (1-based) of `total`.
    void update(std::size_t done, float loss, float accuracy) {
        if (!enabled_) {
            return;
        }
        const auto now = std::chrono::steady_clock::now();
        const double elapsed = std::chrono::duration<double>(now - start_).count();
        const double rate = elapsed > 0 ? static_cast<double>(done) / elapsed : 0.0;
        const double eta = rate > 0 ? static_cast<double>(total_ - done) / rate : 0.0;
        if (tty_) {
            if (done != total_ && std::chrono::duration<double>(now - last_).count() < 0.1) {
                return;
            }
            last_ = now;
            const int width = 24;
            const int filled = total_ == 0 ? width : static_cast<int>(width * done / total_);
            std::string bar(static_cast<std::size_t>(filled), '#');
            bar.resize(static_cast<std::size_t>(width), '.');
            std::fprintf(out_, "\r%s [%s] %zu/%zu  %.1f batch/s  loss %.4f  acc %.2f%%  ETA %s   ", label_.c_str(),
                         bar.c_str(), done, total_, rate, static_cast<double>(loss), 100.0 * accuracy,
                         clock(eta).c_str());
            std::fflush(out_);
        } else if (done >= next_plain_ && done != total_ && next_plain_ > 0) {
            next_plain_ += total_ / 4;
            std::fprintf(out_, "%s %zu/%zu  %.1f batch/s  loss %.4f  acc %.2f%%  ETA %s\n", label_.c_str(), done,
                         total_, rate, static_cast<double>(loss), 100.0 * accuracy, clock(eta).c_str());
            std::fflush(out_);
        }
    }

    /// Ends the line with a summary.
    void finish(const std::string& summary) {
        if (!enabled_) {
            return;
        }
        if (tty_) {
            std::fprintf(out_, "\r\033[K");
        }
        std::fprintf(out_, "%s %s\n", label_.c_str(), summary.c_str());
        std::fflush(out_);
    }

    [[nodiscard]] static std::string clock(double seconds) {
        const auto s = static_cast<long>(seconds + 0.5);
        char b[32];
        if (s >= 3600) {
            std::snprintf(b, sizeof b, "%ld:%02ld:%02ld", s / 3600, (s / 60) % 60, s % 60);
        } else {
            std::snprintf(b, sizeof b, "%ld:%02ld", s / 60, s % 60);
        }
        return b;
    }

private:
    bool enabled_;
    std::FILE* out_;
    bool tty_;
    std::string label_;
    std::size_t total_ = 0, next_plain_ = 0;
    std::chrono::steady_clock::time_point start_, last_;
};

} // namespace frugal

#endif
