#ifndef FRUGAL_NUMERIC_RANDOM_HPP
#define FRUGAL_NUMERIC_RANDOM_HPP

/// @file
/// frugal::rng: the library's random source. A xoshiro256** generator
/// (Blackman and Vigna, 2018): fast, 64 bits per call, a 256-bit state that
/// can be saved in a checkpoint and restored bit for bit, and independent
/// streams derived from one seed. It models std::uniform_random_bit_generator,
/// so it works with the standard distributions and with frugal's stochastic
/// rounding.

#include <array>
#include <bit>
#include <cstdint>
#include <limits>

namespace frugal {

class rng {
public:
    using result_type = std::uint64_t;
    using state_type = std::array<std::uint64_t, 4>;

    /// Seeds the state from `seed` with splitmix64; `stream` selects an
    /// independent sequence for the same seed (a data loader, a sampler, a
    /// gate each take their own).
    explicit constexpr rng(std::uint64_t seed = 0x5eed, std::uint64_t stream = 0) noexcept {
        std::uint64_t x = seed ^ (0x9e3779b97f4a7c15ULL * (stream + 1));
        for (auto& s : s_) {
            s = splitmix64(x);
        }
    }

    static constexpr result_type min() noexcept { return 0; }
    static constexpr result_type max() noexcept { return std::numeric_limits<result_type>::max(); }

    constexpr result_type operator()() noexcept {
        const std::uint64_t result = std::rotl(s_[1] * 5, 7) * 9;
        const std::uint64_t t = s_[1] << 17;
        s_[2] ^= s_[0];
        s_[3] ^= s_[1];
        s_[1] ^= s_[2];
        s_[0] ^= s_[3];
        s_[2] ^= t;
        s_[3] = std::rotl(s_[3], 45);
        return result;
    }

    /// Uniform float in [0, 1) with 24 random bits.
    constexpr float uniform() noexcept { return static_cast<float>((*this)() >> 40) * 0x1.0p-24f; }
    /// Uniform double in [0, 1) with 53 random bits.
    constexpr double uniform_double() noexcept { return static_cast<double>((*this)() >> 11) * 0x1.0p-53; }
    /// Uniform integer in [0, n), n >= 1 (Lemire's multiply-shift; bias < n / 2^64).
    constexpr std::uint64_t below(std::uint64_t n) noexcept {
        __extension__ using u128 = unsigned __int128;
        return static_cast<std::uint64_t>((static_cast<u128>((*this)()) * n) >> 64);
    }

    [[nodiscard]] constexpr const state_type& state() const noexcept { return s_; }
    constexpr void set_state(const state_type& s) noexcept { s_ = s; }

    friend constexpr bool operator==(const rng&, const rng&) = default;

private:
    static constexpr std::uint64_t splitmix64(std::uint64_t& x) noexcept {
        std::uint64_t z = (x += 0x9e3779b97f4a7c15ULL);
        z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
        z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
        return z ^ (z >> 31);
    }

    state_type s_{};
};

} // namespace frugal

#endif
