#ifndef FRUGAL_ERROR_HPP
#define FRUGAL_ERROR_HPP

/// @file
/// frugal::error: the one exception family of the library. Every message says
/// what went wrong and where (file and offset, expected and found shape, value
/// and format), so that a user can act on it without a debugger.

#include <sstream>
#include <stdexcept>
#include <string>
#include <utility>

namespace frugal {

/// Base of every exception frugal throws.
class error : public std::runtime_error {
public:
    explicit error(const std::string& what) : std::runtime_error(what) {}
};

/// A fixed-point value did not fit its format under the trap overflow policy,
/// or a conversion had no defined result (NaN, division by zero).
class numeric_error : public error {
public:
    using error::error;
};

/// A tensor or layer received a shape it cannot work with.
class shape_error : public error {
public:
    using error::error;
};

/// A file could not be read or written, or its content is corrupt.
class io_error : public error {
public:
    using error::error;
};

/// Training produced a non-finite value (NaN or infinity).
class divergence_error : public error {
public:
    using error::error;
};

namespace detail {
/// Builds a message from any streamable parts: concat("layer ", 3, ": bad").
template <class... Parts>
[[nodiscard]] std::string concat(Parts&&... parts) {
    std::ostringstream s;
    (s << ... << std::forward<Parts>(parts));
    return s.str();
}
} // namespace detail

} // namespace frugal

#endif
