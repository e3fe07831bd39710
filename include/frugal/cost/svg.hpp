#ifndef FRUGAL_COST_SVG_HPP
#define FRUGAL_COST_SVG_HPP

/// @file
/// frugal::svg: plots drawn by frugal itself as hand-written SVG 1.1, with no
/// dependency: line/point charts (linear or log axes) and stacked bar charts,
/// composed in a grid into one standalone file.
///
/// Every series is one `<g class="series" data-name="...">` element (a line
/// chart's also carries `data-points`, the number of points drawn), so that
/// tests and scripts can find and count them. Text is XML-escaped; the output
/// is well-formed XML. Points with a NaN or infinite coordinate, or a
/// coordinate <= 0 on a log axis, are left out; a chart without drawable data
/// shows its axes and a "no data" note.
///
/// ```
/// svg::chart loss("training loss", "epoch", "loss");
/// loss.set_log_y(true).add({"fp32", epochs, fp32_loss}).add({"int8", epochs, int8_loss});
/// svg::bar_chart energy("energy per layer", "layer", "J");
/// energy.set_categories(layer_names).add("forward", fwd).add("backward", bwd);
/// svg::write("run/summary.svg", {loss, energy}, 2);
/// ```

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <filesystem>
#include <limits>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

#include "frugal/cost/json.hpp" // frugal::detail::write_text_atomically, utf8_sequence_length
#include "frugal/error.hpp"

namespace frugal::svg {

/// Default size of one panel, in pixels.
inline constexpr double default_width = 640.0;
/// Default size of one panel, in pixels.
inline constexpr double default_height = 400.0;

/// The default colors, given to series in order (Okabe-Ito, distinguishable
/// with the common color-vision deficiencies, with grey and black for
/// yellow, which is unreadable on white).
inline constexpr std::array<std::string_view, 8> palette = {"#0072B2", "#E69F00", "#009E73", "#D55E00",
                                                            "#CC79A7", "#56B4E9", "#7F7F7F", "#000000"};

/// One line or set of points of a chart.
///
/// Built as `{"fp32", epochs, losses}` or `{"int8", x, y, series::style::points, "#ff0000"}`.
struct series {
    /// How the points are drawn: joined by a line, as markers, or both.
    enum class style { line, points, line_points };

    /// An unnamed, empty series.
    series() = default;
    /// A series of points (x[i], y[i]).
    series(std::string label, std::vector<double> xs, std::vector<double> ys, style how = style::line,
           std::string own_color = {})
        : name(std::move(label)), x(std::move(xs)), y(std::move(ys)), look(how), color(std::move(own_color)) {}

    /// Name shown in the legend.
    std::string name;
    /// Abscissas; left empty, they are 0, 1, 2, ... (one per y).
    std::vector<double> x;
    /// Ordinates.
    std::vector<double> y;
    /// How the points are drawn.
    style look = style::line;
    /// Any SVG color ("#1f77b4", "red"); empty: the palette's next color.
    std::string color;
};

/// One stacked series of a bar chart: one value per category.
struct bar_series {
    /// An unnamed, empty series.
    bar_series() = default;
    /// A series with one value per category.
    bar_series(std::string label, std::vector<double> per_category, std::string own_color = {})
        : name(std::move(label)), values(std::move(per_category)), color(std::move(own_color)) {}

    /// Name shown in the legend.
    std::string name;
    /// One non-negative value per category (NaN or infinite: left out).
    std::vector<double> values;
    /// Any SVG color; empty: the palette's next color.
    std::string color;
};

namespace detail {

/// Approximate width of a character of the 12 px sans-serif font.
inline constexpr double char_width = 7.0;

/// `v` with at most two decimals and no trailing zeros (coordinates).
[[nodiscard]] inline std::string num(double v) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, 2);
    std::string s(buf, r.ptr);
    if (s.find('.') != std::string::npos) {
        while (s.back() == '0') {
            s.pop_back();
        }
        if (s.back() == '.') {
            s.pop_back();
        }
    }
    return s == "-0" ? "0" : s;
}

/// Appends `text` escaped for XML character data and attribute values: & < >
/// " ' as entities; control characters (invalid in XML 1.0) and invalid
/// UTF-8 as U+FFFD.
inline void escape_to(std::string& out, std::string_view text) {
    std::size_t i = 0;
    while (i < text.size()) {
        const auto c = static_cast<unsigned char>(text[i]);
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        case '\'': out += "&apos;"; break;
        default:
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                out += "\xEF\xBF\xBD";
            } else if (c >= 0x80) {
                const std::size_t n = frugal::detail::utf8_sequence_length(text, i);
                if (n == 0) {
                    out += "\xEF\xBF\xBD";
                } else {
                    out.append(text.substr(i, n));
                    i += n;
                    continue;
                }
            } else {
                out += static_cast<char>(c);
            }
        }
        ++i;
    }
}

/// `text` escaped for XML.
[[nodiscard]] inline std::string escape(std::string_view text) {
    std::string s;
    escape_to(s, text);
    return s;
}

/// Number of characters (UTF-8 code points) of `text`.
[[nodiscard]] inline std::size_t length(std::string_view text) noexcept {
    std::size_t n = 0;
    for (const char c : text) {
        n += (static_cast<unsigned char>(c) & 0xC0) != 0x80 ? 1 : 0;
    }
    return n;
}

/// `text` cut to at most `max_chars` characters, ending with "..." if cut.
[[nodiscard]] inline std::string shorten(std::string_view text, std::size_t max_chars) {
    if (length(text) <= max_chars) {
        return std::string(text);
    }
    const std::size_t keep = max_chars > 1 ? max_chars - 1 : 0;
    std::size_t chars = 0, i = 0;
    while (i < text.size() && chars < keep) {
        ++i;
        while (i < text.size() && (static_cast<unsigned char>(text[i]) & 0xC0) == 0x80) {
            ++i;
        }
        ++chars;
    }
    return std::string(text.substr(0, i)) + "\xE2\x80\xA6"; // ellipsis
}

/// `v` in at most `digits` significant digits (tooltips).
[[nodiscard]] inline std::string short_number(double v, int digits = 4) {
    char buf[64];
    const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::general, digits);
    return std::string(buf, r.ptr);
}

/// Text of a tick at `v` on an axis whose ticks are `step` apart: as many
/// decimals as the step needs; scientific form for very large or small
/// magnitudes.
[[nodiscard]] inline std::string tick_label(double v, double step, double magnitude) {
    if (std::fabs(v) < step * 1e-9) {
        return "0";
    }
    char buf[64];
    if (magnitude >= 1e6 || magnitude < 1e-4) {
        // mantissa digits: from the value's leading digit down to the step's
        const int lead = static_cast<int>(std::floor(std::log10(std::fabs(v))));
        const int last = static_cast<int>(std::floor(std::log10(step) + 1e-9));
        const int decimals = std::clamp(lead - last, 0, 15);
        const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::scientific, decimals);
        std::string s(buf, r.ptr);
        // 2.50e+06 -> 2.5e6
        const auto e = s.find('e');
        std::string mant = s.substr(0, e), ex = s.substr(e + 1);
        if (mant.find('.') != std::string::npos) {
            while (mant.back() == '0') {
                mant.pop_back();
            }
            if (mant.back() == '.') {
                mant.pop_back();
            }
        }
        const bool negative = ex[0] == '-';
        ex = ex.substr(1);
        while (ex.size() > 1 && ex[0] == '0') {
            ex.erase(0, 1);
        }
        return mant + "e" + (negative ? "-" : "") + ex;
    }
    const int decimals = std::clamp(static_cast<int>(-std::floor(std::log10(step) + 1e-9)), 0, 15);
    const auto r = std::to_chars(buf, buf + sizeof buf, v, std::chars_format::fixed, decimals);
    std::string s(buf, r.ptr);
    return s == "-0" ? "0" : s;
}

/// An axis: its range, ticks (labelled, with grid lines) and minor ticks
/// (grid lines only).
struct axis {
    double lo = 0.0;
    double hi = 1.0;
    bool log = false;
    std::vector<double> ticks;
    std::vector<std::string> labels;
    std::vector<double> minor;

    /// Position of `v` between pixel `p0` (at lo) and `p1` (at hi).
    [[nodiscard]] double map(double v, double p0, double p1) const noexcept {
        const double t = log ? (std::log10(v) - std::log10(lo)) / (std::log10(hi) - std::log10(lo))
                             : (v - lo) / (hi - lo);
        return p0 + t * (p1 - p0);
    }
    /// Widest label, in characters.
    [[nodiscard]] std::size_t label_chars() const noexcept {
        std::size_t w = 0;
        for (const auto& l : labels) {
            w = std::max(w, length(l));
        }
        return w;
    }
};

/// A linear axis covering [lo, hi] (lo <= hi, finite) with "nice" ticks
/// (1, 2 or 5 times a power of ten apart), about one per `spacing` pixels of
/// `pixels`; the range is widened to whole steps.
[[nodiscard]] inline axis linear_axis(double lo, double hi, double pixels, double spacing) {
    lo = std::max(lo, -1e300);
    hi = std::min(hi, 1e300);
    const double mid = std::fabs(lo / 2 + hi / 2);
    if (!(hi - lo > mid * 1e-9)) { // a single value: widen around it
        const double pad = mid > 0 ? mid * 0.1 : 1.0;
        lo -= pad;
        hi += pad;
    }
    const double target = std::max(2.0, std::floor(pixels / spacing));
    const double raw = (hi - lo) / target;
    const double mag = std::pow(10.0, std::floor(std::log10(raw)));
    const double f = raw / mag;
    const double step = (f <= 1.0 + 1e-9 ? 1.0 : f <= 2.0 + 1e-9 ? 2.0 : f <= 5.0 + 1e-9 ? 5.0 : 10.0) * mag;
    axis a;
    const double k0 = std::floor(lo / step + 1e-9), k1 = std::ceil(hi / step - 1e-9);
    a.lo = k0 * step;
    a.hi = k1 * step;
    const double magnitude = std::max(std::fabs(a.lo), std::fabs(a.hi));
    for (double k = k0; k <= k1 && a.ticks.size() < 100; k += 1.0) {
        const double v = k * step;
        a.ticks.push_back(v);
        a.labels.push_back(tick_label(v, step, magnitude));
    }
    return a;
}

/// A log axis covering [lo, hi] (0 < lo <= hi, finite) with ticks at powers
/// of ten (every k-th power if there are many) and minor grid lines at 2..9
/// times them when few decades show.
[[nodiscard]] inline axis log_axis(double lo, double hi, double pixels, double spacing) {
    int e0 = static_cast<int>(std::floor(std::log10(lo) + 1e-12));
    int e1 = static_cast<int>(std::ceil(std::log10(hi) - 1e-12));
    if (e1 <= e0) {
        e1 = e0 + 1;
    }
    const int target = std::max(2, static_cast<int>(pixels / spacing));
    const int every = std::max(1, (e1 - e0 + target - 1) / target);
    e0 = static_cast<int>(std::floor(static_cast<double>(e0) / every)) * every;
    e1 = static_cast<int>(std::ceil(static_cast<double>(e1) / every)) * every;
    e0 = std::max(e0, -307);
    e1 = std::min(e1, 308);
    axis a;
    a.log = true;
    a.lo = std::pow(10.0, e0);
    a.hi = std::pow(10.0, e1);
    for (int e = e0; e <= e1; e += every) {
        a.ticks.push_back(std::pow(10.0, e));
        if (e >= -3 && e <= 4) {
            a.labels.push_back(tick_label(std::pow(10.0, e), std::pow(10.0, std::min(e, 0)), 1.0));
        } else {
            a.labels.push_back("1e" + std::to_string(e));
        }
        if (every == 1 && e1 - e0 <= 6 && e < e1) {
            for (int m = 2; m <= 9; ++m) {
                a.minor.push_back(m * std::pow(10.0, e));
            }
        }
    }
    return a;
}

/// Appends `<text>` at (x, y) with extra attributes `attrs`.
inline void text(std::string& out, double x, double y, std::string_view content, std::string_view attrs = {}) {
    out += "<text x=\"" + num(x) + "\" y=\"" + num(y) + "\"";
    if (!attrs.empty()) {
        out += ' ';
        out += attrs;
    }
    out += '>';
    escape_to(out, content);
    out += "</text>\n";
}

/// Appends a marker of shape `shape` (0 circle, 1 square, 2 triangle, 3
/// diamond) centred at (x, y).
inline void marker(std::string& out, int shape, double x, double y, double r = 3.0) {
    switch (shape % 4) {
    case 0: out += "<circle cx=\"" + num(x) + "\" cy=\"" + num(y) + "\" r=\"" + num(r) + "\"/>"; break;
    case 1:
        out += "<rect x=\"" + num(x - r) + "\" y=\"" + num(y - r) + "\" width=\"" + num(2 * r) + "\" height=\"" +
               num(2 * r) + "\"/>";
        break;
    case 2:
        out += "<path d=\"M" + num(x) + "," + num(y - 1.2 * r) + "L" + num(x + 1.1 * r) + "," + num(y + 0.8 * r) +
               "L" + num(x - 1.1 * r) + "," + num(y + 0.8 * r) + "Z\"/>";
        break;
    default:
        out += "<path d=\"M" + num(x) + "," + num(y - 1.3 * r) + "L" + num(x + 1.3 * r) + "," + num(y) + "L" +
               num(x) + "," + num(y + 1.3 * r) + "L" + num(x - 1.3 * r) + "," + num(y) + "Z\"/>";
    }
    out += '\n';
}

/// The color of the `i`-th series: its own, or the palette's.
[[nodiscard]] inline std::string color_of(const std::string& own, std::size_t i) {
    return own.empty() ? std::string(palette[i % palette.size()]) : own;
}

/// Opening of a panel: a group translated to (x, y) with the font, a white
/// background and the title.
inline void open_panel(std::string& out, std::string_view kind, double x, double y, double width, double height,
                       std::string_view title) {
    out += "<g class=\"";
    out += kind;
    out += "\" transform=\"translate(" + num(x) + "," + num(y) + ")\" font-family=\"sans-serif\" font-size=\"12\">\n";
    out += "<rect width=\"" + num(width) + "\" height=\"" + num(height) + "\" fill=\"#ffffff\"/>\n";
    if (!title.empty()) {
        text(out, width / 2, 20, shorten(title, static_cast<std::size_t>(std::max(4.0, width / 8.0))),
             "text-anchor=\"middle\" font-size=\"14\" font-weight=\"bold\"");
    }
}

/// The plot area of a panel, in the panel's pixels.
struct frame {
    double left, top, right, bottom;
};

/// Appends horizontal grid lines and labels of `y` (value axis) and the
/// frame and y label.
inline void draw_y_axis(std::string& out, const axis& y, const frame& f, std::string_view label) {
    out += "<g class=\"grid\" stroke=\"#ebebeb\" stroke-width=\"1\">\n";
    for (const double v : y.minor) {
        if (v > y.lo && v < y.hi) {
            const double py = y.map(v, f.bottom, f.top);
            out += "<line x1=\"" + num(f.left) + "\" y1=\"" + num(py) + "\" x2=\"" + num(f.right) + "\" y2=\"" +
                   num(py) + "\" stroke=\"#f5f5f5\"/>\n";
        }
    }
    for (const double v : y.ticks) {
        const double py = y.map(v, f.bottom, f.top);
        out += "<line x1=\"" + num(f.left) + "\" y1=\"" + num(py) + "\" x2=\"" + num(f.right) + "\" y2=\"" +
               num(py) + "\"/>\n";
    }
    out += "</g>\n<g class=\"y-axis\" text-anchor=\"end\" fill=\"#333333\">\n";
    for (std::size_t i = 0; i < y.ticks.size(); ++i) {
        text(out, f.left - 6, y.map(y.ticks[i], f.bottom, f.top) + 4, y.labels[i]);
    }
    if (!label.empty()) {
        const double cy = (f.top + f.bottom) / 2;
        out += "<text transform=\"translate(14," + num(cy) + ") rotate(-90)\" text-anchor=\"middle\">";
        escape_to(out, shorten(label, static_cast<std::size_t>(std::max(4.0, (f.bottom - f.top) / char_width))));
        out += "</text>\n";
    }
    out += "</g>\n";
}

inline void draw_frame(std::string& out, const frame& f) {
    out += "<rect class=\"frame\" x=\"" + num(f.left) + "\" y=\"" + num(f.top) + "\" width=\"" +
           num(f.right - f.left) + "\" height=\"" + num(f.bottom - f.top) +
           "\" fill=\"none\" stroke=\"#666666\" stroke-width=\"1\"/>\n";
}

inline void no_data(std::string& out, const frame& f) {
    text(out, (f.left + f.right) / 2, (f.top + f.bottom) / 2, "no data",
         "class=\"no-data\" text-anchor=\"middle\" fill=\"#888888\" font-style=\"italic\"");
}

/// Width of a legend listing `names` (0 if none), at most `max_width`.
[[nodiscard]] inline double legend_width(const std::vector<std::string_view>& names, double max_width) {
    if (names.empty()) {
        return 0.0;
    }
    std::size_t chars = 0;
    for (const auto n : names) {
        chars = std::max(chars, length(n));
    }
    return std::min(max_width, 34.0 + char_width * static_cast<double>(chars));
}

} // namespace detail

/// A 2-d chart of lines and/or points, with optional log axes.
///
/// Ticks are "nice" (1, 2 or 5 times a power of ten apart; powers of ten on
/// log axes) with grid lines; the legend, on the right, lists every series
/// with its color and marker.
class chart {
public:
    /// An empty chart with the given texts (each may be empty).
    explicit chart(std::string title = {}, std::string x_label = {}, std::string y_label = {})
        : title_(std::move(title)), x_label_(std::move(x_label)), y_label_(std::move(y_label)) {}

    /// Sets the title, above the plot.
    chart& set_title(std::string t) {
        title_ = std::move(t);
        return *this;
    }
    /// Sets the label under the x axis.
    chart& set_x_label(std::string l) {
        x_label_ = std::move(l);
        return *this;
    }
    /// Sets the label along the y axis.
    chart& set_y_label(std::string l) {
        y_label_ = std::move(l);
        return *this;
    }
    /// A log10 x axis (points with x <= 0 are then left out).
    chart& set_log_x(bool on = true) noexcept {
        log_x_ = on;
        return *this;
    }
    /// A log10 y axis (points with y <= 0 are then left out).
    chart& set_log_y(bool on = true) noexcept {
        log_y_ = on;
        return *this;
    }

    /// Adds a series; an empty `s.x` becomes 0, 1, 2, ...
    /// @throws frugal::error naming the series if `s.x` and `s.y` differ in
    /// size.
    chart& add(series s) {
        if (s.x.empty()) {
            s.x.resize(s.y.size());
            for (std::size_t i = 0; i < s.x.size(); ++i) {
                s.x[i] = static_cast<double>(i);
            }
        }
        if (s.x.size() != s.y.size()) {
            throw error(frugal::detail::concat("svg::chart::add: series \"", s.name, "\" has ", s.x.size(),
                                               " x values but ", s.y.size(), " y values"));
        }
        series_.push_back(std::move(s));
        return *this;
    }

    /// The title.
    [[nodiscard]] const std::string& title() const noexcept { return title_; }
    /// The series, in the order added.
    [[nodiscard]] const std::vector<series>& series_list() const noexcept { return series_; }
    /// True if the x axis is logarithmic.
    [[nodiscard]] bool log_x() const noexcept { return log_x_; }
    /// True if the y axis is logarithmic.
    [[nodiscard]] bool log_y() const noexcept { return log_y_; }

    /// True if the point (x, y) can be drawn on this chart's axes.
    [[nodiscard]] bool drawable(double x, double y) const noexcept {
        return std::isfinite(x) && std::isfinite(y) && (!log_x_ || x > 0) && (!log_y_ || y > 0);
    }

    /// The chart as an SVG fragment: one `<g>` of `width` x `height` pixels
    /// whose top left corner is at (`x`, `y`).
    [[nodiscard]] std::string render(double x = 0, double y = 0, double width = default_width,
                                     double height = default_height) const {
        using namespace svg::detail;
        std::string out;
        open_panel(out, "chart", x, y, width, height, title_);

        // data range over the drawable points
        double x0 = std::numeric_limits<double>::infinity(), x1 = -x0, y0 = x0, y1 = -x0;
        std::size_t drawable_points = 0;
        for (const auto& s : series_) {
            for (std::size_t i = 0; i < s.x.size(); ++i) {
                if (drawable(s.x[i], s.y[i])) {
                    x0 = std::min(x0, s.x[i]);
                    x1 = std::max(x1, s.x[i]);
                    y0 = std::min(y0, s.y[i]);
                    y1 = std::max(y1, s.y[i]);
                    ++drawable_points;
                }
            }
        }
        if (drawable_points == 0) {
            x0 = y0 = 1.0;
            x1 = y1 = 10.0;
            if (!log_x_) {
                x0 = 0.0;
                x1 = 1.0;
            }
            if (!log_y_) {
                y0 = 0.0;
                y1 = 1.0;
            }
        }

        std::vector<std::string_view> names;
        for (const auto& s : series_) {
            names.push_back(s.name);
        }
        const double legend = legend_width(names, width * 0.35);
        frame f{0, title_.empty() ? 12.0 : 34.0, 0, height - 24.0 - (x_label_.empty() ? 0.0 : 18.0)};
        const axis ay =
            log_y_ ? log_axis(y0, y1, f.bottom - f.top, 40.0) : linear_axis(y0, y1, f.bottom - f.top, 40.0);
        f.left = (y_label_.empty() ? 8.0 : 26.0) + char_width * static_cast<double>(ay.label_chars()) + 8.0;
        f.right = width - 12.0 - (legend > 0 ? legend + 8.0 : 0.0);
        f.right = std::max(f.right, f.left + 10.0);
        const axis ax =
            log_x_ ? log_axis(x0, x1, f.right - f.left, 80.0) : linear_axis(x0, x1, f.right - f.left, 80.0);

        draw_y_axis(out, ay, f, y_label_);
        // vertical grid and x labels
        out += "<g class=\"grid\" stroke=\"#ebebeb\" stroke-width=\"1\">\n";
        for (const double v : ax.minor) {
            if (v > ax.lo && v < ax.hi) {
                const double px = ax.map(v, f.left, f.right);
                out += "<line x1=\"" + num(px) + "\" y1=\"" + num(f.top) + "\" x2=\"" + num(px) + "\" y2=\"" +
                       num(f.bottom) + "\" stroke=\"#f5f5f5\"/>\n";
            }
        }
        for (const double v : ax.ticks) {
            const double px = ax.map(v, f.left, f.right);
            out += "<line x1=\"" + num(px) + "\" y1=\"" + num(f.top) + "\" x2=\"" + num(px) + "\" y2=\"" +
                   num(f.bottom) + "\"/>\n";
        }
        out += "</g>\n<g class=\"x-axis\" text-anchor=\"middle\" fill=\"#333333\">\n";
        for (std::size_t i = 0; i < ax.ticks.size(); ++i) {
            text(out, ax.map(ax.ticks[i], f.left, f.right), f.bottom + 16, ax.labels[i]);
        }
        if (!x_label_.empty()) {
            text(out, (f.left + f.right) / 2, height - 8, x_label_);
        }
        out += "</g>\n";
        draw_frame(out, f);
        if (drawable_points == 0) {
            no_data(out, f);
        }

        for (std::size_t k = 0; k < series_.size(); ++k) {
            draw_series(out, series_[k], k, ax, ay, f);
        }
        draw_legend(out, f, legend);
        out += "</g>\n";
        return out;
    }

private:
    void draw_series(std::string& out, const series& s, std::size_t k, const detail::axis& ax,
                     const detail::axis& ay, const detail::frame& f) const {
        using namespace svg::detail;
        const std::string color = color_of(s.color, k);
        const bool line = s.look != series::style::points;
        const bool marks = s.look != series::style::line;
        std::string path, dots, isolated;
        std::size_t drawn = 0, run = 0;
        double last_x = 0, last_y = 0;
        const auto end_run = [&] {
            if (run == 1 && line && !marks) { // a lone point of a line: a small dot so that it shows
                isolated += "<circle cx=\"" + num(last_x) + "\" cy=\"" + num(last_y) + "\" r=\"1.5\"/>\n";
            }
            run = 0;
        };
        for (std::size_t i = 0; i < s.x.size(); ++i) {
            if (!drawable(s.x[i], s.y[i])) {
                end_run();
                continue;
            }
            const double px = ax.map(s.x[i], f.left, f.right);
            const double py = ay.map(s.y[i], f.bottom, f.top);
            ++drawn;
            if (line) {
                path += (run == 0 ? (path.empty() ? "M" : " M") : " L") + num(px) + "," + num(py);
            }
            if (marks) {
                marker(dots, static_cast<int>(k), px, py);
            }
            ++run;
            last_x = px;
            last_y = py;
        }
        end_run();
        out += "<g class=\"series\" data-name=\"" + escape(s.name) + "\" data-points=\"" + std::to_string(drawn) +
               "\" stroke=\"" + escape(color) + "\" fill=\"" + escape(color) + "\">\n<title>";
        escape_to(out, s.name);
        out += "</title>\n";
        if (line && !path.empty()) {
            out += "<path d=\"" + path + "\" fill=\"none\" stroke-width=\"1.5\" stroke-linejoin=\"round\"/>\n";
        }
        out += isolated;
        out += dots;
        out += "</g>\n";
    }

    void draw_legend(std::string& out, const detail::frame& f, double legend) const {
        using namespace svg::detail;
        if (series_.empty()) {
            return;
        }
        const double x = f.right + 12.0;
        const auto max_chars = static_cast<std::size_t>(std::max(3.0, (legend - 34.0) / char_width));
        out += "<g class=\"legend\">\n";
        for (std::size_t k = 0; k < series_.size(); ++k) {
            const series& s = series_[k];
            const double y = f.top + 8.0 + 18.0 * static_cast<double>(k);
            const std::string color = escape(color_of(s.color, k));
            out += "<g stroke=\"" + color + "\" fill=\"" + color + "\">";
            if (s.look != series::style::points) {
                out += "<line x1=\"" + num(x) + "\" y1=\"" + num(y) + "\" x2=\"" + num(x + 24) + "\" y2=\"" +
                       num(y) + "\" stroke-width=\"1.5\"/>";
            }
            if (s.look != series::style::line) {
                marker(out, static_cast<int>(k), x + 12, y);
            }
            out += "</g>\n";
            text(out, x + 30, y + 4, shorten(s.name, max_chars));
        }
        out += "</g>\n";
    }

    std::string title_, x_label_, y_label_;
    bool log_x_ = false, log_y_ = false;
    std::vector<series> series_;
};

/// A bar chart: one bar per category (layer names, say), made of stacked
/// series of non-negative values (energy per phase, say), with a legend and a
/// value axis with nice ticks. Long category labels are rotated, and thinned
/// out when there are too many to show them all.
class bar_chart {
public:
    /// An empty bar chart with the given texts (each may be empty).
    explicit bar_chart(std::string title = {}, std::string x_label = {}, std::string y_label = {})
        : title_(std::move(title)), x_label_(std::move(x_label)), y_label_(std::move(y_label)) {}

    /// Sets the title, above the plot.
    bar_chart& set_title(std::string t) {
        title_ = std::move(t);
        return *this;
    }
    /// Sets the label under the categories.
    bar_chart& set_x_label(std::string l) {
        x_label_ = std::move(l);
        return *this;
    }
    /// Sets the label along the value axis.
    bar_chart& set_y_label(std::string l) {
        y_label_ = std::move(l);
        return *this;
    }
    /// Sets the categories, left to right.
    /// @throws frugal::error if series were added with another count.
    bar_chart& set_categories(std::vector<std::string> names) {
        if (!series_.empty() && names.size() != series_.front().values.size()) {
            throw error(frugal::detail::concat("svg::bar_chart::set_categories: ", names.size(),
                                               " categories, but series \"", series_.front().name, "\" has ",
                                               series_.front().values.size(), " values"));
        }
        categories_ = std::move(names);
        return *this;
    }
    /// Stacks a series on top of those already added: one value per
    /// category; NaN and infinite values are left out.
    /// @throws frugal::error naming the series if its size is not the number
    /// of categories, or naming the series, category and value if a value is
    /// negative.
    bar_chart& add(bar_series s) {
        if (s.values.size() != categories_.size()) {
            throw error(frugal::detail::concat("svg::bar_chart::add: series \"", s.name, "\" has ", s.values.size(),
                                               " values for ", categories_.size(),
                                               " categories (set the categories first)"));
        }
        for (std::size_t i = 0; i < s.values.size(); ++i) {
            if (s.values[i] < 0) {
                throw error(frugal::detail::concat("svg::bar_chart::add: series \"", s.name, "\", category \"",
                                                   categories_[i], "\": value ", s.values[i],
                                                   " is negative; stacked bars need values >= 0"));
            }
        }
        series_.push_back(std::move(s));
        return *this;
    }
    /// Stacks a series (see add(bar_series)).
    bar_chart& add(std::string name, std::vector<double> values, std::string color = {}) {
        return add(bar_series{std::move(name), std::move(values), std::move(color)});
    }

    /// The title.
    [[nodiscard]] const std::string& title() const noexcept { return title_; }
    /// The categories, left to right.
    [[nodiscard]] const std::vector<std::string>& categories() const noexcept { return categories_; }
    /// The series, bottom of the stack first.
    [[nodiscard]] const std::vector<bar_series>& series_list() const noexcept { return series_; }

    /// The chart as an SVG fragment: one `<g>` of `width` x `height` pixels
    /// whose top left corner is at (`x`, `y`).
    [[nodiscard]] std::string render(double x = 0, double y = 0, double width = default_width,
                                     double height = default_height) const {
        using namespace svg::detail;
        std::string out;
        open_panel(out, "bar-chart", x, y, width, height, title_);

        const std::size_t n = categories_.size();
        std::vector<double> totals(n, 0.0);
        for (const auto& s : series_) {
            for (std::size_t i = 0; i < n; ++i) {
                totals[i] += std::isfinite(s.values[i]) ? s.values[i] : 0.0;
            }
        }
        const double top_value = totals.empty() ? 0.0 : *std::max_element(totals.begin(), totals.end());
        const bool empty = !(top_value > 0) || !std::isfinite(top_value);

        std::vector<std::string_view> names;
        for (const auto& s : series_) {
            names.push_back(s.name);
        }
        const double legend = legend_width(names, width * 0.35);

        // category labels: horizontal if they fit their band, else rotated by
        // 45 degrees, cut to what the bottom margin allows
        std::size_t label_chars = 0;
        for (const auto& c : categories_) {
            label_chars = std::max(label_chars, length(c));
        }
        const double est_band = (width - 80.0 - legend) / static_cast<double>(std::max<std::size_t>(n, 1));
        const bool rotate = char_width * static_cast<double>(label_chars) > est_band - 4.0;
        const double max_rotated = std::max(30.0, height * 0.3);
        const std::size_t max_chars =
            rotate ? static_cast<std::size_t>(max_rotated / (char_width * 0.72)) : label_chars;
        const double label_height =
            rotate ? std::min(max_rotated, char_width * 0.72 * static_cast<double>(label_chars) + 10.0) : 16.0;

        frame f{0, title_.empty() ? 12.0 : 34.0, 0,
                height - 10.0 - label_height - (x_label_.empty() ? 0.0 : 18.0)};
        const axis ay = linear_axis(0.0, empty ? 1.0 : top_value, f.bottom - f.top, 40.0);
        f.left = (y_label_.empty() ? 8.0 : 26.0) + char_width * static_cast<double>(ay.label_chars()) + 8.0;
        f.right = std::max(width - 12.0 - (legend > 0 ? legend + 8.0 : 0.0), f.left + 10.0);
        draw_y_axis(out, ay, f, y_label_);

        const double band = (f.right - f.left) / static_cast<double>(std::max<std::size_t>(n, 1));
        // show every k-th label when the bands are narrower than a line of text
        const std::size_t every = band >= 14.0 ? 1 : static_cast<std::size_t>(std::ceil(14.0 / band));
        out += "<g class=\"x-axis\" fill=\"#333333\">\n";
        for (std::size_t i = 0; i < n; i += every) {
            const double cx = f.left + band * (static_cast<double>(i) + 0.5);
            const std::string label = shorten(categories_[i], rotate ? max_chars : static_cast<std::size_t>(
                                                                                      std::max(1.0, band / char_width)));
            if (rotate) {
                out += "<text transform=\"translate(" + num(cx + 4) + "," + num(f.bottom + 12) +
                       ") rotate(-45)\" text-anchor=\"end\">";
                escape_to(out, label);
                out += "</text>\n";
            } else {
                text(out, cx, f.bottom + 16, label, "text-anchor=\"middle\"");
            }
        }
        if (!x_label_.empty()) {
            text(out, (f.left + f.right) / 2, height - 8, x_label_, "text-anchor=\"middle\"");
        }
        out += "</g>\n";
        draw_frame(out, f);
        if (empty) {
            no_data(out, f);
        }

        std::vector<double> base(n, 0.0);
        const double bar = band * 0.7;
        for (std::size_t k = 0; k < series_.size(); ++k) {
            const bar_series& s = series_[k];
            const std::string color = escape(color_of(s.color, k));
            out += "<g class=\"series\" data-name=\"" + escape(s.name) + "\" fill=\"" + color + "\">\n";
            for (std::size_t i = 0; i < n; ++i) {
                const double v = s.values[i];
                if (empty || !std::isfinite(v) || v <= 0) {
                    continue;
                }
                const double y0 = ay.map(base[i], f.bottom, f.top);
                const double y1 = ay.map(base[i] + v, f.bottom, f.top);
                base[i] += v;
                out += "<rect x=\"" + num(f.left + band * static_cast<double>(i) + (band - bar) / 2) + "\" y=\"" +
                       num(y1) + "\" width=\"" + num(bar) + "\" height=\"" + num(y0 - y1) + "\"><title>";
                escape_to(out, categories_[i]);
                out += " / ";
                escape_to(out, s.name);
                out += ": " + short_number(v) + "</title></rect>\n";
            }
            out += "</g>\n";
        }

        if (!series_.empty()) {
            const auto legend_chars = static_cast<std::size_t>(std::max(3.0, (legend - 34.0) / char_width));
            out += "<g class=\"legend\">\n";
            for (std::size_t k = 0; k < series_.size(); ++k) {
                const double ly = f.top + 8.0 + 18.0 * static_cast<double>(k);
                out += "<rect x=\"" + num(f.right + 16) + "\" y=\"" + num(ly - 6) +
                       "\" width=\"12\" height=\"12\" fill=\"" + escape(color_of(series_[k].color, k)) + "\"/>\n";
                text(out, f.right + 34, ly + 4, shorten(series_[k].name, legend_chars));
            }
            out += "</g>\n";
        }
        out += "</g>\n";
        return out;
    }

private:
    std::string title_, x_label_, y_label_;
    std::vector<std::string> categories_;
    std::vector<bar_series> series_;
};

/// One panel of a figure: either kind of chart.
using panel = std::variant<chart, bar_chart>;

/// Renders `p` as a fragment of `width` x `height` pixels at (x, y).
[[nodiscard]] inline std::string render(const panel& p, double x, double y, double width, double height) {
    return std::visit([&](const auto& c) { return c.render(x, y, width, height); }, p);
}

/// A standalone SVG document with `panels` in a grid of `columns` columns
/// (filled row by row), each `panel_width` x `panel_height` pixels.
/// @throws frugal::error if there are no panels, columns is 0 or a size is
/// not positive.
[[nodiscard]] inline std::string document(const std::vector<panel>& panels, std::size_t columns = 1,
                                          double panel_width = default_width, double panel_height = default_height) {
    if (panels.empty() || columns == 0 || !(panel_width > 0) || !(panel_height > 0)) {
        throw error(frugal::detail::concat("svg::document: need at least one panel, one column and a positive "
                                           "panel size; found ",
                                           panels.size(), " panels, ", columns, " columns, ", panel_width, "x",
                                           panel_height, " pixels"));
    }
    const std::size_t cols = std::min(columns, panels.size());
    const std::size_t rows = (panels.size() + cols - 1) / cols;
    const double w = panel_width * static_cast<double>(cols);
    const double h = panel_height * static_cast<double>(rows);
    using detail::num;
    std::string out = "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"no\"?>\n";
    out += "<svg xmlns=\"http://www.w3.org/2000/svg\" version=\"1.1\" width=\"" + num(w) + "\" height=\"" + num(h) +
           "\" viewBox=\"0 0 " + num(w) + " " + num(h) + "\" font-family=\"sans-serif\" font-size=\"12\">\n";
    out += "<rect width=\"" + num(w) + "\" height=\"" + num(h) + "\" fill=\"#ffffff\"/>\n";
    for (std::size_t i = 0; i < panels.size(); ++i) {
        out += render(panels[i], panel_width * static_cast<double>(i % cols),
                      panel_height * static_cast<double>(i / cols), panel_width, panel_height);
    }
    out += "</svg>\n";
    return out;
}

/// Writes document(panels, ...) to `file`, replacing it atomically.
/// @throws frugal::error as document(); frugal::io_error naming the file and
/// the system's reason if it cannot be written.
inline void write(const std::filesystem::path& file, const std::vector<panel>& panels, std::size_t columns = 1,
                  double panel_width = default_width, double panel_height = default_height) {
    frugal::detail::write_text_atomically(file, document(panels, columns, panel_width, panel_height), "SVG");
}

/// Writes one chart to `file` as a standalone SVG of the default size (see
/// write(); for another size: `write(file, {c}, 1, width, height)`).
/// No size parameters here on purpose: `write(file, {c}, 2)` must not pick
/// this overload with a width of 2.
inline void write(const std::filesystem::path& file, const chart& c) { write(file, std::vector<panel>{c}); }

/// Writes one bar chart to `file` as a standalone SVG of the default size
/// (see the chart overload).
inline void write(const std::filesystem::path& file, const bar_chart& c) { write(file, std::vector<panel>{c}); }

} // namespace frugal::svg

#endif
