#ifndef FRUGAL_LAYERS_BLOCK_STACK_HPP
#define FRUGAL_LAYERS_BLOCK_STACK_HPP

/// @file
/// frugal::detail::block_stack: what a gated stack of residual blocks is
/// beside its forward and backward: the blocks, one gate unit per block, the
/// recurrent gate they share, a name and the input-gradient flag, with
/// naming, initialisation and shapes. `gated` (SLU: the gate decides whether
/// a block runs) and `dynamic_precision` (DFQ: the gate picks a block's bit
/// widths) derive from it.

#include <string>
#include <utility>
#include <vector>

#include "frugal/layers/layer.hpp"
#include "frugal/numeric/random.hpp"

namespace frugal::detail {

template <class Block, class Unit, class Gate>
class block_stack {
public:
    /// Names the blocks prefix.0, prefix.1, ..., their units prefix.i.gate_unit and the gate prefix.gate.
    void set_name(std::string prefix) {
        name_ = std::move(prefix);
        for (std::size_t i = 0; i < blocks_.size(); ++i) {
            blocks_[i].set_name(child_name(name_, std::to_string(i)));
            units_[i].set_name(child_name(name_, std::to_string(i) + ".gate_unit"));
        }
        gate_.set_name(child_name(name_, "gate"));
    }
    [[nodiscard]] const std::string& name() const noexcept { return name_; }
    /// Whether the stack's input needs a gradient; every later block's always does.
    void set_input_grad(bool on) {
        input_grad_ = on;
        for (std::size_t i = 0; i < blocks_.size(); ++i) {
            blocks_[i].set_input_grad(i == 0 ? on : true);
        }
    }
    void reset_parameters(rng& g) {
        for (auto& b : blocks_) {
            b.reset_parameters(g);
        }
        for (auto& u : units_) {
            u.reset_parameters(g);
        }
        gate_.reset_parameters(g);
    }
    [[nodiscard]] shape4 output_shape(shape4 s) const {
        for (const auto& b : blocks_) {
            s = b.output_shape(s);
        }
        return s;
    }

protected:
    explicit block_stack(Gate gate) : gate_(std::move(gate)) {}

    std::vector<Block> blocks_;
    std::vector<Unit> units_;
    Gate gate_;
    std::string name_;
    bool input_grad_ = true;
};

} // namespace frugal::detail

#endif
