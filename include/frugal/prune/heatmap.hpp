#ifndef FRUGAL_PRUNE_HEATMAP_HPP
#define FRUGAL_PRUNE_HEATMAP_HPP

/// @file
/// The mask-distance matrix as an SVG heat map, the figure of the Early-Bird
/// paper: cell (i, j) is the normalized Hamming distance between the ticket
/// masks of epochs i and j, dark for 0 (equal masks) and bright for the
/// largest distance shown, with a colour bar, epoch labels and an optional
/// frame around the epoch where the detector fired.
///
/// frugal's chart module (cost/svg.hpp) draws line and bar charts; this small
/// writer only needs rectangles and text, so it stands alone.

#include <algorithm>
#include <array>
#include <cmath>
#include <cstddef>
#include <cstdio>
#include <filesystem>
#include <fstream>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "frugal/error.hpp"

namespace frugal {

struct heatmap_options {
    std::string title = "mask distance between epochs";
    std::string axis_label = "epoch";
    /// Label of row/column 0 (epochs are numbered from it).
    std::size_t first_label = 1;
    /// Row/column to frame (the early-bird epoch).
    std::optional<std::size_t> highlight;
    /// Value of the brightest colour; 0 takes the matrix maximum (at least 1e-9).
    double scale_max = 0.0;
    /// Side of one cell in pixels; 0 picks one from the matrix size.
    double cell = 0.0;
};

namespace detail {

inline std::string xml_escape(std::string_view s) {
    std::string out;
    for (const char c : s) {
        switch (c) {
        case '&': out += "&amp;"; break;
        case '<': out += "&lt;"; break;
        case '>': out += "&gt;"; break;
        case '"': out += "&quot;"; break;
        default: out += static_cast<unsigned char>(c) < 0x20 ? ' ' : c;
        }
    }
    return out;
}

/// Viridis-like colour of t in [0, 1], as "#rrggbb".
inline std::string heat_colour(double t) {
    static constexpr std::array<std::array<double, 3>, 5> stops = {
        {{68, 1, 84}, {59, 82, 139}, {33, 145, 140}, {94, 201, 98}, {253, 231, 37}}};
    t = std::clamp(std::isfinite(t) ? t : 0.0, 0.0, 1.0) * 4.0;
    const auto i = std::min<std::size_t>(3, static_cast<std::size_t>(t));
    const double f = t - static_cast<double>(i);
    char buf[8];
    int rgb[3];
    for (int k = 0; k < 3; ++k) {
        rgb[k] = static_cast<int>(std::lround(stops[i][static_cast<std::size_t>(k)] * (1.0 - f) +
                                              stops[i + 1][static_cast<std::size_t>(k)] * f));
    }
    std::snprintf(buf, sizeof buf, "#%02x%02x%02x", rgb[0], rgb[1], rgb[2]);
    return buf;
}

inline std::string fmt(double v, int decimals = 2) {
    char buf[32];
    std::snprintf(buf, sizeof buf, "%.*f", decimals, v);
    return buf;
}

} // namespace detail

/// The SVG document of a square distance matrix.
[[nodiscard]] inline std::string mask_distance_svg(const std::vector<std::vector<double>>& d,
                                                   const heatmap_options& o = {}) {
    const std::size_t n = d.size();
    for (const auto& row : d) {
        if (row.size() != n) {
            throw shape_error(detail::concat("frugal::mask_distance_svg: the matrix must be square; a row has ",
                                             row.size(), " entries for ", n, " rows"));
        }
    }
    double top = o.scale_max;
    if (top <= 0.0) {
        top = 1e-9;
        for (const auto& row : d) {
            for (const double v : row) {
                top = std::isfinite(v) ? std::max(top, v) : top;
            }
        }
    }
    const double cell = o.cell > 0.0 ? o.cell : std::clamp(480.0 / static_cast<double>(std::max<std::size_t>(n, 1)), 4.0, 40.0);
    const double left = 60.0, top_margin = 40.0, grid = cell * static_cast<double>(n);
    const double bar_x = left + grid + 20.0, bar_w = 16.0, bar_h = std::max(grid, 120.0);
    const double width = bar_x + bar_w + 60.0, height = top_margin + std::max(grid, bar_h) + 50.0;
    // label every k-th epoch so that labels do not overlap
    const std::size_t every = std::max<std::size_t>(1, static_cast<std::size_t>(std::ceil(18.0 / cell)));

    std::string s;
    s += "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n";
    s += "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"" + detail::fmt(width) + "\" height=\"" +
         detail::fmt(height) + "\" viewBox=\"0 0 " + detail::fmt(width) + " " + detail::fmt(height) +
         "\" font-family=\"sans-serif\" font-size=\"11\">\n";
    s += "<rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n";
    s += "<text x=\"" + detail::fmt(left) + "\" y=\"22\" font-size=\"14\">" + detail::xml_escape(o.title) + "</text>\n";
    s += "<g class=\"cells\">\n";
    for (std::size_t i = 0; i < n; ++i) {
        for (std::size_t j = 0; j < n; ++j) {
            const double v = d[i][j];
            s += "<rect x=\"" + detail::fmt(left + cell * static_cast<double>(j)) + "\" y=\"" +
                 detail::fmt(top_margin + cell * static_cast<double>(i)) + "\" width=\"" + detail::fmt(cell) +
                 "\" height=\"" + detail::fmt(cell) + "\" fill=\"" + detail::heat_colour(v / top) + "\"><title>" +
                 detail::xml_escape(o.axis_label) + " " + std::to_string(o.first_label + i) + " vs " + std::to_string(o.first_label + j) +
                 ": " + detail::fmt(v, 4) + "</title></rect>\n";
        }
    }
    s += "</g>\n";
    for (std::size_t i = 0; i < n; i += every) {
        const double c = cell * (static_cast<double>(i) + 0.5);
        const std::string label = std::to_string(o.first_label + i);
        s += "<text x=\"" + detail::fmt(left - 4.0) + "\" y=\"" + detail::fmt(top_margin + c + 4.0) +
             "\" text-anchor=\"end\">" + label + "</text>\n";
        s += "<text x=\"" + detail::fmt(left + c) + "\" y=\"" + detail::fmt(top_margin + grid + 14.0) +
             "\" text-anchor=\"middle\">" + label + "</text>\n";
    }
    s += "<text x=\"" + detail::fmt(left + grid / 2.0) + "\" y=\"" + detail::fmt(top_margin + grid + 32.0) +
         "\" text-anchor=\"middle\">" + detail::xml_escape(o.axis_label) + "</text>\n";
    if (o.highlight && *o.highlight < n) {
        const double p = cell * static_cast<double>(*o.highlight);
        s += "<rect class=\"highlight\" x=\"" + detail::fmt(left) + "\" y=\"" + detail::fmt(top_margin + p) +
             "\" width=\"" + detail::fmt(grid) + "\" height=\"" + detail::fmt(cell) +
             "\" fill=\"none\" stroke=\"red\" stroke-width=\"1.5\"/>\n";
        s += "<rect class=\"highlight\" x=\"" + detail::fmt(left + p) + "\" y=\"" + detail::fmt(top_margin) +
             "\" width=\"" + detail::fmt(cell) + "\" height=\"" + detail::fmt(grid) +
             "\" fill=\"none\" stroke=\"red\" stroke-width=\"1.5\"/>\n";
    }
    // colour bar: 0 at the bottom, `top` at the top
    constexpr int steps = 32;
    for (int k = 0; k < steps; ++k) {
        const double t = (static_cast<double>(k) + 0.5) / steps;
        const double y = top_margin + bar_h * (1.0 - static_cast<double>(k + 1) / steps);
        s += "<rect x=\"" + detail::fmt(bar_x) + "\" y=\"" + detail::fmt(y) + "\" width=\"" + detail::fmt(bar_w) +
             "\" height=\"" + detail::fmt(bar_h / steps + 0.5) + "\" fill=\"" + detail::heat_colour(t) + "\"/>\n";
    }
    s += "<text x=\"" + detail::fmt(bar_x + bar_w + 4.0) + "\" y=\"" + detail::fmt(top_margin + 10.0) + "\">" +
         detail::fmt(top, 3) + "</text>\n";
    s += "<text x=\"" + detail::fmt(bar_x + bar_w + 4.0) + "\" y=\"" + detail::fmt(top_margin + bar_h) + "\">0</text>\n";
    s += "</svg>\n";
    return s;
}

/// Writes mask_distance_svg(d, o) to `file`.
inline void write_mask_distance_svg(const std::filesystem::path& file, const std::vector<std::vector<double>>& d,
                                    const heatmap_options& o = {}) {
    const std::string doc = mask_distance_svg(d, o);
    std::ofstream out(file, std::ios::binary);
    out << doc;
    if (!out) {
        throw io_error(detail::concat(file.string(), ": cannot write the heat map"));
    }
}

} // namespace frugal

#endif
