#ifndef FRUGAL_TESTS_COST_XML_CHECK_HPP
#define FRUGAL_TESTS_COST_XML_CHECK_HPP

// The XML well-formedness checker the cost tests use on frugal's SVG output.

#include <cctype>
#include <cstddef>
#include <set>
#include <string>
#include <string_view>
#include <vector>

namespace xmlcheck {

/// A small well-formedness checker for the XML frugal writes: an optional
/// prolog, one root element, balanced and properly nested tags, attributes
/// with quoted values and unique names, only the five predefined entities
/// and character references, no raw '<' or '&' in text, no control
/// characters. Returns "" if well-formed, else what is wrong and where.
class xml_checker {
public:
    explicit xml_checker(std::string_view doc) : doc_(doc) {}

    std::string check() {
        if (doc_.substr(0, 5) == "<?xml") {
            const auto end = doc_.find("?>");
            if (end == std::string_view::npos) {
                return at("unterminated XML declaration");
            }
            pos_ = end + 2;
        }
        for (std::size_t i = 0; i < doc_.size(); ++i) {
            const auto c = static_cast<unsigned char>(doc_[i]);
            if (c < 0x20 && c != '\t' && c != '\n' && c != '\r') {
                pos_ = i;
                return at("control character");
            }
        }
        std::size_t roots = 0;
        while (true) {
            skip_misc();
            if (pos_ >= doc_.size()) {
                break;
            }
            if (doc_[pos_] != '<') {
                return at("text outside the root element");
            }
            if (++roots > 1) {
                return at("a second root element");
            }
            if (auto e = element(); !e.empty()) {
                return e;
            }
        }
        return roots == 1 ? std::string() : at("no root element");
    }

    /// Element names seen, with their counts.
    std::multiset<std::string> names;

private:
    std::string at(const std::string& what) const { return what + " at offset " + std::to_string(pos_); }

    void skip_space() {
        while (pos_ < doc_.size() && std::isspace(static_cast<unsigned char>(doc_[pos_]))) {
            ++pos_;
        }
    }
    void skip_misc() {
        for (;;) {
            skip_space();
            if (doc_.substr(pos_, 4) == "<!--") {
                const auto end = doc_.find("-->", pos_ + 4);
                pos_ = end == std::string_view::npos ? doc_.size() : end + 3;
                continue;
            }
            return;
        }
    }

    static bool name_start(char c) { return std::isalpha(static_cast<unsigned char>(c)) || c == '_' || c == ':'; }
    static bool name_char(char c) {
        return name_start(c) || std::isdigit(static_cast<unsigned char>(c)) || c == '-' || c == '.';
    }

    std::string name(std::string& out) {
        if (pos_ >= doc_.size() || !name_start(doc_[pos_])) {
            return at("expected a name");
        }
        const std::size_t start = pos_;
        while (pos_ < doc_.size() && name_char(doc_[pos_])) {
            ++pos_;
        }
        out = std::string(doc_.substr(start, pos_ - start));
        return "";
    }

    std::string entity() { // at '&'
        const auto end = doc_.find(';', pos_);
        if (end == std::string_view::npos || end - pos_ > 10) {
            return at("'&' that does not start an entity");
        }
        const std::string_view e = doc_.substr(pos_ + 1, end - pos_ - 1);
        bool ok = e == "amp" || e == "lt" || e == "gt" || e == "quot" || e == "apos";
        if (!ok && e.size() >= 2 && e[0] == '#') {
            ok = true;
            const bool hex = e[1] == 'x';
            for (std::size_t i = hex ? 2 : 1; i < e.size(); ++i) {
                ok = ok && (hex ? std::isxdigit(static_cast<unsigned char>(e[i])) != 0
                                : std::isdigit(static_cast<unsigned char>(e[i])) != 0);
            }
            ok = ok && e.size() > (hex ? 2u : 1u);
        }
        if (!ok) {
            return at("unknown entity &" + std::string(e) + ";");
        }
        pos_ = end + 1;
        return "";
    }

    std::string element() { // at '<'
        ++pos_;
        std::string tag;
        if (auto e = name(tag); !e.empty()) {
            return e;
        }
        names.insert(tag);
        std::set<std::string> attributes;
        for (;;) {
            const std::size_t before = pos_;
            skip_space();
            if (doc_.substr(pos_, 2) == "/>") {
                pos_ += 2;
                return "";
            }
            if (pos_ < doc_.size() && doc_[pos_] == '>') {
                ++pos_;
                break;
            }
            if (pos_ == before) {
                return at("expected whitespace, '>' or '/>' in <" + tag + ">");
            }
            std::string attr;
            if (auto e = name(attr); !e.empty()) {
                return e + " (attribute of <" + tag + ">)";
            }
            if (!attributes.insert(attr).second) {
                return at("duplicate attribute " + attr);
            }
            skip_space();
            if (pos_ >= doc_.size() || doc_[pos_] != '=') {
                return at("expected '=' after attribute " + attr);
            }
            ++pos_;
            skip_space();
            if (pos_ >= doc_.size() || (doc_[pos_] != '"' && doc_[pos_] != '\'')) {
                return at("unquoted value of attribute " + attr);
            }
            const char quote = doc_[pos_++];
            while (pos_ < doc_.size() && doc_[pos_] != quote) {
                if (doc_[pos_] == '<') {
                    return at("'<' in the value of attribute " + attr);
                }
                if (doc_[pos_] == '&') {
                    if (auto e = entity(); !e.empty()) {
                        return e;
                    }
                    continue;
                }
                ++pos_;
            }
            if (pos_ >= doc_.size()) {
                return at("unterminated value of attribute " + attr);
            }
            ++pos_;
        }
        // content
        for (;;) {
            if (pos_ >= doc_.size()) {
                return at("unclosed <" + tag + ">");
            }
            const char c = doc_[pos_];
            if (c == '&') {
                if (auto e = entity(); !e.empty()) {
                    return e;
                }
            } else if (c == '<') {
                if (doc_.substr(pos_, 4) == "<!--") {
                    skip_misc();
                } else if (doc_.substr(pos_, 2) == "</") {
                    pos_ += 2;
                    std::string closing;
                    if (auto e = name(closing); !e.empty()) {
                        return e;
                    }
                    if (closing != tag) {
                        return at("</" + closing + "> closes <" + tag + ">");
                    }
                    skip_space();
                    if (pos_ >= doc_.size() || doc_[pos_] != '>') {
                        return at("expected '>' after </" + closing);
                    }
                    ++pos_;
                    return "";
                } else if (auto e = element(); !e.empty()) {
                    return e;
                }
            } else if (c == '>' && pos_ >= 2 && doc_.substr(pos_ - 2, 3) == "]]>") {
                return at("']]>' in text");
            } else {
                ++pos_;
            }
        }
    }

    std::string_view doc_;
    std::size_t pos_ = 0;
};

inline std::string xml_error(std::string_view doc) { return xml_checker(doc).check(); }

} // namespace xmlcheck

#endif
