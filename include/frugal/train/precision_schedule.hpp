#ifndef FRUGAL_TRAIN_PRECISION_SCHEDULE_HPP
#define FRUGAL_TRAIN_PRECISION_SCHEDULE_HPP

/// @file
/// Precision schedules: what bit widths the quantized layers of a model use
/// at each training step. frugal::fit takes one as its last argument, sets
/// the model's widths before every executed step (set_model_precision) and feeds the step's training loss back; the
/// schedule's state goes into fit's checkpoint, so a resumed run switches at
/// exactly the same steps.
///
/// - `fixed_precision`: one bit_widths for the whole run (the static
///   FW-8/BW-8 baseline, "SBM").
/// - `progressive_precision`: FracTrain's PFQ (SPEC §3.2): stages of rising
///   precision, default forward (weights and activations) 3/4/6/8 and
///   backward (errors) 6/6/8/8. Two ways to advance:
///   - the turning-point indicator: the mean training loss of each chunk of
///     `chunk` executed steps (400 by default) enters a window of the last
///     `window` (5) chunk losses L_1..L_5; when it is full and every
///     |L_i - L_5| / L_scale <= eps (i = 1..4, L_scale the mean chunk loss of
///     the first `scale_chunks` (10) chunks, a running mean until then), the
///     next stage starts, the window is cleared, and eps is multiplied by
///     alpha after the first and second turning points (eps0 0.05, alpha 0.3);
///   - fixed switch steps (`progressive_precision::at_steps`), for budgets
///     too short for the indicator's window (a stage per step range).
/// - `cyclic_precision`: CPT (SPEC §6): the forward width follows
///   ceil(b_min + (b_max - b_min)(1 - cos(pi (t mod T) / T)) / 2) in cycles of
///   T steps; the error width is fixed.
///
/// A schedule is a type with
///   `bit_widths at(std::uint64_t step) const`,
///   `void observe(std::uint64_t step, double loss)` (after an executed step),
///   `void save(archive_writer&) const`, `void load(archive_reader&)`,
///   `std::string describe() const`.

#include <algorithm>
#include <cmath>
#include <concepts>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <string>
#include <vector>

#include "frugal/error.hpp"
#include "frugal/numeric/precision.hpp"
#include "frugal/tensor/serialize.hpp"

namespace frugal {


/// The schedule fit uses when none is given: it never touches the model.
struct no_precision_schedule {
    static constexpr bool active = false;
};

/// What every schedule fit can drive provides: observe, save, load, describe.
template <class S>
concept training_schedule = requires(S& s, const S& cs, std::uint64_t step, double loss, archive_writer& w,
                                     archive_reader& r) {
    s.observe(step, loss);
    cs.save(w);
    s.load(r);
    { cs.describe() } -> std::convertible_to<std::string>;
};

/// A schedule of bit widths: fit sets them on the model (set_model_precision).
template <class S>
concept precision_schedule = training_schedule<S> && requires(const S& cs, std::uint64_t step) {
    { cs.at(step) } -> std::same_as<bit_widths>;
};

/// One precision for the whole run.
class fixed_precision {
public:
    static constexpr bool active = true;
    explicit fixed_precision(bit_widths b = {}) : b_(b) { check_kernel_widths(b, "frugal::fixed_precision"); }
    [[nodiscard]] bit_widths at(std::uint64_t /*step*/) const noexcept { return b_; }
    void observe(std::uint64_t /*step*/, double /*loss*/) noexcept {}
    void save(archive_writer& a) const { a.tag("fixed_precision/1"); }
    void load(archive_reader& a) { a.expect("fixed_precision/1"); }
    [[nodiscard]] std::string describe() const { return "fixed " + b_.name(); }

private:
    bit_widths b_;
};

/// PFQ's turning-point indicator options (SPEC §3.2, defaults §3.3).
struct pfq_indicator {
    std::uint64_t chunk = 400;       ///< executed steps per indicator "epoch"
    std::size_t window = 5;          ///< chunk losses compared
    std::size_t scale_chunks = 10;   ///< chunks whose mean loss is L_scale
    double eps = 0.05;               ///< initial threshold on |L_i - L_last| / L_scale
    double alpha = 0.3;              ///< eps multiplier after turning points 1 and 2
    std::size_t alpha_turns = 2;     ///< how many turning points shrink eps
};

/// PFQ's turning-point indicator (SPEC §3.2): fed the loss of every executed
/// step, it says when the loss has plateaued (see the file comment).
class turning_point_indicator {
public:
    explicit turning_point_indicator(pfq_indicator o = {}, std::size_t max_turns = 3)
        : o_(o), max_(max_turns), eps_(o.eps) {
        if (o_.chunk == 0 || o_.window < 2 || o_.scale_chunks == 0 || !(o_.eps >= 0.0) || !(o_.alpha > 0.0)) {
            throw error(detail::concat("frugal::turning_point_indicator: needs chunk >= 1 (", o_.chunk,
                                       "), window >= 2 (", o_.window, "), scale_chunks >= 1 (", o_.scale_chunks,
                                       "), eps >= 0 (", o_.eps, ") and alpha > 0 (", o_.alpha, ")"));
        }
    }

    /// Feeds the loss of executed step `step`; true when a turning point is
    /// declared (it takes effect from step + 1).
    bool observe(std::uint64_t step, double loss) {
        sum_ += loss;
        if (++in_chunk_ < o_.chunk) {
            return false;
        }
        const double mean = sum_ / static_cast<double>(in_chunk_);
        sum_ = 0.0;
        in_chunk_ = 0;
        if (chunks_ < o_.scale_chunks) { // running mean until scale_chunks chunks are in
            scale_ = (scale_ * static_cast<double>(chunks_) + mean) / static_cast<double>(chunks_ + 1);
        }
        ++chunks_;
        if (turns_.size() >= max_) {
            return false;
        }
        window_.push_back(mean);
        if (window_.size() > o_.window) {
            window_.pop_front();
        }
        if (window_.size() < o_.window) {
            return false;
        }
        const double last = window_.back();
        for (std::size_t i = 0; i + 1 < window_.size(); ++i) {
            if (!(std::fabs(window_[i] - last) / std::max(scale_, 1e-12) <= eps_)) {
                return false;
            }
        }
        turns_.push_back(step + 1);
        window_.clear();
        if (turns_.size() <= o_.alpha_turns) {
            eps_ *= o_.alpha;
        }
        return true;
    }

    /// Steps at which each turning point took effect.
    [[nodiscard]] const std::vector<std::uint64_t>& turning_points() const noexcept { return turns_; }
    /// Turning points in force at `step`.
    [[nodiscard]] std::size_t turns_at(std::uint64_t step) const noexcept {
        return static_cast<std::size_t>(
            std::upper_bound(turns_.begin(), turns_.end(), step) - turns_.begin());
    }
    [[nodiscard]] double eps() const noexcept { return eps_; }
    [[nodiscard]] double loss_scale() const noexcept { return scale_; }
    [[nodiscard]] std::size_t max_turns() const noexcept { return max_; }

    void save(archive_writer& a) const {
        a.tag("turning_point_indicator/1");
        a.u64(max_);
        a.u64(chunks_);
        a.u64(in_chunk_);
        a.f64(sum_);
        a.f64(scale_);
        a.f64(eps_);
        a.u64(window_.size());
        for (double v : window_) {
            a.f64(v);
        }
        a.u64(turns_.size());
        for (auto v : turns_) {
            a.u64(v);
        }
    }
    void load(archive_reader& a) {
        a.expect("turning_point_indicator/1");
        const std::size_t at = a.offset();
        const std::uint64_t max = a.u64();
        if (max != max_) {
            a.fail(at, detail::concat("the checkpoint's schedule allows ", max, " turning points (", max + 1,
                                      " stages), this one ", max_, " (", max_ + 1, " stages)"));
        }
        const std::uint64_t chunks = a.u64(), in_chunk = a.u64();
        const double sum = a.f64(), scale = a.f64(), eps = a.f64();
        const std::uint64_t w = a.u64();
        if (w > o_.window) {
            a.fail(a.offset() - 8, detail::concat("a loss window of ", w, " (at most ", o_.window, "; corrupt)"));
        }
        std::deque<double> window;
        for (std::uint64_t i = 0; i < w; ++i) {
            window.push_back(a.f64());
        }
        const std::uint64_t t = a.u64();
        if (t > max_) {
            a.fail(a.offset() - 8, detail::concat(t, " turning points, at most ", max_, " (corrupt)"));
        }
        std::vector<std::uint64_t> turns(t);
        for (auto& v : turns) {
            v = a.u64();
        }
        chunks_ = chunks;
        in_chunk_ = in_chunk;
        sum_ = sum;
        scale_ = scale;
        eps_ = eps;
        window_ = std::move(window);
        turns_ = std::move(turns);
    }

private:
    pfq_indicator o_;
    std::size_t max_;
    std::uint64_t chunks_ = 0, in_chunk_ = 0;
    double sum_ = 0.0, scale_ = 0.0, eps_;
    std::deque<double> window_;
    std::vector<std::uint64_t> turns_;
};

namespace detail {
/// Throws unless the switch steps increase strictly.
inline void check_increasing(const std::vector<std::uint64_t>& switches, const char* where) {
    for (std::size_t i = 1; i < switches.size(); ++i) {
        if (switches[i] <= switches[i - 1]) {
            throw error(concat(where, ": switch steps must increase (", switches[i - 1], " then ", switches[i], ")"));
        }
    }
}
} // namespace detail

/// FracTrain's progressive fractional quantization (see the file comment).
class progressive_precision {
public:
    static constexpr bool active = true;

    /// The stages of SPEC §3.3: forward 3/4/6/8, backward 6/6/8/8.
    [[nodiscard]] static std::vector<bit_widths> default_stages() {
        return {{3, 3, 6}, {4, 4, 6}, {6, 6, 8}, {8, 8, 8}};
    }

    /// Stages switched by the turning-point indicator.
    explicit progressive_precision(std::vector<bit_widths> stages = default_stages(), pfq_indicator ind = {})
        : stages_(std::move(stages)), ind_(ind, stages_.empty() ? 0 : stages_.size() - 1) {
        check_stages();
    }

    /// Stages switched at fixed steps: stage i + 1 starts at `switches[i]`
    /// (increasing, one fewer than the stages).
    [[nodiscard]] static progressive_precision at_steps(std::vector<bit_widths> stages,
                                                        std::vector<std::uint64_t> switches) {
        progressive_precision p(std::move(stages));
        if (switches.size() + 1 != p.stages_.size()) {
            throw error(detail::concat("frugal::progressive_precision::at_steps: ", p.stages_.size(),
                                       " stages need ", p.stages_.size() - 1, " switch steps, got ", switches.size()));
        }
        detail::check_increasing(switches, "frugal::progressive_precision::at_steps");
        p.switches_ = std::move(switches);
        p.fixed_steps_ = true;
        return p;
    }

    [[nodiscard]] bit_widths at(std::uint64_t step) const noexcept { return stages_[stage_at(step)]; }

    /// The stage (0-based) in force at `step`.
    [[nodiscard]] std::size_t stage_at(std::uint64_t step) const noexcept {
        if (!fixed_steps_) {
            return ind_.turns_at(step);
        }
        return static_cast<std::size_t>(std::upper_bound(switches_.begin(), switches_.end(), step) -
                                        switches_.begin());
    }

    void observe(std::uint64_t step, double loss) {
        if (!fixed_steps_) {
            (void)ind_.observe(step, loss);
        }
    }

    [[nodiscard]] const std::vector<bit_widths>& stages() const noexcept { return stages_; }
    /// Steps at which each turning point took effect (indicator mode).
    [[nodiscard]] const std::vector<std::uint64_t>& turning_points() const noexcept { return ind_.turning_points(); }
    [[nodiscard]] double eps() const noexcept { return ind_.eps(); }
    [[nodiscard]] double loss_scale() const noexcept { return ind_.loss_scale(); }
    [[nodiscard]] bool fixed_steps() const noexcept { return fixed_steps_; }

    [[nodiscard]] std::string describe() const {
        std::string s = fixed_steps_ ? "progressive (fixed steps) " : "progressive (turning points) ";
        for (std::size_t i = 0; i < stages_.size(); ++i) {
            s += (i ? " -> " : "") + stages_[i].name();
        }
        return s;
    }

    void save(archive_writer& a) const {
        a.tag("progressive_precision/2");
        ind_.save(a);
    }
    void load(archive_reader& a) {
        a.expect("progressive_precision/2");
        ind_.load(a);
    }

private:
    void check_stages() const {
        if (stages_.empty()) {
            throw error("frugal::progressive_precision: give at least one stage");
        }
        for (std::size_t i = 0; i < stages_.size(); ++i) {
            check_kernel_widths(stages_[i], detail::concat("frugal::progressive_precision: stage ", i + 1));
        }
    }

    std::vector<bit_widths> stages_;
    turning_point_indicator ind_;
    std::vector<std::uint64_t> switches_;
    bool fixed_steps_ = false;
};

/// FracTrain = DFQ whose cost target rises at each PFQ turning point (SPEC
/// §3.2): target(t) = target0 + step x (turning points before t), at most
/// `turns` of them (1.5% + 0.5% per turning point, 3 of them, by default).
/// `Stack` is the model's dynamic_precision stack (anything with
/// set_target(float)); the schedule sets its target before every step.
template <class Stack>
class rising_target {
public:
    static constexpr bool active = true;

    explicit rising_target(Stack& stack, float target0 = 1.5f, float step = 0.5f, std::size_t turns = 3,
                           pfq_indicator ind = {})
        : stack_(&stack), t0_(target0), dt_(step), ind_(ind, turns) {
        if (!std::isfinite(target0) || !std::isfinite(step) || target0 < 0.0f || step < 0.0f) {
            throw error(detail::concat("frugal::rising_target: target (", target0, ") and step (", step,
                                       ") must be finite and >= 0"));
        }
    }

    /// The target raised at fixed steps instead of turning points: by `step` at each of `switches`
    /// (increasing), as progressive_precision::at_steps switches its stages.
    [[nodiscard]] static rising_target at_steps(Stack& stack, float target0, float step,
                                                std::vector<std::uint64_t> switches) {
        rising_target r(stack, target0, step, switches.size());
        detail::check_increasing(switches, "frugal::rising_target::at_steps");
        r.switches_ = std::move(switches);
        r.fixed_steps_ = true;
        return r;
    }

    [[nodiscard]] float target_at(std::uint64_t step) const noexcept {
        const std::size_t turns =
            fixed_steps_ ? static_cast<std::size_t>(std::upper_bound(switches_.begin(), switches_.end(), step) -
                                                    switches_.begin())
                         : ind_.turns_at(step);
        return t0_ + dt_ * static_cast<float>(turns);
    }
    template <class Model>
    void apply(Model& /*model*/, std::uint64_t step) {
        stack_->set_target(target_at(step));
    }
    void observe(std::uint64_t step, double loss) {
        if (!fixed_steps_) {
            (void)ind_.observe(step, loss);
        }
    }
    [[nodiscard]] const std::vector<std::uint64_t>& turning_points() const noexcept { return ind_.turning_points(); }
    [[nodiscard]] bool fixed_steps() const noexcept { return fixed_steps_; }
    [[nodiscard]] std::string describe() const {
        if (fixed_steps_) {
            return detail::concat("FracTrain: DFQ target cp ", t0_, "% + ", dt_, "% at each of ", switches_.size(),
                                  " fixed steps");
        }
        return detail::concat("FracTrain: DFQ target cp ", t0_, "% + ", dt_, "% per PFQ turning point (at most ",
                              ind_.max_turns(), ")");
    }
    void save(archive_writer& a) const {
        a.tag("rising_target/1");
        ind_.save(a);
    }
    void load(archive_reader& a) {
        a.expect("rising_target/1");
        ind_.load(a);
    }

private:
    Stack* stack_;
    float t0_, dt_;
    turning_point_indicator ind_;
    std::vector<std::uint64_t> switches_;
    bool fixed_steps_ = false;
};

/// CPT's cyclic precision (SPEC §6): forward widths (activations and
/// weights) cycle between b_min and b_max every `cycle` steps; errors fixed.
class cyclic_precision {
public:
    static constexpr bool active = true;

    cyclic_precision(int b_min, int b_max, std::uint64_t cycle, int error_bits = 8)
        : lo_(b_min), hi_(b_max), cycle_(cycle), err_(error_bits) {
        if (b_min < 2 || b_max > 8 || b_min > b_max || error_bits < 2 || error_bits > max_error_bits || cycle == 0) {
            throw error(detail::concat("frugal::cyclic_precision: needs 2 <= b_min (", b_min, ") <= b_max (", b_max,
                                       ") <= 8, error bits in [2, 16] (", error_bits, ") and a cycle of >= 1 step (",
                                       cycle, ")"));
        }
    }

    /// The forward width at `step`.
    [[nodiscard]] int forward_bits(std::uint64_t step) const noexcept {
        const double t = static_cast<double>(step % cycle_) / static_cast<double>(cycle_);
        const double b = lo_ + 0.5 * (hi_ - lo_) * (1.0 - std::cos(3.141592653589793 * t));
        // ceil, guarded against 4.0000000001 from the cosine
        return std::clamp(static_cast<int>(std::ceil(b - 1e-9)), lo_, hi_);
    }
    [[nodiscard]] bit_widths at(std::uint64_t step) const noexcept {
        const int b = forward_bits(step);
        return {b, b, err_};
    }
    void observe(std::uint64_t /*step*/, double /*loss*/) noexcept {}
    void save(archive_writer& a) const { a.tag("cyclic_precision/1"); }
    void load(archive_reader& a) { a.expect("cyclic_precision/1"); }
    [[nodiscard]] std::string describe() const {
        return detail::concat("cyclic ", lo_, "..", hi_, " bits forward every ", cycle_, " steps, errors ", err_,
                              " bits");
    }

private:
    int lo_, hi_;
    std::uint64_t cycle_;
    int err_;
};

static_assert(precision_schedule<fixed_precision>);
static_assert(precision_schedule<progressive_precision>);
static_assert(precision_schedule<cyclic_precision>);

} // namespace frugal

#endif
