#ifndef FRUGAL_BENCH_BENCH_HPP
#define FRUGAL_BENCH_BENCH_HPP

// Timing helpers for frugal's benchmarks: run a function several times,
// report the median, and print one machine-readable line per measurement.

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <string>
#include <vector>

namespace bench {

/// Median of `runs` timings (seconds) of f(), after one warm-up call.
template <class F>
double median_seconds(F&& f, int runs = 7) {
    f();
    std::vector<double> t;
    for (int i = 0; i < runs; ++i) {
        const auto a = std::chrono::steady_clock::now();
        f();
        const auto b = std::chrono::steady_clock::now();
        t.push_back(std::chrono::duration<double>(b - a).count());
    }
    std::sort(t.begin(), t.end());
    return t[t.size() / 2];
}

/// Keeps the optimizer from discarding a result.
template <class T>
void keep(const T& v) {
    asm volatile("" : : "g"(&v) : "memory");
}


} // namespace bench

#endif
