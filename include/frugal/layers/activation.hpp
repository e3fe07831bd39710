#ifndef FRUGAL_LAYERS_ACTIVATION_HPP
#define FRUGAL_LAYERS_ACTIVATION_HPP

/// @file
/// frugal::relu: y = max(x, 0); dx = dy where y > 0.

#include <cstddef>
#include <vector>

#include "frugal/layers/layer.hpp"
#include "frugal/numeric/simd.hpp"
#include "frugal/tensor/kernels/elementwise.hpp"
#include "frugal/tensor/parallel.hpp"

namespace frugal {

class relu : public layer_base {
public:
    relu() : layer_base("relu") {}

    void reset_parameters(rng&) {}
    [[nodiscard]] shape4 output_shape(const shape4& x) const { return x; }

    const tensor4& forward(context& ctx, const tensor4& x) {
        cost_meter* m = meter(ctx);
        scoped_timer timer(m, slot(), phase::forward);
        ensure_shape(y_, shape_of(x));
        apply(x.data(), y_.data(), x.size());
        if (m != nullptr) {
            m->unary(id(), phase::forward, op_kind::compare, fp32, x.size());
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
        ensure_shape(dx_, shape_of(dy));
        gate(y_.data(), dy.data(), dx_.data(), dy.size());
        if (m != nullptr) {
            m->unary(id(), phase::backward_input, op_kind::compare, fp32, dy.size());
            m->bytes(id(), phase::backward_input, 8 * dy.size(), 4 * dx_.size());
        }
        return dx_;
    }

    void collect_parameters(std::vector<parameter>&) {}
    void save(archive_writer& a) const { a.tag("relu/1"); }
    void load(archive_reader& a) { a.expect("relu/1"); }

    /// out = max(in, 0), vectorized and spread over the threads.
    static void apply(const float* in, float* out, std::size_t n) {
        parallel_chunks(n, [&](std::size_t b, std::size_t e, int) {
            using simd::fbatch;
            std::size_t i = b;
            const fbatch zero(0.0f);
            for (; i + simd::width <= e; i += simd::width) {
                xsimd::max(fbatch::load_unaligned(in + i), zero).store_unaligned(out + i);
            }
            for (; i < e; ++i) {
                out[i] = in[i] > 0.0f ? in[i] : 0.0f;
            }
        });
    }
    /// dx = dy where y > 0, else 0.
    static void gate(const float* y, const float* dy, float* dx, std::size_t n) {
        parallel_spans(n, 16384, [&](std::size_t b, std::size_t e) { kernels::relu_gate(y + b, dy + b, dx + b, e - b); });
    }

private:
    tensor4 y_, dx_, empty_;
};

static_assert(layer<relu>);

} // namespace frugal

#endif
