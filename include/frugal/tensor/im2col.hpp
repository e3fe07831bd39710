#ifndef FRUGAL_TENSOR_IM2COL_HPP
#define FRUGAL_TENSOR_IM2COL_HPP

/// @file
/// im2col and col2im: the rearrangement that turns a convolution into a
/// matrix product. For one image of C x H x W, a k x k kernel, stride s and
/// zero padding p, the column matrix has C*k*k rows and Ho*Wo columns (row
/// (c, ky, kx), column (oy, ox) holds x[c, oy*s - p + ky, ox*s - p + kx], or
/// 0 outside the image). `ld` is the column matrix's row stride (>= Ho*Wo),
/// so several images can sit side by side in one matrix.

#include <algorithm>
#include <cstddef>
#include <cstring>

namespace frugal {

/// Geometry of a 2-d convolution or pooling window on one image.
struct conv_geometry {
    std::size_t c = 0, h = 0, w = 0;   ///< input channels, height, width
    std::size_t k = 1;                 ///< square kernel size
    std::size_t stride = 1;
    std::size_t pad = 0;
    [[nodiscard]] constexpr std::size_t out_h() const noexcept { return (h + 2 * pad - k) / stride + 1; }
    [[nodiscard]] constexpr std::size_t out_w() const noexcept { return (w + 2 * pad - k) / stride + 1; }
    [[nodiscard]] constexpr std::size_t rows() const noexcept { return c * k * k; }
    [[nodiscard]] constexpr std::size_t cols() const noexcept { return out_h() * out_w(); }
    [[nodiscard]] constexpr bool valid() const noexcept {
        return k >= 1 && stride >= 1 && h + 2 * pad >= k && w + 2 * pad >= k && c >= 1;
    }
};

namespace detail {
/// dst[i] = src[i * step] for i < n. Inside im2col_padded a byte store may alias anything (T =
/// uint8_t), and the compiler reloaded the step from the stack on every element; the common
/// stride 2 gets a loop with the step as a constant.
template <class T>
inline void strided_copy(const T* __restrict src, std::size_t step, T* __restrict dst, std::size_t n) noexcept {
    if (step == 2) {
        for (std::size_t i = 0; i < n; ++i) {
            dst[i] = src[2 * i];
        }
        return;
    }
    for (std::size_t i = 0; i < n; ++i) {
        dst[i] = src[i * step];
    }
}
} // namespace detail

/// Fills col (rows() x ld) from one image x (c x h x w) of any element type;
/// positions in the padding get `fill` (0 for float images; the code of 0.0
/// for quantized ones).
template <class T>
inline void im2col_padded(const T* x, const conv_geometry& g, T* col, std::size_t ld, T fill) noexcept {
    const std::size_t ho = g.out_h(), wo = g.out_w();
    const auto ih = static_cast<std::ptrdiff_t>(g.h), iw = static_cast<std::ptrdiff_t>(g.w);
    const auto pad = static_cast<std::ptrdiff_t>(g.pad);
    const auto s = static_cast<std::ptrdiff_t>(g.stride);
    for (std::size_t c = 0; c < g.c; ++c) {
        const T* xc = x + c * g.h * g.w;
        for (std::size_t ky = 0; ky < g.k; ++ky) {
            for (std::size_t kx = 0; kx < g.k; ++kx) {
                T* dst = col + ((c * g.k + ky) * g.k + kx) * ld;
                // output columns whose input column is inside the image
                const std::ptrdiff_t off = static_cast<std::ptrdiff_t>(kx) - pad;
                const std::ptrdiff_t lo = off >= 0 ? 0 : (-off + s - 1) / s;
                std::ptrdiff_t hi = (iw - 1 - off) / s + 1; // first ox with ix >= iw
                if (iw - 1 - off < 0) {
                    hi = 0;
                }
                const std::ptrdiff_t first = std::min<std::ptrdiff_t>(lo, static_cast<std::ptrdiff_t>(wo));
                const std::ptrdiff_t last = std::clamp<std::ptrdiff_t>(hi, first, static_cast<std::ptrdiff_t>(wo));
                for (std::size_t oy = 0; oy < ho; ++oy) {
                    T* d = dst + oy * wo;
                    const std::ptrdiff_t iy = static_cast<std::ptrdiff_t>(oy) * s - pad + static_cast<std::ptrdiff_t>(ky);
                    if (iy < 0 || iy >= ih) {
                        std::fill(d, d + wo, fill);
                        continue;
                    }
                    const T* srow = xc + iy * iw;
                    for (std::ptrdiff_t ox = 0; ox < first; ++ox) {
                        d[ox] = fill;
                    }
                    if (s == 1) {
                        std::memcpy(d + first, srow + first + off, static_cast<std::size_t>(last - first) * sizeof(T));
                    } else if (last > first) {
                        detail::strided_copy(srow + first * s + off, static_cast<std::size_t>(s), d + first,
                                             static_cast<std::size_t>(last - first));
                    }
                    for (std::ptrdiff_t ox = last; ox < static_cast<std::ptrdiff_t>(wo); ++ox) {
                        d[ox] = fill;
                    }
                }
            }
        }
    }
}

/// Fills col (rows() x ld) from one image x (c x h x w).
inline void im2col(const float* x, const conv_geometry& g, float* col, std::size_t ld) noexcept {
    im2col_padded(x, g, col, ld, 0.0f);
}

/// Adds col (rows() x ld) back into one image dx (c x h x w): the adjoint of
/// im2col. dx is accumulated into, not overwritten.
inline void col2im(const float* col, const conv_geometry& g, std::size_t ld, float* dx) noexcept {
    const std::size_t ho = g.out_h(), wo = g.out_w();
    const auto ih = static_cast<std::ptrdiff_t>(g.h), iw = static_cast<std::ptrdiff_t>(g.w);
    const auto pad = static_cast<std::ptrdiff_t>(g.pad);
    const auto s = static_cast<std::ptrdiff_t>(g.stride);
    for (std::size_t c = 0; c < g.c; ++c) {
        float* xc = dx + c * g.h * g.w;
        for (std::size_t ky = 0; ky < g.k; ++ky) {
            for (std::size_t kx = 0; kx < g.k; ++kx) {
                const float* src = col + ((c * g.k + ky) * g.k + kx) * ld;
                const std::ptrdiff_t off = static_cast<std::ptrdiff_t>(kx) - pad;
                const std::ptrdiff_t lo = off >= 0 ? 0 : (-off + s - 1) / s;
                std::ptrdiff_t hi = (iw - 1 - off) / s + 1;
                if (iw - 1 - off < 0) {
                    hi = 0;
                }
                const std::ptrdiff_t first = std::min<std::ptrdiff_t>(lo, static_cast<std::ptrdiff_t>(wo));
                const std::ptrdiff_t last = std::clamp<std::ptrdiff_t>(hi, first, static_cast<std::ptrdiff_t>(wo));
                for (std::size_t oy = 0; oy < ho; ++oy) {
                    const std::ptrdiff_t iy = static_cast<std::ptrdiff_t>(oy) * s - pad + static_cast<std::ptrdiff_t>(ky);
                    if (iy < 0 || iy >= ih) {
                        continue;
                    }
                    float* drow = xc + iy * iw;
                    const float* srow = src + oy * wo;
                    for (std::ptrdiff_t ox = first; ox < last; ++ox) {
                        drow[ox * s + off] += srow[ox];
                    }
                }
            }
        }
    }
}

/// Plain references used by the tests: element by element from the definition.
inline void im2col_reference(const float* x, const conv_geometry& g, float* col, std::size_t ld) noexcept {
    for (std::size_t c = 0; c < g.c; ++c) {
        for (std::size_t ky = 0; ky < g.k; ++ky) {
            for (std::size_t kx = 0; kx < g.k; ++kx) {
                for (std::size_t oy = 0; oy < g.out_h(); ++oy) {
                    for (std::size_t ox = 0; ox < g.out_w(); ++ox) {
                        const long iy = static_cast<long>(oy * g.stride + ky) - static_cast<long>(g.pad);
                        const long ix = static_cast<long>(ox * g.stride + kx) - static_cast<long>(g.pad);
                        const bool in = iy >= 0 && ix >= 0 && iy < static_cast<long>(g.h) && ix < static_cast<long>(g.w);
                        col[((c * g.k + ky) * g.k + kx) * ld + oy * g.out_w() + ox] =
                            in ? x[(c * g.h + static_cast<std::size_t>(iy)) * g.w + static_cast<std::size_t>(ix)] : 0.0f;
                    }
                }
            }
        }
    }
}

} // namespace frugal

#endif
