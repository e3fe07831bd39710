// frugal::svg: charts and bar charts composed into files that a small XML
// checker (written here, no external tool) accepts; one group per series;
// NaN, infinite and non-positive-on-log points left out; text escaped; nice
// ticks; errors for bad input and unwritable paths.

#include <doctest/doctest.h>

#include <cctype>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <set>
#include <string>
#include <string_view>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <frugal/cost/svg.hpp>

#include "cost/xml_check.hpp"
#include "temp_dir.hpp"

namespace fr = frugal;
namespace svg = frugal::svg;

using test::read_text;
using test::temp_dir;

namespace {



bool contains(std::string_view s, std::string_view part) { return s.find(part) != std::string_view::npos; }

std::size_t count(std::string_view s, std::string_view part) {
    std::size_t n = 0;
    for (std::size_t at = s.find(part); at != std::string_view::npos; at = s.find(part, at + part.size())) {
        ++n;
    }
    return n;
}

using xmlcheck::xml_error;

/// The `<g class="series" ...>...</g>` groups of `doc`, in order (series
/// groups hold no nested group).
std::vector<std::string> series_groups(std::string_view doc) {
    std::vector<std::string> groups;
    for (std::size_t at = doc.find("<g class=\"series\""); at != std::string_view::npos;
         at = doc.find("<g class=\"series\"", at + 1)) {
        const auto end = doc.find("</g>", at);
        REQUIRE(end != std::string_view::npos);
        groups.emplace_back(doc.substr(at, end + 4 - at));
    }
    return groups;
}

svg::chart loss_chart() {
    svg::chart c("training loss", "epoch", "loss");
    std::vector<double> epochs, a, b, d;
    for (int e = 0; e < 30; ++e) {
        epochs.push_back(e);
        a.push_back(2.3 * std::exp(-0.1 * e) + 0.05);
        b.push_back(2.3 * std::exp(-0.08 * e) + 0.1);
        d.push_back(2.3 * std::exp(-0.12 * e) + 0.02);
    }
    c.add({"fp32", epochs, a});
    c.add({"int8", epochs, b, svg::series::style::line_points});
    c.add({"gated", epochs, d, svg::series::style::points, "#ff00ff"});
    return c;
}

svg::bar_chart energy_chart() {
    svg::bar_chart c("energy per layer", "layer", "energy (J)");
    c.set_categories({"stem.conv", "stage1.block1.conv1", "stage1.block1.conv2", "stage2.block1.shortcut", "head.fc"});
    c.add("forward", {1.0, 2.5, 2.5, 0.3, 0.1});
    c.add("backward_input", {0.0, 2.4, 2.4, 0.3, 0.1});
    c.add("weight_gradient", {1.1, 2.6, 2.6, 0.35, 0.12});
    c.add("update", {0.01, 0.02, 0.02, 0.01, 0.001});
    return c;
}

} // namespace

TEST_SUITE("cost/svg") {

TEST_CASE("the xml checker accepts well-formed and rejects malformed documents") {
    CHECK(xml_error("<?xml version=\"1.0\"?>\n<a x=\"1\" y='2'><b/>t &amp; &#233; &#xE9;<!-- c --><c></c></a>\n") ==
          "");
    const std::vector<std::string> bad = {
        "<a><b></a></b>", "<a>",          "<a></b>",      "<a x=1/>",        "<a x=\"1\" x=\"2\"/>",
        "<a>&</a>",       "<a>&foo;</a>", "<a>x < y</a>", "<a/><b/>",        "text<a/>",
        "<a x=\"<\"/>",   "<a x=\"1\"",   "",             "<a>\x01</a>",     "<1a/>",
        "<a x=\"&\"/>",   "<a>]]></a>",   "<a></a >x",    "<a x=\"1\"y=\"2\"/>",
    };
    for (const auto& doc : bad) {
        INFO("document: " << doc);
        CHECK_FALSE(xml_error(doc).empty());
    }
}

TEST_CASE("a two-panel file is well-formed and has one group per series") {
    temp_dir dir;
    const auto file = dir / "summary.svg";
    svg::write(file, {loss_chart(), energy_chart()}, 2);
    const std::string doc = read_text(file);
    INFO(doc.substr(0, 400));
    const std::string error = xml_error(doc);
    CHECK_MESSAGE(error.empty(), error);
    CHECK(doc.rfind("<?xml version=\"1.0\"", 0) == 0);
    CHECK(contains(doc, "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"1280\" height=\"400\""));
    CHECK(contains(doc, "font-family=\"sans-serif\" font-size=\"12\""));
    CHECK(count(doc, "class=\"series\"") == 7);
    // the line chart first, then the bar chart
    const auto chart_at = doc.find("<g class=\"chart\"");
    const auto bars_at = doc.find("<g class=\"bar-chart\"");
    REQUIRE(chart_at != std::string::npos);
    REQUIRE(bars_at != std::string::npos);
    REQUIRE(chart_at < bars_at);
    CHECK(count(std::string_view(doc).substr(chart_at, bars_at - chart_at), "class=\"series\"") == 3);
    CHECK(count(std::string_view(doc).substr(bars_at), "class=\"series\"") == 4);
    CHECK(contains(doc, "translate(640,0)"));
    const auto groups = series_groups(doc);
    REQUIRE(groups.size() == 7);
    CHECK(contains(groups[0], "data-name=\"fp32\""));
    CHECK(contains(groups[0], "data-points=\"30\""));
    CHECK(contains(groups[0], "stroke=\"#0072B2\"")); // first palette color
    CHECK(count(groups[0], "<circle") == 0);           // a plain line has no markers
    CHECK(count(groups[1], "<rect") == 30);             // line and square markers
    CHECK(count(groups[2], "<path") == 30);             // triangles only, no line
    CHECK(contains(groups[2], "#ff00ff"));              // its own color
    CHECK(contains(groups[3], "data-name=\"forward\""));
    CHECK(count(groups[3], "<rect") == 5);
    CHECK(count(groups[4], "<rect") == 4); // a zero value draws no bar
    CHECK(contains(groups[6], "data-name=\"update\""));
    // every series in the legends, every category on the axis
    for (const char* name : {"fp32", "int8", "gated", "forward", "backward_input", "weight_gradient", "update"}) {
        CHECK(count(doc, std::string(">") + name + "</text>") == 1);
    }
    CHECK(contains(doc, "rotate(-45)")); // long layer names
    CHECK(contains(doc, ">training loss</text>"));
    CHECK(contains(doc, ">energy (J)</text>"));
    CHECK_FALSE(contains(doc, "nan"));
    CHECK_FALSE(contains(doc, "inf"));
    // no temporary file is left behind
    std::size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
        (void)e;
        ++files;
    }
    CHECK(files == 1);
}

TEST_CASE("panels fill a grid row by row") {
    const std::string doc = svg::document({loss_chart(), energy_chart(), loss_chart()}, 2, 300, 200);
    CHECK(xml_error(doc).empty());
    CHECK(contains(doc, "width=\"600\" height=\"400\""));
    CHECK(contains(doc, "translate(0,0)"));
    CHECK(contains(doc, "translate(300,0)"));
    CHECK(contains(doc, "translate(0,200)"));
    CHECK(count(doc, "class=\"series\"") == 10);
    const std::string column = svg::document({loss_chart(), energy_chart()});
    CHECK(contains(column, "width=\"640\" height=\"800\""));
    CHECK_THROWS_AS((void)svg::document({}), fr::error);
    CHECK_THROWS_AS((void)svg::document({loss_chart()}, 0), fr::error);
    CHECK_THROWS_AS((void)svg::document({loss_chart()}, 1, 0.0, 100.0), fr::error);
}

TEST_CASE("NaN infinite and non-positive log values are left out") {
    const double nan = std::numeric_limits<double>::quiet_NaN();
    const double inf = std::numeric_limits<double>::infinity();
    SUBCASE("NaN and infinities on linear axes") {
        svg::chart c("with holes");
        c.add({"holes", {0, 1, 2, 3, 4, 5}, {1, nan, 3, inf, 5, -inf}, svg::series::style::line_points});
        c.add({"x holes", {nan, 1, 2}, {1, 2, 3}});
        const std::string doc = svg::document({c});
        CHECK(xml_error(doc).empty());
        const auto groups = series_groups(doc);
        REQUIRE(groups.size() == 2);
        CHECK(contains(groups[0], "data-points=\"3\""));
        CHECK(count(groups[0], "<circle") == 3);
        CHECK(count(groups[0], " M") == 2); // the line breaks at the holes: 3 runs, 1 + 2 moves
        CHECK(contains(groups[1], "data-points=\"2\""));
        CHECK_FALSE(contains(doc, "nan"));
        CHECK_FALSE(contains(doc, "inf"));
        CHECK_FALSE(contains(doc, "no data"));
    }
    SUBCASE("zeros and negatives on log axes") {
        svg::chart c("log", "step", "loss");
        c.set_log_y(true);
        c.add({"loss", {0, 1, 2, 3, 4}, {1, 0, 10, -1, 100}, svg::series::style::points});
        std::string doc = svg::document({c});
        CHECK(xml_error(doc).empty());
        auto groups = series_groups(doc);
        REQUIRE(groups.size() == 1);
        CHECK(contains(groups[0], "data-points=\"3\""));
        CHECK(count(groups[0], "<circle") == 3);
        CHECK(contains(doc, ">1</text>"));
        CHECK(contains(doc, ">10</text>"));
        CHECK(contains(doc, ">100</text>"));
        c.set_log_x(true); // x = 0 goes too
        doc = svg::document({c});
        groups = series_groups(doc);
        REQUIRE(groups.size() == 1);
        CHECK(contains(groups[0], "data-points=\"2\""));
        CHECK(xml_error(doc).empty());
    }
    SUBCASE("nothing drawable") {
        svg::chart c("all NaN", "x", "y");
        c.set_log_x(true).set_log_y(true);
        c.add({"nothing", {nan, 0, -1}, {1, 1, 1}});
        const std::string doc = svg::document({c});
        CHECK(xml_error(doc).empty());
        CHECK(contains(doc, "no data"));
        CHECK(contains(series_groups(doc).at(0), "data-points=\"0\""));
    }
    SUBCASE("an empty chart draws axes and a note") {
        const std::string doc = svg::document({svg::chart("empty"), svg::bar_chart("empty bars")});
        CHECK(xml_error(doc).empty());
        CHECK(count(doc, "no data") == 2);
        CHECK(count(doc, "class=\"series\"") == 0);
        CHECK(count(doc, "class=\"frame\"") == 2);
        CHECK(count(doc, "class=\"y-axis\"") == 2);
    }
    SUBCASE("one point and constant values") {
        svg::chart c;
        c.add({"single", {3}, {7}});
        c.add({"flat", {1, 2, 3}, {7, 7, 7}});
        const std::string doc = svg::document({c});
        CHECK(xml_error(doc).empty());
        CHECK(contains(series_groups(doc).at(0), "<circle")); // a lone point of a line shows as a dot
    }
    SUBCASE("NaN in a bar chart") {
        svg::bar_chart b;
        b.set_categories({"a", "b", "c"});
        b.add("x", {1, nan, inf});
        const std::string doc = svg::document({b});
        CHECK(xml_error(doc).empty());
        CHECK(count(series_groups(doc).at(0), "<rect") == 1);
        CHECK_FALSE(contains(doc, "nan"));
    }
}

TEST_CASE("names and texts are escaped") {
    const std::string nasty = "a<b & \"c\" 'd' >e";
    svg::chart c(nasty, nasty, nasty);
    c.add({nasty, {1, 2}, {3, 4}, svg::series::style::line, "red\" onload=\"x"});
    svg::bar_chart b(nasty, nasty, nasty);
    b.set_categories({nasty, "ok"});
    b.add(nasty, {1, 2});
    const std::string doc = svg::document({c, b}, 2);
    const std::string error = xml_error(doc);
    CHECK_MESSAGE(error.empty(), error);
    CHECK_FALSE(contains(doc, nasty));
    CHECK_FALSE(contains(doc, "<b "));
    CHECK(contains(doc, "data-name=\"a&lt;b &amp; &quot;c&quot; &apos;d&apos; &gt;e\""));
    CHECK(contains(doc, "stroke=\"red&quot; onload=&quot;x\""));
    CHECK(count(doc, "class=\"series\"") == 2);
    // control characters and broken UTF-8 cannot break the document either
    svg::chart odd(std::string("bell\x07 and \xFF"));
    odd.add({std::string("tab\there \xC3\xA9"), {1}, {1}});
    CHECK(xml_error(svg::document({odd})).empty());
    CHECK(contains(svg::document({odd}), "\xC3\xA9"));
}

TEST_CASE("ticks are nice on linear and log axes") {
    const auto lin = svg::detail::linear_axis(0.13, 9.7, 400, 40);
    CHECK(lin.lo == 0.0);
    CHECK(lin.hi == 10.0);
    CHECK(lin.ticks.size() == 11);
    CHECK(lin.labels.front() == "0");
    CHECK(lin.labels.back() == "10");
    const auto small = svg::detail::linear_axis(0.0012, 0.0047, 300, 40);
    INFO("small: " << small.labels.front() << " .. " << small.labels.back());
    CHECK(small.labels.front() == "0.0010");
    CHECK(small.labels.back() == "0.0050");
    const auto neg = svg::detail::linear_axis(-3.2, 1.1, 200, 40);
    CHECK(neg.lo == -4.0);
    CHECK(neg.hi == 2.0);
    CHECK(neg.labels.front() == "-4");
    const auto big = svg::detail::linear_axis(0, 2.3e7, 300, 40);
    CHECK(big.labels.back() == "2.5e7");
    const auto one = svg::detail::linear_axis(5, 5, 300, 40); // a single value: widened
    CHECK(one.lo < 5.0);
    CHECK(one.hi > 5.0);
    CHECK_FALSE(one.ticks.empty());
    const auto huge = svg::detail::linear_axis(-1e308, 1e308, 300, 40);
    CHECK(std::isfinite(huge.hi - huge.lo));
    CHECK(huge.ticks.size() < 100);
    for (double step_check : {0.1, 0.2, 0.5, 1.0}) {
        const auto a = svg::detail::linear_axis(0, step_check * 5, 400, 80);
        CAPTURE(step_check);
        REQUIRE(a.ticks.size() >= 2);
        const double step = a.ticks[1] - a.ticks[0];
        const double mantissa = step / std::pow(10.0, std::floor(std::log10(step) + 1e-9));
        CHECK((std::fabs(mantissa - 1) < 1e-9 || std::fabs(mantissa - 2) < 1e-9 || std::fabs(mantissa - 5) < 1e-9));
    }
    const auto lg = svg::detail::log_axis(0.5, 2000, 300, 40);
    CHECK(lg.lo == doctest::Approx(0.1));
    CHECK(lg.hi == doctest::Approx(1e4));
    REQUIRE(lg.labels.size() == 6);
    CHECK(lg.labels[0] == "0.1");
    CHECK(lg.labels[1] == "1");
    CHECK(lg.labels[5] == "10000");
    CHECK_FALSE(lg.minor.empty());
    const auto wide = svg::detail::log_axis(1e-12, 1e12, 200, 40);
    CHECK(wide.ticks.size() <= 7); // every 5th power of ten, aligned on multiples of 5
    CHECK(wide.labels.front() == "1e-15");
    CHECK(wide.labels.back() == "1e15");
}

TEST_CASE("bar chart input is checked") {
    svg::bar_chart b("energy");
    CHECK_THROWS_AS(b.add("early", {1.0}), fr::error); // no categories yet
    b.set_categories({"a", "b"});
    CHECK_THROWS_AS(b.add("short", {1.0}), fr::error);
    CHECK_THROWS_WITH(b.add("neg", {1.0, -2.0}),
                      doctest::Contains("series \"neg\", category \"b\": value -2 is negative"));
    b.add("ok", {1.0, 2.0});
    CHECK_THROWS_AS(b.set_categories({"a", "b", "c"}), fr::error);
    CHECK(b.series_list().size() == 1);
    svg::chart c;
    CHECK_THROWS_AS(c.add({"mismatch", {1, 2}, {1}}), fr::error);
    c.add({"y only", {}, {5, 6, 7}});
    REQUIRE(c.series_list().size() == 1);
    CHECK(c.series_list()[0].x == std::vector<double>{0, 1, 2});
}

TEST_CASE("short category labels stay horizontal and many are thinned") {
    svg::bar_chart few("few");
    few.set_categories({"a", "b", "c"});
    few.add("x", {1, 2, 3});
    CHECK_FALSE(contains(few.render(), "rotate(-45)"));
    svg::bar_chart many("many");
    std::vector<std::string> names;
    std::vector<double> values;
    for (int i = 0; i < 200; ++i) {
        names.push_back("layer" + std::to_string(i));
        values.push_back(1.0 + i % 7);
    }
    many.set_categories(names);
    many.add("x", values);
    const std::string out = many.render();
    CHECK(xml_error(out).empty());
    CHECK(count(out, "rotate(-45)") < 100);
    CHECK(count(out, "rotate(-45)") > 5);
    CHECK(count(series_groups(out).at(0), "<rect") == 200);
}

TEST_CASE("write errors name the path and single charts can be written") {
    temp_dir dir;
    const auto plain = dir / "plain.txt";
    {
        std::ofstream out(plain);
        out << "x";
    }
    const auto under = plain / "plot.svg";
    CHECK_THROWS_AS(svg::write(under, loss_chart()), fr::io_error);
    try {
        svg::write(under, {loss_chart(), energy_chart()}, 2);
    } catch (const fr::io_error& e) {
        INFO(e.what());
        CHECK(contains(e.what(), under.string()));
        CHECK(contains(e.what(), "cannot write SVG"));
    }
    const auto one = dir / "loss.svg";
    svg::write(one, loss_chart());
    const std::string doc = read_text(one);
    CHECK(xml_error(doc).empty());
    CHECK(contains(doc, "width=\"640\" height=\"400\""));
    svg::write(dir / "bars.svg", energy_chart());
    CHECK(contains(read_text(dir / "bars.svg"), "width=\"640\" height=\"400\""));
    // a braced single panel with a column count is a one-panel grid, not a
    // single chart with a width
    svg::write(dir / "one.svg", {energy_chart()}, 1);
    CHECK(contains(read_text(dir / "one.svg"), "width=\"640\" height=\"400\""));
    svg::write(dir / "sized.svg", {energy_chart()}, 1, 800, 500);
    CHECK(contains(read_text(dir / "sized.svg"), "width=\"800\" height=\"500\""));
}

} // TEST_SUITE
