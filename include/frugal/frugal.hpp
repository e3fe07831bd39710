#ifndef FRUGAL_FRUGAL_HPP
#define FRUGAL_FRUGAL_HPP

/// @file
/// Umbrella header: everything frugal offers.

#include "frugal/config.hpp"
#include "frugal/error.hpp"
#include "frugal/data/batch.hpp"
#include "frugal/data/cifar.hpp"
#include "frugal/data/dataset.hpp"
#include "frugal/data/fashion_mnist.hpp"
#include "frugal/data/idx.hpp"
#include "frugal/data/transform.hpp"
#include "frugal/numeric/block_float.hpp"
#include "frugal/numeric/fixed.hpp"
#include "frugal/numeric/integer.hpp"
#include "frugal/numeric/msb.hpp"
#include "frugal/numeric/overflow.hpp"
#include "frugal/numeric/precision.hpp"
#include "frugal/numeric/quantizer.hpp"
#include "frugal/numeric/random.hpp"
#include "frugal/numeric/rounding.hpp"
#include "frugal/numeric/simd.hpp"
#include "frugal/tensor/tensor.hpp"

#endif
