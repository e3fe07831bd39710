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
#include <span>
#include <utility>
#include <vector>

#include "frugal/layers/layer.hpp"
#include "frugal/tensor/kernels/elementwise.hpp"
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
    /// Stride-2 3 x 3 convolutions with padding 1 read their input in place on polyphase canvases
    /// (no im2col) from outputs of this side on: a canvas holds (side + 1)^2 positions per side^2
    /// outputs, and below 12 x 12 im2col was as fast (measured: 16 -> 23 channels at 32 x 32,
    /// backward 4.3 -> 3.0 ms; 32 -> 64 at 16 x 16, 3.25 -> 3.5 ms, so left to im2col).
    static constexpr std::size_t polyphase_min_side = 12;

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
    [[nodiscard]] const tensor1& bias() const noexcept { return b_; }
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

    /// Whether a training forward also computes the (sum, sum of squares) of every plane of its
    /// output while the plane is in cache: what a batch norm after this layer reads instead of a
    /// statistics pass of its own (basic_block turns it on). Off by default.
    void keep_output_sums(bool on) noexcept { keep_sums_ = on; }
    /// The plane sums of the last forward's output (index n * out + o) when keep_output_sums is on
    /// and that forward was a training forward; else nullptr.
    [[nodiscard]] const std::vector<std::pair<float, float>>* output_sums() const noexcept {
        return sums_ok_ ? &out_sums_ : nullptr;
    }

    const tensor4& forward(context& ctx, const tensor4& x) {
        x_ = nullptr; // until this forward succeeds
        rows_.clear();
        use_rows_ = false;
        return run_forward(ctx, x);
    }

    /// The forward of the samples `rows` of x, in that order: what forward(gathered) gives for a
    /// tensor `gathered` holding those samples, without that copy (a stride-1 convolution, and one
    /// of 1 x 1 images at any stride, reads each sample where it is; another strided one gathers
    /// them itself). The following backward takes
    /// the output gradient of those samples and gives their input gradient, in the same order;
    /// x must stay alive and unchanged until then. What a gated block runs its sub-batch with.
    const tensor4& forward_rows(context& ctx, const tensor4& x, std::span<const std::size_t> rows) {
        x_ = nullptr; // until this forward succeeds
        const shape4 xs = shape_of(x);
        check_rows(name(), rows, xs.n);
        const conv_geometry g = geometry({rows.size(), xs.c, xs.h, xs.w});
        rows_.assign(rows.begin(), rows.end());
        if (implicit(g) || single_tap(g)) {
            use_rows_ = true;
            return run_forward(ctx, x);
        }
        use_rows_ = false;
        gather_rows(x, rows, xg_);
        return run_forward(ctx, xg_);
    }

    /// Takes x as the last forward's input without computing the output: for a layer that computes
    /// the same product another way and takes this convolution's backward (shift_conv2d, whose
    /// forward runs on its integer shift kernel and whose weights are this layer's, exact powers
    /// of two). x must stay alive and unchanged until the backward.
    void assume_input(const tensor4& x) {
        (void)geometry(shape_of(x)); // throws on a wrong shape
        rows_.clear();
        use_rows_ = false;
        sums_ok_ = false;
        x_ = &x;
    }

    /// The input gradient the last backward returned, writable: a caller may change it in place
    /// before the next backward (quantized_conv's float path hands its planes to a hook).
    [[nodiscard]] tensor4& input_grad_buffer() noexcept { return dx_; }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        cost_meter* m = meter(ctx);
        const auto start = std::chrono::steady_clock::now();
        if (x_ == nullptr) {
            throw error(detail::concat(name(), ": backward called before forward"));
        }
        const tensor4& x = *x_;
        const shape4 xs = input_shape(x);
        const conv_geometry g = geometry(xs);
        expect_shape(shape_of(dy), shape4{xs.n, out_, g.out_h(), g.out_w()}, (name() + ".backward").c_str());
        const bool need_dx = input_grad();
        if (need_dx) {
            ensure_shape(dx_, xs);
        }
        const int threads = num_threads();
        const std::size_t stride = w_.size() + b_.size();
        partial_.assign(static_cast<std::size_t>(threads) * stride, 0.0f);
        timing t;
        if (single_tap(g)) {
            backward_single_tap(x, dy, g, need_dx, t);
        } else if (implicit(g)) {
            backward_implicit(x, dy, g, need_dx, t);
        } else {
            backward_im2col(x, dy, g, need_dx, t);
        }
        // reduce the per-thread partial gradients (held transposed, [in*k*k x out])
        // in a fixed order: summed into the first thread's in their own layout
        // (contiguous), then transposed once in cache-sized blocks (a strided
        // add per thread took 10+ ms for a 512-channel 3 x 3 layer)
        const std::size_t kk = g.rows();
        float* sum = partial_.data();
        for (int i = 1; i < threads; ++i) {
            const float* part = partial_.data() + static_cast<std::size_t>(i) * stride;
            for (std::size_t j = 0; j < stride; ++j) {
                sum[j] += part[j];
            }
        }
        kernels::transpose(kk, out_, sum, out_, dw_.data(), kk);
        std::copy(sum + w_.size(), sum + stride, db_.begin());
        if (m != nullptr) {
            const std::uint64_t macs = static_cast<std::uint64_t>(xs.n) * out_ * g.cols() * g.rows();
            m->mac(id(), phase::weight_gradient, fp32, fp32, macs);
            if (opt_.bias) {
                m->unary(id(), phase::weight_gradient, op_kind::add, fp32,
                         static_cast<std::uint64_t>(xs.n) * out_ * g.cols());
            }
            m->bytes(id(), phase::weight_gradient, 4 * (xs.size() + dy.size()), 4 * (w_.size() + b_.size()));
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
    const tensor4& run_forward(context& ctx, const tensor4& x) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        const shape4 xs = input_shape(x);
        const conv_geometry g = geometry(xs);
        ensure_shape(y_, {xs.n, out_, g.out_h(), g.out_w()});
        x_ = &x;
        sums_ok_ = false;
        const bool sums = keep_sums_ && ctx.training();
        if (sums) {
            out_sums_.resize(xs.n * out_);
        }
        if (single_tap(g)) {
            forward_single_tap(x, g, sums);
        } else if (implicit(g)) {
            forward_implicit(x, g, sums);
        } else {
            forward_im2col(x, g, sums);
        }
        sums_ok_ = sums;
        if (m != nullptr) {
            const std::uint64_t macs = static_cast<std::uint64_t>(xs.n) * out_ * g.cols() * g.rows();
            m->mac(id(), phase::forward, fp32, fp32, macs);
            if (opt_.bias) {
                m->unary(id(), phase::forward, op_kind::add, fp32, static_cast<std::uint64_t>(xs.n) * out_ * g.cols());
            }
            m->bytes(id(), phase::forward, 4 * (xs.size() + w_.size() + b_.size()), 4 * y_.size());
        }
        return y_;
    }

    /// The shape of the forward's input: x's, or that of its rows (forward_rows).
    [[nodiscard]] shape4 input_shape(const tensor4& x) const noexcept {
        shape4 xs = shape_of(x);
        if (use_rows_) {
            xs.n = rows_.size();
        }
        return xs;
    }
    /// Sample s of the forward's input.
    [[nodiscard]] const float* sample(const tensor4& x, std::size_t s, std::size_t per) const noexcept {
        return x.data() + (use_rows_ ? rows_[s] : s) * per;
    }

    struct timing {
        double wgrad = 0.0, dx = 0.0; // measured on the first thread
    };

    /// Stride-1 convolutions read the (zero-padded) images in place, and so do
    /// stride-2 3 x 3 ones with padding 1 (polyphase); other strided ones go
    /// through im2col.
    [[nodiscard]] static bool implicit(const conv_geometry& g) noexcept {
        return (g.stride == 1 && g.k > 1 && g.pad <= g.k - 1) || polyphase(g);
    }

    /// A stride-2 3 x 3 convolution with padding 1 (the first of a ResNet stage) runs on the four
    /// phases of each image (its even or odd rows x even or odd columns, ceil(h/2) x ceil(w/2)
    /// each): output row y reads input rows 2y - 1, 2y and 2y + 1, which are rows y - 1 and y of
    /// the odd phase and row y of the even one (columns alike), so every tap reads one phase's
    /// canvas shifted by 0 or 1 row and column, and the layer is a stride-1 implicit product over
    /// 4c canvases: no im2col copy (9 floats per input value) in the forward and weight gradient.
    /// Taken from outputs of polyphase_min_side on (public, above).
    [[nodiscard]] static bool polyphase(const conv_geometry& g) noexcept {
        return g.stride == 2 && g.k == 3 && g.pad == 1 && g.out_h() >= polyphase_min_side &&
               g.out_w() >= polyphase_min_side;
    }

    /// A 1 x 1 image with a 1 x 1 output (VGG-16's last stage on 28-pixel images, 3 x 3 kernels
    /// with padding 1): of the k x k taps only (pad, pad) reads the image, every other one reads
    /// padding. The layer is then a matrix product over the samples with that tap's weights:
    /// 1/k² of the rows the implicit product would multiply, and no canvas (whose grid would hold
    /// four positions per output pixel). The cost meter still counts every tap (as FLOP counts
    /// of convolutions do; docs/energy-model.md).
    [[nodiscard]] static bool single_tap(const conv_geometry& g) noexcept {
        return g.h == 1 && g.w == 1 && g.out_h() == 1 && g.out_w() == 1 && g.pad < g.k;
    }
    /// Samples per product of the single-tap path.
    static constexpr std::size_t tap_group = 32;

    /// Samples n0 .. n0 + cnt of the forward's input as a [cnt x in] matrix: in place, or gathered
    /// into `buf` (forward_rows).
    const float* tap_inputs(const tensor4& x, std::size_t n0, std::size_t cnt, std::vector<float>& buf) const {
        if (!use_rows_) {
            return x.data() + n0 * in_;
        }
        buf.resize(cnt * in_);
        for (std::size_t s = 0; s < cnt; ++s) {
            std::memcpy(buf.data() + s * in_, sample(x, n0 + s, in_), in_ * sizeof(float));
        }
        return buf.data();
    }

    void forward_single_tap(const tensor4& x, const conv_geometry& g, bool sums) {
        const std::size_t n = input_shape(x).n, kk = g.rows(), taps = g.k * g.k, tap = g.pad * g.k + g.pad;
        wt_.resize(in_ * out_); // the tap's weights as [in x out]
        for (std::size_t o = 0; o < out_; ++o) {
            for (std::size_t ci = 0; ci < in_; ++ci) {
                wt_[ci * out_ + o] = w_.data()[o * kk + ci * taps + tap];
            }
        }
        const float* bias = opt_.bias ? b_.data() : nullptr;
        parallel_chunks((n + tap_group - 1) / tap_group, [&](std::size_t gb, std::size_t ge, int) {
            thread_local std::vector<float> xs;
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const std::size_t n0 = gi * tap_group, cnt = std::min(tap_group, n - n0);
                float* y = y_.data() + n0 * out_;
                kernels::sgemm(cnt, out_, in_, 1.0f, tap_inputs(x, n0, cnt, xs), in_, wt_.data(), out_, 0.0f, y, out_);
                for (std::size_t s = 0; s < cnt; ++s) {
                    for (std::size_t o = 0; o < out_; ++o) {
                        float& v = y[s * out_ + o];
                        v += bias != nullptr ? bias[o] : 0.0f;
                        if (sums) {
                            out_sums_[(n0 + s) * out_ + o] = kernels::sum_and_squares(&v, 1);
                        }
                    }
                }
            }
        });
    }

    void backward_single_tap(const tensor4& x, const tensor4& dy, const conv_geometry& g, bool need_dx, timing& t) {
        const std::size_t n = input_shape(x).n, kk = g.rows(), taps = g.k * g.k, tap = g.pad * g.k + g.pad;
        if (need_dx) {
            wrot_.resize(out_ * in_); // the tap's weights as [out x in]
            for (std::size_t o = 0; o < out_; ++o) {
                for (std::size_t ci = 0; ci < in_; ++ci) {
                    wrot_[o * in_ + ci] = w_.data()[o * kk + ci * taps + tap];
                }
            }
        }
        const std::size_t wstride = w_.size() + b_.size();
        parallel_chunks((n + tap_group - 1) / tap_group, [&](std::size_t gb, std::size_t ge, int thread) {
            thread_local std::vector<float> xs, xt;
            // the thread's partial gradient is [in*k*k x out]: the tap's rows are every k*k-th,
            // starting at row `tap`; the other taps' rows stay zero (they read only padding)
            float* dw = partial_.data() + static_cast<std::size_t>(thread) * wstride;
            float* db = dw + w_.size();
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const auto t0 = std::chrono::steady_clock::now();
                const std::size_t n0 = gi * tap_group, cnt = std::min(tap_group, n - n0);
                const float* dyg = dy.data() + n0 * out_;
                xt.resize(in_ * cnt);
                kernels::transpose(cnt, in_, tap_inputs(x, n0, cnt, xs), in_, xt.data(), cnt);
                kernels::sgemm(in_, out_, cnt, 1.0f, xt.data(), cnt, dyg, out_, 1.0f, dw + tap * out_, taps * out_);
                if (opt_.bias) {
                    for (std::size_t s = 0; s < cnt; ++s) {
                        for (std::size_t o = 0; o < out_; ++o) {
                            db[o] += dyg[s * out_ + o];
                        }
                    }
                }
                const auto t1 = std::chrono::steady_clock::now();
                if (need_dx) {
                    kernels::sgemm(cnt, in_, out_, 1.0f, dyg, out_, wrot_.data(), in_, 0.0f, dx_.data() + n0 * in_, in_);
                }
                if (thread == 0) {
                    t.wgrad += std::chrono::duration<double>(t1 - t0).count();
                    t.dx += std::chrono::duration<double>(std::chrono::steady_clock::now() - t1).count();
                }
            }
        });
    }

    /// Images tiled on one zero canvas per channel, sharing their padding: a
    /// grid of `tiles_y` x `tiles_x` images of h x w, `p` zero rows and
    /// columns around and between them. A stride-1 convolution with padding p
    /// reads at most p beyond an image on any side, so the shared gaps keep
    /// the images apart, and one matrix product covers every tile.
    struct canvas {
        std::size_t h = 0, w = 0, p = 0, count = 0, tiles_x = 1, tiles_y = 1;
        std::size_t width = 0, height = 0;

        canvas(std::size_t h_, std::size_t w_, std::size_t p_, std::size_t count_)
            : h(h_), w(w_), p(p_), count(count_) {
            tiles_x = 1;
            while (tiles_x * tiles_x < count) {
                ++tiles_x;
            }
            tiles_y = (count + tiles_x - 1) / tiles_x;
            width = p + tiles_x * (w + p);
            height = p + tiles_y * (h + p);
        }
        [[nodiscard]] std::size_t plane() const noexcept { return width * height; }
        /// Canvas index of pixel (0, 0) of image s.
        [[nodiscard]] std::size_t origin(std::size_t s) const noexcept {
            return (p + (s / tiles_x) * (h + p)) * width + p + (s % tiles_x) * (w + p);
        }
        /// Grid position of output (0, 0) of image s (its window's top-left corner).
        [[nodiscard]] std::size_t out_origin(std::size_t s) const noexcept { return origin(s) - p * width - p; }
        /// Grid positions a product must cover for outputs of ho rows.
        [[nodiscard]] std::size_t grid(std::size_t ho) const noexcept {
            return out_origin(count - 1) - out_origin(count - 1) % width + ho * width;
        }
        /// Copies `count` consecutive images (c x h x w each) onto the canvas of
        /// each channel ([c][height][width], zero elsewhere), then `slack` zeros.
        void fill(const float* x, std::size_t c, float* out, std::size_t slack) const noexcept {
            fill_samples([&](std::size_t s) { return x + s * c * h * w; }, c, out, slack);
        }
        /// fill with image s read at sample(s).
        template <class Sample>
        void fill_samples(Sample sample, std::size_t c, float* out, std::size_t slack) const noexcept {
            std::memset(out, 0, (c * plane() + slack) * sizeof(float));
            for (std::size_t s = 0; s < count; ++s) {
                const float* xs = sample(s);
                for (std::size_t ci = 0; ci < c; ++ci) {
                    const float* src = xs + ci * h * w;
                    float* dst = out + ci * plane() + origin(s);
                    for (std::size_t y = 0; y < h; ++y) {
                        std::memcpy(dst + y * width, src + y * w, w * sizeof(float));
                    }
                }
            }
        }
    };

    /// Images per canvas: enough for a product of >= ~384 columns.
    [[nodiscard]] static std::size_t canvas_count(std::size_t h, std::size_t w, std::size_t p, std::size_t n) noexcept {
        const std::size_t tile = (h + p) * (w + p);
        return std::max<std::size_t>(1, std::min(n, (384 + tile - 1) / tile));
    }

    /// The canvas of the implicit product for cnt images: the images, or (polyphase) their
    /// phases, with the padding the taps read.
    [[nodiscard]] static canvas implicit_canvas(const conv_geometry& g, std::size_t cnt) noexcept {
        return polyphase(g) ? canvas((g.h + 1) / 2, (g.w + 1) / 2, 1, cnt) : canvas(g.h, g.w, g.pad, cnt);
    }
    /// Images per canvas of the implicit product.
    [[nodiscard]] static std::size_t implicit_count(const conv_geometry& g, std::size_t n) noexcept {
        return polyphase(g) ? canvas_count((g.h + 1) / 2, (g.w + 1) / 2, 1, n) : canvas_count(g.h, g.w, g.pad, n);
    }
    /// Canvas planes per input channel: 1, or its 4 phases (phase (py, px) of channel c is plane
    /// (2 py + px) c_total + c).
    [[nodiscard]] static std::size_t implicit_planes(const conv_geometry& g) noexcept { return polyphase(g) ? 4 : 1; }

    /// Copies the cnt images at sample(s) (c x h x w each) onto the implicit product's canvas
    /// (plane per channel, or per phase and channel), zero elsewhere, then `slack` zeros.
    template <class Sample>
    static void fill_implicit(const conv_geometry& g, const canvas& cv, Sample sample, std::size_t c, float* out,
                              std::size_t slack) noexcept {
        if (!polyphase(g)) {
            cv.fill_samples(sample, c, out, slack);
            return;
        }
        std::memset(out, 0, (4 * c * cv.plane() + slack) * sizeof(float));
        for (std::size_t s = 0; s < cv.count; ++s) {
            const float* xs = sample(s);
            for (std::size_t ph = 0; ph < 4; ++ph) {
                const std::size_t py = ph / 2, px = ph % 2, rows = (g.h - py + 1) / 2, cols = (g.w - px + 1) / 2;
                for (std::size_t ci = 0; ci < c; ++ci) {
                    const float* src = xs + ci * g.h * g.w + py * g.w + px;
                    float* dst = out + (ph * c + ci) * cv.plane() + cv.origin(s);
                    for (std::size_t i = 0; i < rows; ++i) {
                        detail::strided_copy(src + 2 * i * g.w, 2, dst + i * cv.width, cols);
                    }
                }
            }
        }
    }

    /// Row offsets of the implicit product over c input channels (tap_offsets, or the phase
    /// canvas and shift of each tap).
    static void implicit_offsets(const conv_geometry& g, std::size_t c, const canvas& cv, std::vector<std::size_t>& off) {
        if (!polyphase(g)) {
            tap_offsets(c, g.k, cv.plane(), cv.width, off);
            return;
        }
        off.resize(c * 9);
        for (std::size_t ci = 0; ci < c; ++ci) {
            for (std::size_t ky = 0; ky < 3; ++ky) {
                for (std::size_t kx = 0; kx < 3; ++kx) {
                    // tap ky reads input row 2y + ky - 1: odd phase row y - 1 (ky 0), even row y (1), odd row y (2)
                    const std::size_t py = ky != 1 ? 1 : 0, px = kx != 1 ? 1 : 0;
                    const std::size_t oy = ky != 0 ? 1 : 0, ox = kx != 0 ? 1 : 0;
                    off[(ci * 3 + ky) * 3 + kx] = ((2 * py + px) * c + ci) * cv.plane() + oy * cv.width + ox;
                }
            }
        }
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

    // The implicit product: output pixel (s, y, x) of output channel o is the
    // dot product of weight row o with the column at grid position
    // out_origin(s) + y * width + x, where row (c, ky, kx) of the grid is the
    // canvas of channel c shifted by ky * width + kx. Grid positions that are
    // no output pixel are computed and dropped: the price of reading the
    // input in place.

    void forward_implicit(const tensor4& x, const conv_geometry& g, bool sums) {
        const std::size_t n = input_shape(x).n, k = g.k, ho = g.out_h(), wo = g.out_w(), kk = g.rows();
        const std::size_t per = implicit_count(g, n), groups = (n + per - 1) / per;
        const float* bias = opt_.bias ? b_.data() : nullptr;
        parallel_chunks(groups, [&](std::size_t gb, std::size_t ge, int) {
            thread_local std::vector<float> xc, grid;
            thread_local std::vector<std::size_t> offsets;
            thread_local std::vector<const float*> rows;
            rows.resize(kk);
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const std::size_t n0 = gi * per, cnt = std::min(per, n - n0);
                const canvas cv = implicit_canvas(g, cnt);
                const std::size_t cols = cv.grid(ho);
                xc.resize(implicit_planes(g) * in_ * cv.plane() + k * cv.width);
                grid.resize(out_ * cols);
                fill_implicit(g, cv, [&](std::size_t i) { return sample(x, n0 + i, in_ * g.h * g.w); }, in_, xc.data(),
                              k * cv.width);
                implicit_offsets(g, in_, cv, offsets);
                for (std::size_t j = 0; j < kk; ++j) {
                    rows[j] = xc.data() + offsets[j];
                }
                kernels::sgemm_rows(out_, cols, kk, 1.0f, w_.data(), kk, rows.data(), 0.0f, grid.data(), cols);
                for (std::size_t s = 0; s < cnt; ++s) {
                    float* dst = y_.data() + (n0 + s) * out_ * ho * wo;
                    for (std::size_t o = 0; o < out_; ++o) {
                        const float bo = bias != nullptr ? bias[o] : 0.0f;
                        for (std::size_t yy = 0; yy < ho; ++yy) {
                            const float* src = grid.data() + o * cols + cv.out_origin(s) + yy * cv.width;
                            float* d = dst + (o * ho + yy) * wo;
                            for (std::size_t xx = 0; xx < wo; ++xx) {
                                d[xx] = src[xx] + bo;
                            }
                        }
                        if (sums) { // the plane is still in cache
                            out_sums_[(n0 + s) * out_ + o] = kernels::sum_and_squares(dst + o * ho * wo, ho * wo);
                        }
                    }
                }
            }
        });
    }

    void backward_implicit(const tensor4& x, const tensor4& dy, const conv_geometry& g, bool need_dx, timing& t) {
        const std::size_t n = input_shape(x).n, k = g.k, p = g.pad, ho = g.out_h(), wo = g.out_w(), kk = g.rows();
        const std::size_t per = implicit_count(g, n), groups = (n + per - 1) / per;
        const bool poly = polyphase(g);
        // input gradient (stride 1): a valid correlation of dy, padded by k - 1 - p, with the rotated kernel
        const std::size_t pd = k - 1 - p, kq = out_ * k * k;
        if (need_dx && poly) {
            wt_.resize(kk * out_); // W^T: the tap gradients on the grid, added into the phase canvases
            kernels::transpose(out_, kk, w_.data(), kk, wt_.data(), out_);
        } else if (need_dx) {
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
        const std::size_t wstride = w_.size() + b_.size();
        parallel_chunks(groups, [&](std::size_t gb, std::size_t ge, int thread) {
            thread_local std::vector<float> xc, dyw, dyc, dgrid;
            thread_local std::vector<std::size_t> offsets;
            thread_local std::vector<const float*> rows, dyrows;
            rows.resize(std::max(kk, kq));
            dyrows.resize(out_);
            float* dw = partial_.data() + static_cast<std::size_t>(thread) * wstride;
            float* db = dw + w_.size();
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const auto t0 = std::chrono::steady_clock::now();
                const std::size_t n0 = gi * per, cnt = std::min(per, n - n0);
                const canvas cv = implicit_canvas(g, cnt);
                const std::size_t cols = cv.grid(ho);
                // dy on the grid ([out x grid position], zero at the positions
                // that are not output pixels and up to a multiple of the vector width)
                const std::size_t cpad = round_up(cols);
                dyw.resize(out_ * cpad);
                std::fill(dyw.begin(), dyw.begin() + static_cast<std::ptrdiff_t>(out_ * cpad), 0.0f);
                for (std::size_t o = 0; o < out_; ++o) {
                    for (std::size_t s = 0; s < cnt; ++s) {
                        const float* src = dy.data() + ((n0 + s) * out_ + o) * ho * wo;
                        float* d = dyw.data() + o * cpad + cv.out_origin(s);
                        for (std::size_t yy = 0; yy < ho; ++yy) {
                            std::memcpy(d + yy * cv.width, src + yy * wo, wo * sizeof(float));
                        }
                    }
                }
                xc.resize(implicit_planes(g) * in_ * cv.plane() + k * cv.width + cpad);
                fill_implicit(g, cv, [&](std::size_t i) { return sample(x, n0 + i, in_ * g.h * g.w); }, in_, xc.data(),
                              k * cv.width + cpad);
                implicit_offsets(g, in_, cv, offsets);
                for (std::size_t j = 0; j < kk; ++j) {
                    rows[j] = xc.data() + offsets[j];
                }
                // dW^T [in*k*k x out] += shifted canvases x dy^T
                if (kernels::nt_panels_pay(out_)) {
                    // dy^T as the B operand: vectors along the output channels,
                    // zero-padded to a multiple of the vector width (a pruned layer
                    // of 463 or 30 channels runs on full panels)
                    kernels::sgemm_nt_panels(kk, out_, cols, 1.0f, rows.data(), dyw.data(), cpad, 1.0f, dw, out_);
                } else {
                    // few output channels, far from a vector multiple: dot products along the grid
                    for (std::size_t o = 0; o < out_; ++o) {
                        dyrows[o] = dyw.data() + o * cpad;
                    }
                    kernels::sgemm_nt_rows(kk, out_, cpad, 1.0f, rows.data(), dyrows.data(), 1.0f, dw, out_);
                }
                if (opt_.bias) {
                    for (std::size_t o = 0; o < out_; ++o) {
                        db[o] += row_sum(dyw.data() + o * cpad, cpad);
                    }
                }
                const auto t1 = std::chrono::steady_clock::now();
                if (need_dx && poly) {
                    // the gradient of every tap's row on the grid, W^T dy [in*9 x cols], added into
                    // the phase canvas it read at its shift, then the phases interleaved back
                    dgrid.resize(kk * cols);
                    kernels::sgemm(kk, cols, out_, 1.0f, wt_.data(), out_, dyw.data(), cpad, 0.0f, dgrid.data(), cols);
                    const std::size_t planes = 4 * in_ * cv.plane() + k * cv.width + cols;
                    dyc.resize(planes);
                    std::fill(dyc.begin(), dyc.begin() + static_cast<std::ptrdiff_t>(planes), 0.0f);
                    for (std::size_t j = 0; j < kk; ++j) {
                        float* d = dyc.data() + offsets[j];
                        kernels::add(d, dgrid.data() + j * cols, d, cols);
                    }
                    for (std::size_t s = 0; s < cnt; ++s) {
                        float* dxs = dx_.data() + (n0 + s) * in_ * g.h * g.w;
                        for (std::size_t ph = 0; ph < 4; ++ph) {
                            const std::size_t py = ph / 2, px = ph % 2;
                            const std::size_t prow = (g.h - py + 1) / 2, pcol = (g.w - px + 1) / 2;
                            for (std::size_t ci = 0; ci < in_; ++ci) {
                                const float* src = dyc.data() + (ph * in_ + ci) * cv.plane() + cv.origin(s);
                                float* d = dxs + ci * g.h * g.w + py * g.w + px;
                                for (std::size_t i = 0; i < prow; ++i) {
                                    for (std::size_t j = 0; j < pcol; ++j) {
                                        d[2 * i * g.w + 2 * j] = src[i * cv.width + j];
                                    }
                                }
                            }
                        }
                    }
                } else if (need_dx) {
                    const canvas dc(ho, wo, pd, cnt);
                    const std::size_t dcols = dc.grid(g.h);
                    dyc.resize(out_ * dc.plane() + k * dc.width);
                    dgrid.resize(in_ * dcols);
                    dc.fill(dy.data() + n0 * out_ * ho * wo, out_, dyc.data(), k * dc.width);
                    tap_offsets(out_, k, dc.plane(), dc.width, offsets);
                    for (std::size_t j = 0; j < kq; ++j) {
                        rows[j] = dyc.data() + offsets[j];
                    }
                    kernels::sgemm_rows(in_, dcols, kq, 1.0f, wrot_.data(), kq, rows.data(), 0.0f, dgrid.data(), dcols);
                    for (std::size_t s = 0; s < cnt; ++s) {
                        float* dxs = dx_.data() + (n0 + s) * in_ * g.h * g.w;
                        for (std::size_t ci = 0; ci < in_; ++ci) {
                            const float* src = dgrid.data() + ci * dcols + dc.out_origin(s);
                            for (std::size_t yy = 0; yy < g.h; ++yy) {
                                std::memcpy(dxs + (ci * g.h + yy) * g.w, src + yy * dc.width, g.w * sizeof(float));
                            }
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

    void forward_im2col(const tensor4& x, const conv_geometry& g, bool sums) {
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
                        if (sums) {
                            out_sums_[(n0 + s) * out_ + o] = kernels::sum_and_squares(dst + o * p, p);
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
            thread_local std::vector<const float*> rows;
            col.resize(kk * group * p);
            dyg.resize(out_ * group * p);
            rows.resize(kk);
            if (need_dx) {
                dcol.resize(kk * group * p);
            }
            float* dw = partial_.data() + static_cast<std::size_t>(thread) * stride;
            float* db = dw + w_.size();
            for (std::size_t gi = gb; gi < ge; ++gi) {
                const auto t0 = std::chrono::steady_clock::now();
                const std::size_t n0 = gi * group, cnt = std::min(group, n - n0), ld = cnt * p;
                // dy of the group as [out x ld]
                for (std::size_t s = 0; s < cnt; ++s) {
                    const float* src = dy.data() + (n0 + s) * ystride;
                    for (std::size_t o = 0; o < out_; ++o) {
                        std::copy(src + o * p, src + (o + 1) * p, dyg.data() + o * ld + s * p);
                    }
                }
                const float* bmat = gather_columns(x.data() + n0 * xstride, g, cnt, ld, col.data());
                for (std::size_t r = 0; r < kk; ++r) {
                    rows[r] = bmat + r * ld;
                }
                // dW^T [in*k*k x out] += columns x dy^T (dy transposed, its columns padded to full panels)
                kernels::sgemm_nt_panels(kk, out_, ld, 1.0f, rows.data(), dyg.data(), ld, 1.0f, dw, out_);
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
    bool keep_sums_ = false, sums_ok_ = false;
    std::vector<std::pair<float, float>> out_sums_; // per (sample, output channel) plane
    const tensor4* x_ = nullptr;
    std::vector<std::size_t> rows_; // forward_rows: the samples of *x_ the last forward ran on
    bool use_rows_ = false;         // ... read in place (else x_ is the input itself, or xg_)
    tensor4 xg_;                    // forward_rows of a strided convolution: the gathered samples
    std::vector<float> wt_, wrot_, partial_;
};

static_assert(layer<conv2d>);

/// Builds the convolutions of a model template (basic_block, basic_vgg_unit):
/// conv2d by default. A replacement provides `using type = Conv;` and
/// `static Conv make(in, out, kernel, conv_options)` (quantized_conv_maker).
struct plain_conv {
    using type = conv2d;
    [[nodiscard]] static conv2d make(std::size_t in, std::size_t out, std::size_t k, conv_options o) {
        return conv2d(in, out, k, o);
    }
};

} // namespace frugal

#endif
