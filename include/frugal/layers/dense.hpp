#ifndef FRUGAL_LAYERS_DENSE_HPP
#define FRUGAL_LAYERS_DENSE_HPP

/// @file
/// frugal::dense: fully connected layer, y = x W^T + b, with W of shape
/// [out, in]. Accepts any N x C x H x W input with C*H*W == in (it flattens
/// implicitly) and produces N x out x 1 x 1.

#include <cstddef>
#include <vector>

#include "frugal/layers/layer.hpp"
#include "frugal/tensor/kernels/gemm.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

class dense : public layer_base {
public:
    dense(std::size_t in, std::size_t out, bool bias = true)
        : layer_base("dense"), in_(in), out_(out), bias_(bias), w_(tensor2::from_shape({out, in})),
          dw_(tensor2::from_shape({out, in})), b_(tensor1::from_shape({bias ? out : 0})),
          db_(tensor1::from_shape({bias ? out : 0})) {
        if (in == 0 || out == 0) {
            throw error(detail::concat("frugal::dense: sizes must be positive (in ", in, ", out ", out, ")"));
        }
        w_.fill(0.0f);
        b_.fill(0.0f);
    }

    [[nodiscard]] std::size_t in_features() const noexcept { return in_; }
    [[nodiscard]] std::size_t out_features() const noexcept { return out_; }
    [[nodiscard]] tensor2& weight() noexcept { return w_; }
    [[nodiscard]] const tensor2& weight() const noexcept { return w_; }
    [[nodiscard]] tensor1& bias() noexcept { return b_; }
    [[nodiscard]] const tensor1& bias() const noexcept { return b_; }
    [[nodiscard]] bool has_bias() const noexcept { return bias_; }

    void reset_parameters(rng& g) {
        he_normal(w_, in_, g);
        b_.fill(0.0f);
    }

    [[nodiscard]] shape4 output_shape(const shape4& x) const {
        check(x);
        return {x.n, out_, 1, 1};
    }

    const tensor4& forward(context& ctx, const tensor4& x) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        const shape4 xs = shape_of(x);
        check(xs);
        ensure_shape(y_, {xs.n, out_, 1, 1});
        x_ = &x;
        parallel_chunks(xs.n, [&](std::size_t b, std::size_t e, int) {
            kernels::sgemm_nt(e - b, out_, in_, 1.0f, x.data() + b * in_, in_, w_.data(), in_, 0.0f,
                              y_.data() + b * out_, out_);
            if (bias_) {
                for (std::size_t n = b; n < e; ++n) {
                    for (std::size_t o = 0; o < out_; ++o) {
                        y_.data()[n * out_ + o] += b_(o);
                    }
                }
            }
        });
        if (m != nullptr) {
            m->mac(id(), phase::forward, fp32, fp32, static_cast<std::uint64_t>(xs.n) * in_ * out_);
            if (bias_) {
                m->unary(id(), phase::forward, op_kind::add, fp32, static_cast<std::uint64_t>(xs.n) * out_);
            }
            m->bytes(id(), phase::forward, 4 * (x.size() + w_.size() + b_.size()), 4 * y_.size());
        }
        return y_;
    }

    const tensor4& backward(context& ctx, const tensor4& dy) {
        cost_meter* m = meter(ctx);
        if (x_ == nullptr) {
            throw error(detail::concat(name(), ": backward called before forward"));
        }
        const tensor4& x = *x_;
        const std::size_t n = x.shape()[0];
        expect_shape(shape_of(dy), {n, out_, 1, 1}, (name() + ".backward").c_str());
        {
            scoped_timer timer(m, slot(), phase::weight_gradient);
            dyt_.resize(out_ * n);
            kernels::transpose(n, out_, dy.data(), out_, dyt_.data(), n);
            parallel_chunks(out_, [&](std::size_t b, std::size_t e, int) {
                kernels::sgemm(e - b, in_, n, 1.0f, dyt_.data() + b * n, n, x.data(), in_, 0.0f, dw_.data() + b * in_,
                               in_);
                for (std::size_t o = b; o < e && bias_; ++o) {
                    float s = 0.0f;
                    for (std::size_t i = 0; i < n; ++i) {
                        s += dyt_[o * n + i];
                    }
                    db_(o) = s;
                }
            });
            if (m != nullptr) {
                m->mac(id(), phase::weight_gradient, fp32, fp32, static_cast<std::uint64_t>(n) * in_ * out_);
                if (bias_) {
                    m->unary(id(), phase::weight_gradient, op_kind::add, fp32, static_cast<std::uint64_t>(n) * out_);
                }
                m->bytes(id(), phase::weight_gradient, 4 * (x.size() + dy.size()), 4 * (w_.size() + b_.size()));
            }
        }
        if (!input_grad()) {
            return empty_;
        }
        scoped_timer timer(m, slot(), phase::backward_input);
        ensure_shape(dx_, shape_of(x));
        parallel_chunks(n, [&](std::size_t b, std::size_t e, int) {
            kernels::sgemm(e - b, in_, out_, 1.0f, dy.data() + b * out_, out_, w_.data(), in_, 0.0f,
                           dx_.data() + b * in_, in_);
        });
        if (m != nullptr) {
            m->mac(id(), phase::backward_input, fp32, fp32, static_cast<std::uint64_t>(n) * in_ * out_);
            m->bytes(id(), phase::backward_input, 4 * (dy.size() + w_.size()), 4 * dx_.size());
        }
        return dx_;
    }

    void collect_parameters(std::vector<parameter>& ps) {
        add_parameter(ps, "weight", span_of(w_), span_of(dw_), param_role::weight, true);
        if (bias_) {
            add_parameter(ps, "bias", span_of(b_), span_of(db_), param_role::bias, true);
        }
    }

    void save(archive_writer& a) const {
        a.tag("dense/1");
        a.u64(in_);
        a.u64(out_);
        a.u32(bias_ ? 1 : 0);
        a.tensor(w_);
        a.tensor(b_);
    }
    void load(archive_reader& a) {
        a.expect("dense/1");
        const std::size_t at = a.offset();
        const std::uint64_t in = a.u64(), out = a.u64();
        const bool bias = a.u32() != 0;
        if (in != in_ || out != out_ || bias != bias_) {
            a.fail(at, detail::concat(name(), ": the checkpoint holds dense(", in, "->", out, ") but the model has dense(",
                                      in_, "->", out_, ")"));
        }
        a.tensor(w_, name() + ".weight");
        a.tensor(b_, name() + ".bias");
    }

private:
    void check(const shape4& x) const {
        if (x.c * x.h * x.w != in_) {
            throw shape_error(detail::concat(name(), ": dense(", in_, "->", out_, ") needs ", in_,
                                             " features per sample, got an input of shape ", to_string(x)));
        }
    }

    std::size_t in_, out_;
    bool bias_;
    tensor2 w_, dw_;
    tensor1 b_, db_;
    tensor4 y_, dx_, empty_;
    const tensor4* x_ = nullptr;
    std::vector<float> dyt_;
};

static_assert(layer<dense>);

} // namespace frugal

#endif
