// frugal::recipe: the techniques resolve to the expected types at compile
// time, and a combined recipe (SMD + SLU + PFQ + signSGD) trains: batches
// are dropped, blocks skipped, the precision rises at the given steps, the
// meter counts low-precision MACs, and the loss falls.

#include <doctest/doctest.h>

#include <cmath>
#include <map>
#include <string>
#include <type_traits>
#include <vector>

#include <frugal/cost/energy.hpp>
#include <frugal/data/batch.hpp>
#include <frugal/data/fashion_mnist.hpp>
#include <frugal/train/recipe.hpp>
#include <frugal/train/trainer.hpp>

namespace fr = frugal;
namespace tq = frugal::technique;

// the FP32 default
using base = fr::recipe<>;
static_assert(std::is_same_v<base::model_type, fr::cifar_resnet_t<fr::basic_block<>>>);
static_assert(std::is_same_v<base::optimizer_type, fr::optimizer<fr::exact_gradient, fr::sgd>>);
static_assert(std::is_same_v<base::sampler_type, fr::every_batch>);
static_assert(std::is_same_v<base::schedule_type, fr::no_precision_schedule>);
// every level at once: blocks, stack, sampler, schedule, update rule
using all = fr::recipe<tq::smd, tq::slu, tq::pfq, tq::signsgd>;
static_assert(std::is_same_v<all::model_type, fr::gated_cifar_resnet_t<fr::basic_block<fr::quantized_conv_maker>>>);
static_assert(std::is_same_v<all::optimizer_type, fr::optimizer<fr::exact_gradient, fr::signsgd>>);
static_assert(std::is_same_v<all::sampler_type, fr::stochastic_drop>);
static_assert(std::is_same_v<all::schedule_type, fr::progressive_precision>);
// the order of the tags does not matter
static_assert(std::is_same_v<fr::recipe<tq::signsgd, tq::pfq, tq::slu, tq::smd>::model_type, all::model_type>);
// PSG with the slimming penalty: the penalty wraps PSG's sign rule
using psg_slim = fr::recipe<tq::psg, tq::slimming>;
static_assert(std::is_same_v<psg_slim::model_type, fr::cifar_resnet_t<fr::basic_block<fr::psg_conv_maker>>>);
static_assert(std::is_same_v<psg_slim::optimizer_type, fr::optimizer<fr::slimming<fr::predictive_sign>, fr::sgd>>);
// static 8-bit, and ShiftAddNet with its configuration
static_assert(std::is_same_v<fr::recipe<tq::fractrain8>::schedule_type, fr::fixed_precision>);
using sa = fr::recipe<tq::shiftadd<fr::shiftadd_config<fr::adder_precision::fix8>>, tq::slu>;
static_assert(std::is_same_v<sa::block, fr::basic_block<fr::shift_add_maker<fr::shiftadd_config<fr::adder_precision::fix8>>>>);

TEST_SUITE("train") {

TEST_CASE("recipe names list their techniques") {
    CHECK(base::name() == "fp32");
    CHECK(all::name() == "smd+slu+pfq+signsgd");
    CHECK(psg_slim::name() == "psg+slimming");
    CHECK(sa::name() == "slu+shiftadd");
}

TEST_CASE("recipe rejects PFQ switch points outside the run") {
    fr::recipe_options o;
    o.pfq_switch_at = {0.4, 1.5, 0.9};
    CHECK_THROWS_WITH_AS((void)all::make_schedule(o, 100), doctest::Contains("(0, 1), not 1.5"), fr::error);
    o.pfq_switch_at = {0.4, 0.7};
    CHECK_THROWS_WITH_AS((void)all::make_schedule(o, 100), doctest::Contains("need 3 switch steps, got 2"), fr::error);
}

TEST_CASE("recipe passes SMD's drop probability and its mode on dropped batches to the sampler") {
    using smd = fr::recipe<tq::smd>;
    fr::recipe_options o;
    o.drop_probability = 0.25;
    const auto quiet = smd::make_sampler(o);
    CHECK(quiet.p() == doctest::Approx(0.25));
    CHECK_FALSE(quiet.step_when_dropped()); // the default: a dropped batch does nothing
    o.smd_momentum_step = true;
    CHECK(smd::make_sampler(o).step_when_dropped());
}

TEST_CASE("recipe passes PSG's sign scope to its gradient rule, inside the slimming penalty too") {
    using psg = fr::recipe<tq::psg>;
    fr::recipe_options o;
    o.depth = 8;
    auto net = psg::make_model(o);
    auto opt = psg::make_optimizer(fr::parameters_of(net), o);
    CHECK(opt.gradient_rule().scope == fr::sign_scope::all); // the default: signSGD's form
    o.psg_scope = fr::sign_scope::weights;
    auto opt_w = psg::make_optimizer(fr::parameters_of(net), o);
    CHECK(opt_w.gradient_rule().scope == fr::sign_scope::weights);
    auto slim = psg_slim::make_model(o);
    auto opt_s = psg_slim::make_optimizer(fr::parameters_of(slim), o);
    CHECK(opt_s.gradient_rule().inner.scope == fr::sign_scope::weights);
    // the rule acts on the scope: a batch-norm scale's gradient stays exact, a weight's is signed
    fr::parameter bn_scale, weight;
    bn_scale.role = fr::param_role::bn_scale;
    weight.role = fr::param_role::weight;
    std::vector<float> g{0.25f, -0.5f, 0.0f};
    opt_w.gradient_rule().apply(bn_scale, g);
    CHECK(g == std::vector<float>{0.25f, -0.5f, 0.0f});
    opt_w.gradient_rule().apply(weight, g);
    CHECK(g == std::vector<float>{1.0f, -1.0f, 0.0f});
    g = {0.25f, -0.5f, 0.0f};
    opt.gradient_rule().apply(bn_scale, g);
    CHECK(g == std::vector<float>{1.0f, -1.0f, 0.0f});
}

TEST_CASE("a combined recipe trains: batches dropped, blocks skipped, precision rising, loss falling") {
    const auto train_set = fr::subset(fr::load_fashion_mnist(fr::data_split::train), 256, 2);
    fr::batch_options bo;
    bo.batch_size = 32;
    bo.seed = 3;
    fr::batch_loader loader(train_set, fr::normalization::from_dataset(train_set), bo);
    fr::recipe_options ro;
    ro.depth = 8;
    ro.seed = 5;
    ro.slu.target_exec = 0.5f;
    ro.pfq_switch_at = {0.25, 0.5, 0.75};
    const std::uint64_t epochs = 4, iters = epochs * loader.batches_per_epoch(); // 32 nominal steps
    auto net = all::make_model(ro);
    auto opt = all::make_optimizer(fr::parameters_of(net), ro);
    auto sched = all::make_schedule(ro, iters);
    fr::fit_options o;
    o.epochs = epochs;
    o.progress = false;
    o.seed = 5;
    o.schedule = fr::lr_schedule::constant(0.01f);
    const auto r = fr::fit(net, opt, loader, nullptr, o, all::make_sampler(ro), &sched);
    REQUIRE(r.history.size() == epochs);
    std::uint64_t executed = 0, nominal = 0;
    for (const auto& e : r.history) {
        executed += e.executed;
        nominal += e.nominal;
    }
    CHECK(nominal == iters);
    // SMD at p = 0.5: binomial(32, 0.5) within 4 standard deviations (4 * 2.83 = 11.3)
    CHECK(executed >= 5);
    CHECK(executed <= 27);
    // PFQ: the last stage runs from step 24 on
    CHECK(sched.at(0) == fr::bit_widths{3, 3, 6});
    CHECK(sched.at(iters - 1) == fr::bit_widths{8, 8, 8});
    // the block convolutions ran on the integer kernels, at several widths
    const auto ops = r.meter.all_ops();
    int narrow = 0;
    for (const auto& [k, n] : ops) {
        if (k.kind == fr::op_kind::mac && !k.a.floating && k.a.bits < 8 && n > 0) {
            ++narrow;
        }
    }
    CHECK(narrow > 0);
    // the gates skipped blocks: in the last training forward, not every (block, sample) pair ran
    const double share = net.get<2>().executed_share();
    CHECK(share < 0.95);
    // and it learned: the last epoch's loss is below the first one's
    MESSAGE("loss " << r.history.front().train_loss << " -> " << r.history.back().train_loss << ", executed "
                    << executed << " of " << nominal << " batches, gated pairs executed " << share);
    CHECK(r.history.back().train_loss < r.history.front().train_loss);
    CHECK(std::isfinite(r.history.back().train_loss));
}

} // TEST_SUITE
