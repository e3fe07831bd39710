#ifndef FRUGAL_LAYERS_CONV2D_HPP
#define FRUGAL_LAYERS_CONV2D_HPP

/// @file
/// frugal::conv2d: 2-d convolution (square kernel, stride, zero padding,
/// optional bias) by im2col and matrix products, parallel over the samples
/// of the batch.
///
/// Weights are [out, in, k, k] (the usual layout). Small images are grouped
/// so that each product has at least ~256 columns: the first stage of a
/// CIFAR ResNet multiplies 16 x 144 by 144 x 784 per image, the last stage
/// 64 x 576 by 576 x (6 images x 49).

#include <algorithm>
#include <chrono>
#include <cstddef>
#include <cstring>
#include <vector>

#include "frugal/layers/layer.hpp"
#include "frugal/tensor/im2col.hpp"
#include "frugal/tensor/kernels/gemm.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

/// Stride, padding and bias of a convolution.
struct conv_options {
    std::size_t stride = 1;
    std::size_t padding = 0;
    bool bias = true;
};

class conv2d : public layer_base {
public:
    /// @param in, out  channels; @param kernel  square kernel size
    conv2d(std::size_t in, std::size_t out, std::size_t kernel, conv_options o = {})
        : layer_base("conv2d"), in_(in), out_(out), k_(kernel), opt_(o),
          w_(tensor4::from_shape({out, in, kernel, kernel})), dw_(tensor4::from_shape({out, in, kernel, kernel})),
          b_(tensor1::from_shape({o.bias ? out : 0})), db_(tensor1::from_shape({o.bias ? out : 0})) {
        if (in == 0 || out == 0 || kernel == 0 || o.stride == 0) {
            throw error(detail::concat("frugal::conv2d: channels, kernel and stride must be positive (in ", in,
                                       ", out ", out, ", kernel ", kernel, ", stride ", o.stride, ")"));
        }
        w_.fill(0.0f);
        b_.fill(0.0f);
    }

    [[nodiscard]] std::size_t in_channels() const noexcept { return in_; }
    [[nodiscard]] std::size_t out_channels() const noexcept { return out_; }
    [[nodiscard]] std::size_t kernel() const noexcept { return k_; }
    [[nodiscard]] const conv_options& options() const noexcept { return opt_; }
    [[nodiscard]] tensor4& weight() noexcept { return w_; }
    [[nodiscard]] const tensor4& weight() const noexcept { return w_; }
    [[nodiscard]] tensor1& bias() noexcept { return b_; }
    [[nodiscard]] const tensor4& weight_grad() const noexcept { return dw_; }

    void reset_parameters(rng& g) {
        he_normal(w_, in_ * k_ * k_, g);
        b_.fill(0.0f);
    }

    [[nodiscard]] conv_geometry geometry(const shape4& x) const {
        conv_geometry g{x.c, x.h, x.w, k_, opt_.stride, opt_.padding};
        if (x.c != in_ || !g.valid()) {
            throw shape_error(detail::concat(name(), ": conv2d(", in_, "->", out_, ", k", k_, ", stride ", opt_.stride,
                                             ", pad ", opt_.padding, ") cannot take an input of shape ", to_string(x)));
        }
        return g;
    }

    [[nodiscard]] shape4 output_shape(const shape4& x) const {
        const conv_geometry g = geometry(x);
        return {x.n, out_, g.out_h(), g.out_w()};
    }

    const tensor4& forward(context& ctx, const tensor4& x) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        const shape4 xs = shape_of(x);
        const conv_geometry g = geometry(xs);
        ensure_shape(y_, {xs.n, out_, g.out_h(), g.out_w()});
        x_ = &x;
        if (implicit(g)) {
            forward_implicit(x, g);
        } else {
            forward_im2col(x, g);
        }
        if (m != nullptr) {
            const std::uint64_t macs = static_cast<std::uint64_t>(xs.n) * out_ * g.cols() * g.rows();
            m->mac(id(), phase::forward, fp32, fp32, macs);
            if (opt_.bias) {
                m->unary(id(), phase::forward, op_kind::add, fp32, static_cast<std::uint64_t>(xs.n) * out_ * g.cols());
            }
            m->bytes(id(), phase::forward, 4 * (x.size() + w_.size() + b_.size()), 4 * y_.size());
        }
        return y_;
    }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        cost_meter* m = meter(ctx);
        const auto start = std::chrono::steady_clock::now();
        if (x_ == nullptr) {
            throw error(detail::concat(name(), ": backward called before forward"));
        }
        const tensor4& x = *x_;
        const shape4 xs = shape_of(x);
        const conv_geometry g = geometry(xs);
        expect_shape(shape_of(dy), shape_of(y_), (name() + ".backward").c_str());
        const bool need_dx = input_grad();
        if (need_dx) {
            ensure_shape(dx_, xs);
        }
        const int threads = num_threads();
        const std::size_t stride = w_.size() + b_.size();
        partial_.assign(static_cast<std::size_t>(threads) * stride, 0.0f);
        timing t;
        if (implicit(g)) {
            backward_implicit(x, dy, g, need_dx, t);
        } else {
            backward_im2col(x, dy, g, need_dx, t);
        }
        // reduce the per-thread partial gradients in a fixed order
        std::fill(dw_.begin(), dw_.end(), 0.0f);
        std::fill(db_.begin(), db_.end(), 0.0f);
        for (int i = 0; i < threads; ++i) {
            const float* part = partial_.data() + static_cast<std::size_t>(i) * stride;
            for (std::size_t j = 0; j < w_.size(); ++j) {
                dw_.data()[j] += part[j];
            }
            for (std::size_t j = 0; j < b_.size(); ++j) {
                db_.data()[j] += part[w_.size() + j];
            }
        }
        if (m != nullptr) {
            const std::uint64_t macs = static_cast<std::uint64_t>(xs.n) * out_ * g.cols() * g.rows();
            m->mac(id(), phase::weight_gradient, fp32, fp32, macs);
            if (opt_.bias) {
                m->unary(id(), phase::weight_gradient, op_kind::add, fp32,
                         static_cast<std::uint64_t>(xs.n) * out_ * g.cols());
            }
            m->bytes(id(), phase::weight_gradient, 4 * (x.size() + dy.size()), 4 * (w_.size() + b_.size()));
            // wall time of the whole backward, split between the two phases as
            // the first thread's time was
            const double wall = std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
            const double share = t.wgrad + t.dx > 0.0 ? t.wgrad / (t.wgrad + t.dx) : 1.0;
            m->time(id(), phase::weight_gradient, wall * share);
            if (need_dx) {
                m->mac(id(), phase::backward_input, fp32, fp32, macs);
                m->bytes(id(), phase::backward_input, 4 * (dy.size() + w_.size()), 4 * dx_.size());
                m->time(id(), phase::backward_input, wall * (1.0 - share));
            }
        }
        return need_dx ? dx_ : empty_;
    }

    void collect_parameters(std::vector<parameter>& ps) {
        add_parameter(ps, "weight", span_of(w_), span_of(dw_), param_role::weight, true);
        if (opt_.bias) {
            add_parameter(ps, "bias", span_of(b_), span_of(db_), param_role::bias, true);
        }
    }

    void save(archive_writer& a) const {
        a.tag("conv2d/1");
        a.u64(in_);
        a.u64(out_);
        a.u64(k_);
        a.u64(opt_.stride);
        a.u64(opt_.padding);
        a.u32(opt_.bias ? 1 : 0);
        a.tensor(w_);
        a.tensor(b_);
    }
    void load(archive_reader& a) {
        a.expect("conv2d/1");
        const std::size_t at = a.offset();
        const std::uint64_t in = a.u64(), out = a.u64(), k = a.u64(), s = a.u64(), pad = a.u64();
        const bool bias = a.u32() != 0;
        if (in != in_ || out != out_ || k != k_ || s != opt_.stride || pad != opt_.padding || bias != opt_.bias) {
            a.fail(at, detail::concat(name(), ": the checkpoint holds conv2d(", in, "->", out, ", k", k, ", stride ", s,
                                      ", pad ", pad, bias ? ", bias" : "", ") but the model has conv2d(", in_, "->",
                                      out_, ", k", k_, ", stride ", opt_.stride, ", pad ", opt_.padding,
                                      opt_.bias ? ", bias" : "", ")"));
        }
        a.tensor(w_, name() + ".weight");
        a.tensor(b_, name() + ".bias");
    }

private:
    struct timing {
        double wgrad = 0.0, dx = 0.0; // measured on the first thread
    };

    /// Stride-1 convolutions on images of at least 10 x 10 outputs read the
    /// (padded) image in place; the rest go through im2col.
    [[nodiscard]] static bool implicit(const conv_geometry& g) noexcept {
        return g.stride == 1 && g.k > 1 && g.pad <= g.k - 1 && g.out_h() * g.out_w() >= 100;
    }

    /// Copies an image (c x h x w) into a zero-bordered buffer
    /// (c x (h + 2p) x (w + 2p)), followed by `slack` zeros.
    static void pad_image(const float* x, std::size_t c, std::size_t h, std::size_t w, std::size_t p, float* out,
                          std::size_t slack) noexcept {
        const std::size_t hp = h + 2 * p, wp = w + 2 * p;
        for (std::size_t ci = 0; ci < c; ++ci) {
            float* o = out + ci * hp * wp;
            std::memset(o, 0, p * wp * sizeof(float));
            for (std::size_t y = 0; y < h; ++y) {
                float* row = o + (p + y) * wp;
                std::memset(row, 0, p * sizeof(float));
                std::memcpy(row + p, x + (ci * h + y) * w, w * sizeof(float));
                std::memset(row + p + w, 0, p * sizeof(float));
            }
            std::memset(o + (p + h) * wp, 0, p * wp * sizeof(float));
        }
        std::memset(out + c * hp * wp, 0, slack * sizeof(float));
    }

    /// Row offsets of the implicit product: for (c, ky, kx) in order,
    /// c * plane + ky * width + kx.
    static void tap_offsets(std::size_t c, std::size_t k, std::size_t plane, std::size_t width,
                            std::vector<std::size_t>& off) {
        off.resize(c * k * k);
        for (std::size_t ci = 0; ci < c; ++ci) {
            for (std::size_t ky = 0; ky < k; ++ky) {
                for (std::size_t kx = 0; kx < k; ++kx) {
                    off[(ci * k + ky) * k + kx] = ci * plane + ky * width + kx;
                }
            }
        }
    }

    void forward_implicit(const tensor4& x, const conv_geometry& g) {
        const std::size_t n = x.shape()[0], k = g.k, p = g.pad;
        const std::size_t hp = g.h + 2 * p, wp = g.w + 2 * p, ho = g.out_h(), wo = g.out_w();
        const std::size_t cols = ho * wp, kk = g.rows();
        tap_offsets(in_, k, hp * wp, wp, offsets_);
        const float* bias = opt_.bias ? b_.data() : nullptr;
        parallel_chunks(n, [&](std::size_t nb, std::size_t ne, int) {
            thread_local std::vector<float> xpad, grid;
            thread_local std::vector<const float*> rows;
            xpad.resize(in_ * hp * wp + k);
            grid.resize(out_ * cols);
            rows.resize(kk);
            for (std::size_t i = nb; i < ne; ++i) {
                pad_image(x.data() + i * in_ * g.h * g.w, in_, g.h, g.w, p, xpad.data(), k);
                for (std::size_t j = 0; j < kk; ++j) {
                    rows[j] = xpad.data() + offsets_[j];
                }
                kernels::sgemm_rows(out_, cols, kk, 1.0f, w_.data(), kk, rows.data(), 0.0f, grid.data(), cols);
                float* dst = y_.data() + i * out_ * ho * wo;
                for (std::size_t o = 0; o < out_; ++o) {
                    const float bo = bias != nullptr ? bias[o] : 0.0f;
                    for (std::size_t yy = 0; yy < ho; ++yy) {
                        const float* src = grid.data() + o * cols + yy * wp;
                        float* d = dst + (o * ho + yy) * wo;
                        for (std::size_t xx = 0; xx < wo; ++xx) {
                            d[xx] = src[xx] + bo;
                        }
                    }
                }
            }
        });
    }

    void backward_implicit(const tensor4& x, const tensor4& dy, const conv_geometry& g, bool need_dx, timing& t) {
        const std::size_t n = x.shape()[0], k = g.k, p = g.pad;
        const std::size_t hp = g.h + 2 * p, wp = g.w + 2 * p, ho = g.out_h(), wo = g.out_w();
        const std::size_t cols = ho * wp, kk = g.rows();
        // the weight-gradient product runs over a multiple of the vector width:
        // dy is zero past `cols`, the image buffer has slack past its end
        const std::size_t cpad = round_up(cols);
        // input gradient: a valid correlation of dy, padded by k - 1 - p, with the rotated kernel
        const std::size_t pd = k - 1 - p, hq = ho + 2 * pd, wq = wo + 2 * pd, dcols = g.h * wq, kq = out_ * k * k;
        tap_offsets(in_, k, hp * wp, wp, offsets_);
        if (need_dx) {
            tap_offsets(out_, k, hq * wq, wq, offsets_dx_);
            wrot_.resize(in_ * kq);
            for (std::size_t ci = 0; ci < in_; ++ci) {
                for (std::size_t co = 0; co < out_; ++co) {
                    for (std::size_t ky = 0; ky < k; ++ky) {
                        for (std::size_t kx = 0; kx < k; ++kx) {
                            wrot_[ci * kq + (co * k + ky) * k + kx] = w_(co, ci, k - 1 - ky, k - 1 - kx);
                        }
                    }
                }
            }
        }
        const std::size_t stride = w_.size() + b_.size();
        parallel_chunks(n, [&](std::size_t nb, std::size_t ne, int thread) {
            thread_local std::vector<float> xpad, dyw, dyq, dgrid;
            thread_local std::vector<const float*> rows;
            xpad.resize(in_ * hp * wp + k + cpad - cols);
            dyw.resize(out_ * cpad);
            rows.resize(std::max(kk, kq));
            float* dw = partial_.data() + static_cast<std::size_t>(thread) * stride;
            float* db = dw + w_.size();
            for (std::size_t i = nb; i < ne; ++i) {
                const auto t0 = std::chrono::steady_clock::now();
                const float* dys = dy.data() + i * out_ * ho * wo;
                // dy on the padded-width grid, zero in the columns past wo
                for (std::size_t o = 0; o < out_; ++o) {
                    for (std::size_t yy = 0; yy < ho; ++yy) {
                        float* d = dyw.data() + o * cpad + yy * wp;
                        std::memcpy(d, dys + (o * ho + yy) * wo, wo * sizeof(float));
                        std::memset(d + wo, 0, (wp - wo) * sizeof(float));
                    }
                    std::memset(dyw.data() + o * cpad + cols, 0, (cpad - cols) * sizeof(float));
                }
                pad_image(x.data() + i * in_ * g.h * g.w, in_, g.h, g.w, p, xpad.data(), k + cpad - cols);
                for (std::size_t j = 0; j < kk; ++j) {
                    rows[j] = xpad.data() + offsets_[j];
                }
                kernels::sgemm_nt_rows(out_, kk, cpad, 1.0f, dyw.data(), cpad, rows.data(), 1.0f, dw, kk);
                if (opt_.bias) {
                    for (std::size_t o = 0; o < out_; ++o) {
                        db[o] += row_sum(dyw.data() + o * cpad, cpad);
                    }
                }
                const auto t1 = std::chrono::steady_clock::now();
                if (need_dx) {
                    dyq.resize(out_ * hq * wq + k);
                    dgrid.resize(in_ * dcols);
                    pad_image(dys, out_, ho, wo, pd, dyq.data(), k);
                    for (std::size_t j = 0; j < kq; ++j) {
                        rows[j] = dyq.data() + offsets_dx_[j];
                    }
                    kernels::sgemm_rows(in_, dcols, kq, 1.0f, wrot_.data(), kq, rows.data(), 0.0f, dgrid.data(), dcols);
                    float* dxs = dx_.data() + i * in_ * g.h * g.w;
                    for (std::size_t ci = 0; ci < in_; ++ci) {
                        for (std::size_t yy = 0; yy < g.h; ++yy) {
                            std::memcpy(dxs + (ci * g.h + yy) * g.w, dgrid.data() + ci * dcols + yy * wq,
                                        g.w * sizeof(float));
                        }
                    }
                }
                if (thread == 0) {
                    t.wgrad += std::chrono::duration<double>(t1 - t0).count();
                    t.dx += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
                }
            }
        });
    }

    /// n rounded up to a multiple of the vector width.
    [[nodiscard]] static constexpr std::size_t round_up(std::size_t n) noexcept {
        return (n + simd::width - 1) / simd::width * simd::width;
    }

    /// Sum of n floats, vectorized.
    [[nodiscard]] static float row_sum(const float* v, std::size_t n) noexcept {
        simd::fbatch acc(0.0f);
        std::size_t i = 0;
        for (; i + simd::width <= n; i += simd::width) {
            acc += simd::fbatch::load_unaligned(v + i);
        }
        float s = xsimd::hadd(acc);
        for (; i < n; ++i) {
            s += v[i];
        }
        return s;
    }

    /// Images per matrix product on the im2col path: enough for >= 256 columns.
    [[nodiscard]] static std::size_t group_size(std::size_t cols, std::size_t n) noexcept {
        return std::max<std::size_t>(1, std::min(n, (256 + cols - 1) / cols));
    }

    void forward_im2col(const tensor4& x, const conv_geometry& g) {
        const std::size_t n = x.shape()[0];
        const std::size_t p = g.cols(), kk = g.rows(), group = group_size(p, n);
        const std::size_t groups = (n + group - 1) / group;
        const std::size_t xstride = g.c * g.h * g.w, ystride = out_ * p;
        const float* bias = opt_.bias ? b_.data() : nullptr;
        parallel_chunks(groups, [&](std::size_t gb, std::size_t ge, int) {
            thread_local std::vector<float> col, out;
            col.resize(kk * group * p);
            out.resize(out_ * group * p);
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const std::size_t n0 = gi * group, cnt = std::min(group, n - n0), ld = cnt * p;
                const float* bmat = gather_columns(x.data() + n0 * xstride, g, cnt, ld, col.data());
                kernels::sgemm(out_, ld, kk, 1.0f, w_.data(), kk, bmat, ld, 0.0f, out.data(), ld);
                for (std::size_t s = 0; s < cnt; ++s) {
                    float* dst = y_.data() + (n0 + s) * ystride;
                    for (std::size_t o = 0; o < out_; ++o) {
                        const float* src = out.data() + o * ld + s * p;
                        const float bo = bias != nullptr ? bias[o] : 0.0f;
                        for (std::size_t j = 0; j < p; ++j) {
                            dst[o * p + j] = src[j] + bo;
                        }
                    }
                }
            }
        });
    }

    void backward_im2col(const tensor4& x, const tensor4& dy, const conv_geometry& g, bool need_dx, timing& t) {
        const std::size_t n = x.shape()[0];
        const std::size_t p = g.cols(), kk = g.rows(), group = group_size(p, n);
        const std::size_t groups = (n + group - 1) / group;
        const std::size_t xstride = g.c * g.h * g.w, ystride = out_ * p;
        if (need_dx) {
            wt_.resize(kk * out_);
            kernels::transpose(out_, kk, w_.data(), kk, wt_.data(), out_);
        }
        const std::size_t stride = w_.size() + b_.size();
        parallel_chunks(groups, [&](std::size_t gb, std::size_t ge, int thread) {
            thread_local std::vector<float> col, dyg, dcol;
            const std::size_t ldmax = round_up(group * p);
            col.resize(kk * ldmax);
            dyg.resize(out_ * ldmax);
            if (need_dx) {
                dcol.resize(kk * ldmax);
            }
            float* dw = partial_.data() + static_cast<std::size_t>(thread) * stride;
            float* db = dw + w_.size();
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const auto t0 = std::chrono::steady_clock::now();
                // the group as matrices of ld columns, a multiple of the vector
                // width: the columns past cnt * p are zero in both operands
                const std::size_t n0 = gi * group, cnt = std::min(group, n - n0), ld = round_up(cnt * p);
                for (std::size_t o = 0; o < out_; ++o) {
                    for (std::size_t s = 0; s < cnt; ++s) {
                        const float* src = dy.data() + (n0 + s) * ystride + o * p;
                        std::copy(src, src + p, dyg.data() + o * ld + s * p);
                    }
                    std::fill(dyg.data() + o * ld + cnt * p, dyg.data() + (o + 1) * ld, 0.0f);
                }
                for (std::size_t s = 0; s < cnt; ++s) {
                    im2col(x.data() + (n0 + s) * xstride, g, col.data() + s * p, ld);
                }
                for (std::size_t r = 0; r < kk; ++r) {
                    std::fill(col.data() + r * ld + cnt * p, col.data() + (r + 1) * ld, 0.0f);
                }
                kernels::sgemm_nt(out_, kk, ld, 1.0f, dyg.data(), ld, col.data(), ld, 1.0f, dw, kk);
                if (opt_.bias) {
                    for (std::size_t o = 0; o < out_; ++o) {
                        db[o] += row_sum(dyg.data() + o * ld, ld);
                    }
                }
                const auto t1 = std::chrono::steady_clock::now();
                if (need_dx) {
                    kernels::sgemm(kk, ld, out_, 1.0f, wt_.data(), out_, dyg.data(), ld, 0.0f, dcol.data(), ld);
                    for (std::size_t s = 0; s < cnt; ++s) {
                        float* dxs = dx_.data() + (n0 + s) * xstride;
                        std::fill(dxs, dxs + xstride, 0.0f);
                        col2im(dcol.data() + s * p, g, ld, dxs);
                    }
                }
                if (thread == 0) {
                    t.wgrad += std::chrono::duration<double>(t1 - t0).count();
                    t.dx += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
                }
            }
        });
    }

    /// The [k*k*c x cnt*p] column matrix of cnt consecutive images: the images
    /// themselves for a 1x1, stride-1, unpadded convolution of one image,
    /// else im2col into `col`.
    static const float* gather_columns(const float* x, const conv_geometry& g, std::size_t cnt, std::size_t ld,
                                       float* col) {
        const std::size_t p = g.cols();
        if (g.k == 1 && g.stride == 1 && g.pad == 0 && cnt == 1) {
            return x;
        }
        for (std::size_t s = 0; s < cnt; ++s) {
            im2col(x + s * g.c * g.h * g.w, g, col + s * p, ld);
        }
        return col;
    }

    std::size_t in_, out_, k_;
    conv_options opt_;
    tensor4 w_, dw_;
    tensor1 b_, db_;
    tensor4 y_, dx_, empty_;
    const tensor4* x_ = nullptr;
    std::vector<float> wt_, wrot_, partial_;
    std::vector<std::size_t> offsets_, offsets_dx_;
};

static_assert(layer<conv2d>);

} // namespace frugal

#endif
