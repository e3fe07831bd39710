#ifndef FRUGAL_LAYERS_POOL_HPP
#define FRUGAL_LAYERS_POOL_HPP

/// @file
/// Pooling: max_pool and avg_pool (square window, stride, no padding) and
/// global_avg_pool (mean over H x W, output N x C x 1 x 1).

#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <limits>
#include <vector>

#include "frugal/layers/layer.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

namespace detail {
inline shape4 pool_output(const shape4& x, std::size_t k, std::size_t stride, const std::string& who) {
    if (k == 0 || stride == 0 || x.h < k || x.w < k) {
        throw shape_error(concat(who, ": a ", k, "x", k, " window with stride ", stride,
                                 " cannot pool an input of shape ", to_string(x)));
    }
    return {x.n, x.c, (x.h - k) / stride + 1, (x.w - k) / stride + 1};
}
} // namespace detail

/// Max pooling; backward routes each gradient to the maximum of its window
/// (the first one on ties).
class max_pool : public layer_base {
public:
    explicit max_pool(std::size_t k, std::size_t stride = 0) : layer_base("max_pool"), k_(k), s_(stride == 0 ? k : stride) {}

    void reset_parameters(rng&) {}
    [[nodiscard]] shape4 output_shape(const shape4& x) const { return detail::pool_output(x, k_, s_, name()); }

    const tensor4& forward(context& ctx, const tensor4& x) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        const shape4 xs = shape_of(x), ys = output_shape(xs);
        ensure_shape(y_, ys);
        arg_.resize(y_.size());
        xs_ = xs;
        parallel_for(xs.n * xs.c, [&](std::size_t nc) {
            const float* in = x.data() + nc * xs.h * xs.w;
            float* out = y_.data() + nc * ys.h * ys.w;
            std::uint32_t* arg = arg_.data() + nc * ys.h * ys.w;
            for (std::size_t oy = 0; oy < ys.h; ++oy) {
                for (std::size_t ox = 0; ox < ys.w; ++ox) {
                    float best = -std::numeric_limits<float>::infinity();
                    std::uint32_t where = 0;
                    for (std::size_t ky = 0; ky < k_; ++ky) {
                        for (std::size_t kx = 0; kx < k_; ++kx) {
                            const std::size_t i = (oy * s_ + ky) * xs.w + ox * s_ + kx;
                            if (in[i] > best || (ky == 0 && kx == 0)) {
                                best = in[i];
                                where = static_cast<std::uint32_t>(i);
                            }
                        }
                    }
                    out[oy * ys.w + ox] = best;
                    arg[oy * ys.w + ox] = where;
                }
            }
        });
        if (m != nullptr) {
            m->unary(id(), phase::forward, op_kind::compare, fp32, y_.size() * k_ * k_);
            m->bytes(id(), phase::forward, 4 * x.size(), 4 * y_.size());
        }
        return y_;
    }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::backward_input);
        expect_shape(shape_of(dy), shape_of(y_), (name() + ".backward").c_str());
        if (!input_grad()) {
            return empty_;
        }
        ensure_shape(dx_, xs_);
        const std::size_t per_in = xs_.h * xs_.w, per_out = y_.shape()[2] * y_.shape()[3];
        parallel_for(xs_.n * xs_.c, [&](std::size_t nc) {
            float* d = dx_.data() + nc * per_in;
            std::fill(d, d + per_in, 0.0f);
            const float* g = dy.data() + nc * per_out;
            const std::uint32_t* arg = arg_.data() + nc * per_out;
            for (std::size_t j = 0; j < per_out; ++j) {
                d[arg[j]] += g[j];
            }
        });
        if (m != nullptr) {
            m->unary(id(), phase::backward_input, op_kind::add, fp32, dy.size());
            m->bytes(id(), phase::backward_input, 4 * dy.size(), 4 * dx_.size());
        }
        return dx_;
    }

    void collect_parameters(std::vector<parameter>&) {}
    void save(archive_writer& a) const {
        a.tag("max_pool/1");
        a.u64(k_);
        a.u64(s_);
    }
    void load(archive_reader& a) {
        a.expect("max_pool/1");
        const std::size_t at = a.offset();
        if (a.u64() != k_ || a.u64() != s_) {
            a.fail(at, name() + ": the checkpoint's pooling window differs from the model's");
        }
    }

private:
    std::size_t k_, s_;
    shape4 xs_{};
    tensor4 y_, dx_, empty_;
    std::vector<std::uint32_t> arg_;
};

/// Average pooling over k x k windows.
class avg_pool : public layer_base {
public:
    explicit avg_pool(std::size_t k, std::size_t stride = 0) : layer_base("avg_pool"), k_(k), s_(stride == 0 ? k : stride) {}

    void reset_parameters(rng&) {}
    [[nodiscard]] shape4 output_shape(const shape4& x) const { return detail::pool_output(x, k_, s_, name()); }

    const tensor4& forward(context& ctx, const tensor4& x) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        const shape4 xs = shape_of(x), ys = output_shape(xs);
        ensure_shape(y_, ys);
        xs_ = xs;
        const float inv = 1.0f / static_cast<float>(k_ * k_);
        parallel_for(xs.n * xs.c, [&](std::size_t nc) {
            const float* in = x.data() + nc * xs.h * xs.w;
            float* out = y_.data() + nc * ys.h * ys.w;
            for (std::size_t oy = 0; oy < ys.h; ++oy) {
                for (std::size_t ox = 0; ox < ys.w; ++ox) {
                    float s = 0.0f;
                    for (std::size_t ky = 0; ky < k_; ++ky) {
                        for (std::size_t kx = 0; kx < k_; ++kx) {
                            s += in[(oy * s_ + ky) * xs.w + ox * s_ + kx];
                        }
                    }
                    out[oy * ys.w + ox] = s * inv;
                }
            }
        });
        if (m != nullptr) {
            m->unary(id(), phase::forward, op_kind::add, fp32, y_.size() * k_ * k_);
            m->bytes(id(), phase::forward, 4 * x.size(), 4 * y_.size());
        }
        return y_;
    }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::backward_input);
        expect_shape(shape_of(dy), shape_of(y_), (name() + ".backward").c_str());
        if (!input_grad()) {
            return empty_;
        }
        ensure_shape(dx_, xs_);
        const std::size_t oh = y_.shape()[2], ow = y_.shape()[3];
        const float inv = 1.0f / static_cast<float>(k_ * k_);
        parallel_for(xs_.n * xs_.c, [&](std::size_t nc) {
            float* d = dx_.data() + nc * xs_.h * xs_.w;
            std::fill(d, d + xs_.h * xs_.w, 0.0f);
            const float* g = dy.data() + nc * oh * ow;
            for (std::size_t oy = 0; oy < oh; ++oy) {
                for (std::size_t ox = 0; ox < ow; ++ox) {
                    const float v = g[oy * ow + ox] * inv;
                    for (std::size_t ky = 0; ky < k_; ++ky) {
                        for (std::size_t kx = 0; kx < k_; ++kx) {
                            d[(oy * s_ + ky) * xs_.w + ox * s_ + kx] += v;
                        }
                    }
                }
            }
        });
        if (m != nullptr) {
            m->unary(id(), phase::backward_input, op_kind::add, fp32, dy.size() * k_ * k_);
            m->bytes(id(), phase::backward_input, 4 * dy.size(), 4 * dx_.size());
        }
        return dx_;
    }

    void collect_parameters(std::vector<parameter>&) {}
    void save(archive_writer& a) const {
        a.tag("avg_pool/1");
        a.u64(k_);
        a.u64(s_);
    }
    void load(archive_reader& a) {
        a.expect("avg_pool/1");
        const std::size_t at = a.offset();
        if (a.u64() != k_ || a.u64() != s_) {
            a.fail(at, name() + ": the checkpoint's pooling window differs from the model's");
        }
    }

private:
    std::size_t k_, s_;
    shape4 xs_{};
    tensor4 y_, dx_, empty_;
};

/// Mean over each channel's H x W: output N x C x 1 x 1.
class global_avg_pool : public layer_base {
public:
    global_avg_pool() : layer_base("global_avg_pool") {}

    void reset_parameters(rng&) {}
    [[nodiscard]] shape4 output_shape(const shape4& x) const { return {x.n, x.c, 1, 1}; }

    const tensor4& forward(context& ctx, const tensor4& x) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        xs_ = shape_of(x);
        ensure_shape(y_, output_shape(xs_));
        const std::size_t hw = xs_.h * xs_.w;
        const float inv = 1.0f / static_cast<float>(hw);
        for (std::size_t nc = 0; nc < xs_.n * xs_.c; ++nc) {
            const float* in = x.data() + nc * hw;
            float s = 0.0f;
            for (std::size_t i = 0; i < hw; ++i) {
                s += in[i];
            }
            y_.data()[nc] = s * inv;
        }
        if (m != nullptr) {
            m->unary(id(), phase::forward, op_kind::add, fp32, x.size());
            m->bytes(id(), phase::forward, 4 * x.size(), 4 * y_.size());
        }
        return y_;
    }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::backward_input);
        expect_shape(shape_of(dy), shape_of(y_), (name() + ".backward").c_str());
        if (!input_grad()) {
            return empty_;
        }
        ensure_shape(dx_, xs_);
        const std::size_t hw = xs_.h * xs_.w;
        const float inv = 1.0f / static_cast<float>(hw);
        for (std::size_t nc = 0; nc < xs_.n * xs_.c; ++nc) {
            const float v = dy.data()[nc] * inv;
            std::fill(dx_.data() + nc * hw, dx_.data() + (nc + 1) * hw, v);
        }
        if (m != nullptr) {
            m->unary(id(), phase::backward_input, op_kind::multiply, fp32, dy.size());
            m->bytes(id(), phase::backward_input, 4 * dy.size(), 4 * dx_.size());
        }
        return dx_;
    }

    void collect_parameters(std::vector<parameter>&) {}
    void save(archive_writer& a) const { a.tag("global_avg_pool/1"); }
    void load(archive_reader& a) { a.expect("global_avg_pool/1"); }

private:
    shape4 xs_{};
    tensor4 y_, dx_, empty_;
};

/// N x C x H x W -> N x (C*H*W) x 1 x 1 (a copy; dense layers also accept 4-d input directly).
class flatten : public layer_base {
public:
    flatten() : layer_base("flatten") {}

    void reset_parameters(rng&) {}
    [[nodiscard]] shape4 output_shape(const shape4& x) const { return {x.n, x.c * x.h * x.w, 1, 1}; }

    const tensor4& forward(context&, const tensor4& x) {
        xs_ = shape_of(x);
        ensure_shape(y_, output_shape(xs_));
        std::copy(x.data(), x.data() + x.size(), y_.data());
        return y_;
    }
    const tensor4& backward(context&, const tensor4& dy) {
        expect_shape(shape_of(dy), shape_of(y_), (name() + ".backward").c_str());
        if (!input_grad()) {
            return empty_;
        }
        ensure_shape(dx_, xs_);
        std::copy(dy.data(), dy.data() + dy.size(), dx_.data());
        return dx_;
    }

    void collect_parameters(std::vector<parameter>&) {}
    void save(archive_writer& a) const { a.tag("flatten/1"); }
    void load(archive_reader& a) { a.expect("flatten/1"); }

private:
    shape4 xs_{};
    tensor4 y_, dx_, empty_;
};

static_assert(layer<max_pool> && layer<avg_pool> && layer<global_avg_pool> && layer<flatten>);

} // namespace frugal

#endif
