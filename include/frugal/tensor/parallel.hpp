#ifndef FRUGAL_TENSOR_PARALLEL_HPP
#define FRUGAL_TENSOR_PARALLEL_HPP

/// @file
/// Threads. frugal parallelizes its layers itself (over the samples of a
/// batch, the channels of a normalization, the rows of a product) with
/// OpenMP when the build has it, and keeps any BLAS single-threaded so that
/// the two never compete for the cores.

#include <algorithm>
#include <cstddef>
#include <cstdlib>

#include "frugal/config.hpp"

#if FRUGAL_HAS_OPENMP
#include <omp.h>
#endif
#if FRUGAL_HAS_BLAS
extern "C" void openblas_set_num_threads(int);
#endif

namespace frugal {

namespace detail {
inline int& thread_setting() {
    static int n = 0; // 0: not yet chosen
    return n;
}
} // namespace detail

/// Sets the number of threads frugal's kernels use (>= 1); also makes the
/// BLAS single-threaded. Default: the OMP_NUM_THREADS environment variable,
/// else every core.
inline void set_num_threads(int n) {
    detail::thread_setting() = n < 1 ? 1 : n;
#if FRUGAL_HAS_OPENMP
    omp_set_num_threads(detail::thread_setting());
#endif
#if FRUGAL_HAS_BLAS
    openblas_set_num_threads(1);
#endif
}

/// Number of threads frugal's kernels use.
[[nodiscard]] inline int num_threads() {
    if (detail::thread_setting() == 0) {
#if FRUGAL_HAS_OPENMP
        set_num_threads(omp_get_max_threads());
#else
        set_num_threads(1);
#endif
    }
    return detail::thread_setting();
}

/// Calls f(begin, end, thread) on contiguous chunks of [0, n), one chunk per
/// thread (fewer when n is small). Chunks are the same for the same n and
/// thread count, so results that depend on the split are reproducible.
template <class F>
void parallel_chunks(std::size_t n, F&& f) {
    const int threads = num_threads();
    if (n == 0) {
        return;
    }
    const std::size_t t = std::min<std::size_t>(static_cast<std::size_t>(threads), n);
    if (t <= 1) {
        f(std::size_t{0}, n, 0);
        return;
    }
#if FRUGAL_HAS_OPENMP
#pragma omp parallel for schedule(static, 1) num_threads(static_cast<int>(t))
    for (std::size_t i = 0; i < t; ++i) {
        f(i * n / t, (i + 1) * n / t, static_cast<int>(i));
    }
#else
    for (std::size_t i = 0; i < t; ++i) {
        f(i * n / t, (i + 1) * n / t, static_cast<int>(i));
    }
#endif
}

/// Calls f(i) for i in [0, n), spread over the threads (static schedule).
template <class F>
void parallel_for(std::size_t n, F&& f) {
    parallel_chunks(n, [&](std::size_t b, std::size_t e, int) {
        for (std::size_t i = b; i < e; ++i) {
            f(i);
        }
    });
}

/// Calls f(i, thread) for i in [0, n), handing the items out one at a time to whichever thread
/// is free (a dynamic schedule) instead of in one fixed chunk per thread. For loops over sizeable
/// items (a sample's integer product, a group of samples) whose results do not depend on which
/// thread ran an item: per-item outputs, or per-thread partial sums that are exact (integers).
/// When one core is slowed (a neighbour on a shared machine), it takes fewer items instead of
/// making the others wait at the end of the loop.
template <class F>
void parallel_dynamic(std::size_t n, F&& f) {
    const int threads = num_threads();
    if (n == 0) {
        return;
    }
    const std::size_t t = std::min<std::size_t>(static_cast<std::size_t>(threads), n);
    if (t <= 1) {
        for (std::size_t i = 0; i < n; ++i) {
            f(i, 0);
        }
        return;
    }
#if FRUGAL_HAS_OPENMP
#pragma omp parallel for schedule(dynamic, 1) num_threads(static_cast<int>(t))
    for (std::size_t i = 0; i < n; ++i) {
        f(i, omp_get_thread_num());
    }
#else
    for (std::size_t i = 0; i < n; ++i) {
        f(i, 0);
    }
#endif
}

/// f(begin, end) over the spans of `span` items that cover [0, n) (the last may be shorter),
/// handed out as parallel_dynamic does: for element-wise passes over large arrays.
template <class F>
void parallel_spans(std::size_t n, std::size_t span, F&& f) {
    span = std::max<std::size_t>(span, 1);
    parallel_dynamic((n + span - 1) / span,
                     [&](std::size_t i, int) { f(i * span, std::min(n, (i + 1) * span)); });
}

} // namespace frugal

#endif
