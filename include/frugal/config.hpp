#ifndef FRUGAL_CONFIG_HPP
#define FRUGAL_CONFIG_HPP

/// @file
/// Feature switches. These are the only macros frugal defines; the build sets
/// them (CMake target frugal::frugal) and a user may set them by hand.

/// 1 when a CBLAS (OpenBLAS) is linked: float GEMM goes through cblas_sgemm.
#ifndef FRUGAL_HAS_BLAS
#define FRUGAL_HAS_BLAS 0
#endif

/// 1 when frugal may use OpenMP for its own parallel loops.
#if defined(_OPENMP)
#define FRUGAL_HAS_OPENMP 1
#else
#define FRUGAL_HAS_OPENMP 0
#endif

#endif
