#ifndef FRUGAL_COST_JSON_HPP
#define FRUGAL_COST_JSON_HPP

/// @file
/// frugal::json: a small JSON (RFC 8259) value, reader and writer, so that
/// run summaries can be written and users' energy tables read without a
/// dependency.
///
/// - Objects keep their keys in insertion order (a summary reads in the order
///   it was written); duplicate keys are rejected when parsing.
/// - Numbers are doubles. Integral values below 2^53 are written without a
///   decimal point, every other finite value with the shortest text that
///   reads back to the same double. NaN and infinities have no JSON form:
///   dump() throws frugal::error naming where the value sits.
/// - Parse errors are frugal::io_error with the message
///   "<source>: line L, column C: expected ..., found ...".
/// - write_file() replaces the file atomically (temporary file in the same
///   folder, flushed, then renamed), so a reader never sees half a file.

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <charconv>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <string>
#include <string_view>
#include <system_error>
#include <type_traits>
#include <unordered_map>
#include <utility>
#include <variant>
#include <vector>

#include <fcntl.h>
#include <unistd.h>

#include "frugal/error.hpp"

namespace frugal {

namespace detail {

/// Replaces `path` atomically by a file holding `content`: writes a temporary
/// file next to it (same folder, so the rename cannot cross file systems),
/// flushes it to disk, then renames it over `path`. Throws frugal::io_error
/// naming the path, `what` is being written and the system's reason.
inline void write_text_atomically(const std::filesystem::path& path, std::string_view content, std::string_view what) {
    static std::atomic<unsigned long> counter{0};
    const std::string tmp =
        path.string() + ".tmp." + std::to_string(::getpid()) + "." + std::to_string(counter.fetch_add(1));
    const auto fail = [&](const char* step, int err) {
        return io_error(concat(path.string(), ": cannot ", step, " ", what, ": ", std::strerror(err)));
    };
    const int fd = ::open(tmp.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
    if (fd < 0) {
        throw fail("write", errno);
    }
    const char* p = content.data();
    std::size_t left = content.size();
    while (left > 0) {
        const ssize_t w = ::write(fd, p, left);
        if (w < 0) {
            if (errno == EINTR) {
                continue;
            }
            const int e = errno;
            ::close(fd);
            ::unlink(tmp.c_str());
            throw fail("write", e);
        }
        p += w;
        left -= static_cast<std::size_t>(w);
    }
    if (::fsync(fd) != 0) {
        const int e = errno;
        ::close(fd);
        ::unlink(tmp.c_str());
        throw fail("flush", e);
    }
    if (::close(fd) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw fail("write", e);
    }
    if (::rename(tmp.c_str(), path.c_str()) != 0) {
        const int e = errno;
        ::unlink(tmp.c_str());
        throw fail("replace", e);
    }
}

/// Length of the valid UTF-8 sequence that starts at `s[at]` (1 for ASCII),
/// or 0 if the bytes there are not valid UTF-8 (RFC 3629: no overlong forms,
/// no surrogates, nothing above U+10FFFF).
[[nodiscard]] inline std::size_t utf8_sequence_length(std::string_view s, std::size_t at) noexcept {
    const auto b = [&](std::size_t k) { return at + k < s.size() ? static_cast<unsigned char>(s[at + k]) : 0u; };
    const auto cont = [&](std::size_t k, unsigned lo = 0x80, unsigned hi = 0xBF) { return b(k) >= lo && b(k) <= hi; };
    const unsigned c = b(0);
    if (at >= s.size()) {
        return 0;
    }
    if (c < 0x80) {
        return 1;
    }
    if (c >= 0xC2 && c <= 0xDF) {
        return cont(1) ? 2 : 0;
    }
    if (c == 0xE0) {
        return cont(1, 0xA0) && cont(2) ? 3 : 0;
    }
    if ((c >= 0xE1 && c <= 0xEC) || c == 0xEE || c == 0xEF) {
        return cont(1) && cont(2) ? 3 : 0;
    }
    if (c == 0xED) {
        return cont(1, 0x80, 0x9F) && cont(2) ? 3 : 0;
    }
    if (c == 0xF0) {
        return cont(1, 0x90) && cont(2) && cont(3) ? 4 : 0;
    }
    if (c >= 0xF1 && c <= 0xF3) {
        return cont(1) && cont(2) && cont(3) ? 4 : 0;
    }
    if (c == 0xF4) {
        return cont(1, 0x80, 0x8F) && cont(2) && cont(3) ? 4 : 0;
    }
    return 0;
}

} // namespace detail

namespace json {

class value;

/// A JSON array.
using array = std::vector<value>;

/// A JSON object: members in insertion order. Keys are unique in anything
/// parse() returns; operator[] keeps them unique.
using object = std::vector<std::pair<std::string, value>>;

/// The six kinds of JSON value.
enum class kind : std::uint8_t { null, boolean, number, string, array, object };

/// The kind's name with its article, as error messages use it ("a number",
/// "an object", "null").
[[nodiscard]] constexpr std::string_view describe(kind k) noexcept {
    switch (k) {
    case kind::null: return "null";
    case kind::boolean: return "a boolean";
    case kind::number: return "a number";
    case kind::string: return "a string";
    case kind::array: return "an array";
    case kind::object: return "an object";
    }
    return "?";
}

/// Parsing rejects documents nested deeper than this (arrays and objects).
inline constexpr int max_depth = 256;

/// A JSON value: null, boolean, number (double), string, array or object.
///
/// Built implicitly from C++ values:
/// `json::object{{"name", "conv1"}, {"energy", 1.5e-3}, {"calls", 12}}`,
/// `json::array{1, "two", true, nullptr}`.
/// Accessors check the kind and throw frugal::error naming the expected and
/// the found kind.
class value {
public:
    /// Null.
    value() noexcept = default;
    /// Null.
    value(std::nullptr_t) noexcept {}
    /// A boolean.
    value(bool b) noexcept : data_(b) {}
    /// A number. Integers above 2^53 in magnitude are rounded to the nearest
    /// double.
    template <class T>
        requires(std::is_arithmetic_v<T> && !std::is_same_v<T, bool>)
    value(T n) noexcept : data_(static_cast<double>(n)) {}
    /// A string (UTF-8).
    value(std::string s) noexcept : data_(std::move(s)) {}
    /// A string (UTF-8).
    value(std::string_view s) : data_(std::string(s)) {}
    /// A string (UTF-8); `s` must not be null.
    value(const char* s) : data_(std::string(s)) {}
    /// Other pointers would silently become booleans: not allowed.
    template <class T>
    value(const T*) = delete;
    /// An array.
    value(array a) noexcept : data_(std::move(a)) {}
    /// An object.
    value(object o) noexcept : data_(std::move(o)) {}

    /// The kind of this value.
    [[nodiscard]] json::kind kind() const noexcept { return static_cast<json::kind>(data_.index()); }
    /// True if null.
    [[nodiscard]] bool is_null() const noexcept { return kind() == json::kind::null; }
    /// True if a boolean.
    [[nodiscard]] bool is_bool() const noexcept { return kind() == json::kind::boolean; }
    /// True if a number.
    [[nodiscard]] bool is_number() const noexcept { return kind() == json::kind::number; }
    /// True if a string.
    [[nodiscard]] bool is_string() const noexcept { return kind() == json::kind::string; }
    /// True if an array.
    [[nodiscard]] bool is_array() const noexcept { return kind() == json::kind::array; }
    /// True if an object.
    [[nodiscard]] bool is_object() const noexcept { return kind() == json::kind::object; }

    /// The boolean. @throws frugal::error if this is not a boolean.
    [[nodiscard]] bool as_bool() const { return get<bool>(json::kind::boolean); }
    /// The number. @throws frugal::error if this is not a number.
    [[nodiscard]] double as_number() const { return get<double>(json::kind::number); }
    /// The string. @throws frugal::error if this is not a string.
    [[nodiscard]] const std::string& as_string() const { return get<std::string>(json::kind::string); }
    /// The elements. @throws frugal::error if this is not an array.
    [[nodiscard]] const array& as_array() const { return get<array>(json::kind::array); }
    /// The elements. @throws frugal::error if this is not an array.
    [[nodiscard]] array& as_array() { return get<array>(json::kind::array); }
    /// The members. @throws frugal::error if this is not an object.
    [[nodiscard]] const object& as_object() const { return get<object>(json::kind::object); }
    /// The members. @throws frugal::error if this is not an object.
    [[nodiscard]] object& as_object() { return get<object>(json::kind::object); }

    /// The member called `key`, or nullptr if there is none or this is not an
    /// object.
    [[nodiscard]] const value* find(std::string_view key) const noexcept {
        if (const auto* o = std::get_if<object>(&data_)) {
            for (const auto& [k, v] : *o) {
                if (k == key) {
                    return &v;
                }
            }
        }
        return nullptr;
    }
    /// The member called `key`, or nullptr.
    [[nodiscard]] value* find(std::string_view key) noexcept {
        return const_cast<value*>(static_cast<const value&>(*this).find(key));
    }

    /// The member called `key`. @throws frugal::error if this is not an
    /// object, or naming the missing key and the keys present.
    [[nodiscard]] const value& at(std::string_view key) const {
        const object& o = get<object>(json::kind::object);
        if (const value* v = find(key)) {
            return *v;
        }
        std::string keys;
        for (std::size_t i = 0; i < o.size() && i < 20; ++i) {
            keys += (i == 0 ? "\"" : ", \"") + o[i].first + "\"";
        }
        if (o.size() > 20) {
            keys += ", ...";
        }
        throw error(detail::concat("json: no key \"", key, "\" in the object (keys: ",
                                   o.empty() ? std::string("none") : keys, ")"));
    }
    /// The member called `key`. @throws frugal::error as the const version.
    [[nodiscard]] value& at(std::string_view key) {
        return const_cast<value&>(static_cast<const value&>(*this).at(key));
    }

    /// The element at `index`. @throws frugal::error if this is not an array
    /// or naming the index and the array's size.
    [[nodiscard]] const value& at(std::size_t index) const {
        const array& a = get<array>(json::kind::array);
        if (index >= a.size()) {
            throw error(detail::concat("json: index ", index, " is out of range for an array of ", a.size(),
                                       " element", a.size() == 1 ? "" : "s"));
        }
        return a[index];
    }
    /// The element at `index`. @throws frugal::error as the const version.
    [[nodiscard]] value& at(std::size_t index) {
        return const_cast<value&>(static_cast<const value&>(*this).at(index));
    }

    /// The member called `key`, appended as null if absent. A null value
    /// becomes an empty object first.
    /// @throws frugal::error if this is neither null nor an object.
    value& operator[](std::string_view key) {
        if (is_null()) {
            data_ = object{};
        }
        object& o = get<object>(json::kind::object);
        for (auto& [k, v] : o) {
            if (k == key) {
                return v;
            }
        }
        o.emplace_back(std::string(key), value{});
        return o.back().second;
    }

    /// Appends `v`. A null value becomes an empty array first.
    /// @throws frugal::error if this is neither null nor an array.
    void push_back(value v) {
        if (is_null()) {
            data_ = array{};
        }
        get<array>(json::kind::array).push_back(std::move(v));
    }

    /// Number of elements of an array or members of an object; 0 for null.
    /// @throws frugal::error for a boolean, a number or a string.
    [[nodiscard]] std::size_t size() const {
        switch (kind()) {
        case json::kind::null: return 0;
        case json::kind::array: return std::get<array>(data_).size();
        case json::kind::object: return std::get<object>(data_).size();
        default:
            throw error(detail::concat("json: size() needs an array or an object, found ", describe(kind())));
        }
    }

    /// Deep equality; objects compare member by member in order, numbers as
    /// doubles (so NaN differs from itself).
    friend bool operator==(const value&, const value&) = default;

private:
    template <class T>
    [[nodiscard]] const T& get(json::kind expected) const {
        if (const T* p = std::get_if<T>(&data_)) {
            return *p;
        }
        throw error(detail::concat("json: expected ", describe(expected), ", found ", describe(kind())));
    }
    template <class T>
    [[nodiscard]] T& get(json::kind expected) {
        return const_cast<T&>(static_cast<const value&>(*this).get<T>(expected));
    }

    // The order of the alternatives follows json::kind.
    std::variant<std::nullptr_t, bool, double, std::string, array, object> data_{nullptr};
};

namespace detail {

/// Recursive-descent parser over a whole document.
class parser {
public:
    parser(std::string_view text, std::string_view source) : text_(text), source_(source) {}

    value document() {
        if (text_.substr(0, 3) == "\xEF\xBB\xBF") {
            pos_ = 3; // a UTF-8 byte order mark, as some editors write
        }
        skip_space();
        value v = parse_value();
        skip_space();
        if (pos_ < text_.size()) {
            fail(pos_, frugal::detail::concat("expected end of input after the JSON value, found ", found(pos_)));
        }
        return v;
    }

private:
    struct location {
        std::size_t line = 1;
        std::size_t column = 1;
    };

    [[nodiscard]] location locate(std::size_t at) const {
        location l;
        for (std::size_t i = 0; i < at && i < text_.size(); ++i) {
            const auto c = static_cast<unsigned char>(text_[i]);
            if (c == '\n') {
                ++l.line;
                l.column = 1;
            } else if ((c & 0xC0) != 0x80) { // columns count characters, not UTF-8 continuation bytes
                ++l.column;
            }
        }
        return l;
    }

    [[noreturn]] void fail(std::size_t at, const std::string& what) const {
        const location l = locate(at);
        throw io_error(frugal::detail::concat(source_, ": line ", l.line, ", column ", l.column, ": ", what));
    }

    /// What sits at `at`, for "found ..." in messages.
    [[nodiscard]] std::string found(std::size_t at) const {
        if (at >= text_.size()) {
            return "end of input";
        }
        const auto c = static_cast<unsigned char>(text_[at]);
        char buf[16];
        if (c >= 0x20 && c < 0x7F) {
            return c == '\'' ? std::string("\"'\"") : std::string("'") + static_cast<char>(c) + "'";
        }
        if (c < 0x20 || c == 0x7F) {
            std::snprintf(buf, sizeof buf, "U+%04X", c);
            return std::string("control character ") + buf;
        }
        std::snprintf(buf, sizeof buf, "0x%02X", c);
        return std::string("byte ") + buf;
    }

    [[nodiscard]] bool at_end() const noexcept { return pos_ >= text_.size(); }
    [[nodiscard]] char peek() const noexcept { return pos_ < text_.size() ? text_[pos_] : '\0'; }

    void skip_space() noexcept {
        while (pos_ < text_.size()) {
            const char c = text_[pos_];
            if (c != ' ' && c != '\t' && c != '\n' && c != '\r') {
                return;
            }
            ++pos_;
        }
    }

    void expect_literal(std::string_view word) {
        if (text_.substr(pos_, word.size()) != word) {
            std::size_t end = pos_; // the word that is there instead, for the message
            while (end < text_.size() && end - pos_ < 20 &&
                   ((text_[end] >= 'a' && text_[end] <= 'z') || (text_[end] >= 'A' && text_[end] <= 'Z'))) {
                ++end;
            }
            fail(pos_, frugal::detail::concat("expected '", word, "', found '", text_.substr(pos_, end - pos_), "'"));
        }
        pos_ += word.size();
    }

    value parse_value() {
        if (at_end()) {
            fail(pos_, "expected a value, found end of input");
        }
        switch (peek()) {
        case '{': return parse_object();
        case '[': return parse_array();
        case '"': return value(parse_string());
        case 't': expect_literal("true"); return value(true);
        case 'f': expect_literal("false"); return value(false);
        case 'n': expect_literal("null"); return value(nullptr);
        default:
            if (peek() == '-' || (peek() >= '0' && peek() <= '9')) {
                return value(parse_number());
            }
            fail(pos_, frugal::detail::concat("expected a value (object, array, string, number, true, false or null), "
                                              "found ",
                                              found(pos_)));
        }
    }

    void enter(std::size_t at) {
        if (++depth_ > max_depth) {
            fail(at, frugal::detail::concat("nesting deeper than ", max_depth, " levels of arrays and objects"));
        }
    }

    value parse_array() {
        enter(pos_);
        ++pos_; // '['
        array a;
        skip_space();
        if (peek() == ']') {
            ++pos_;
            --depth_;
            return value(std::move(a));
        }
        for (;;) {
            skip_space();
            a.push_back(parse_value());
            skip_space();
            if (peek() == ',') {
                const std::size_t comma = pos_;
                ++pos_;
                skip_space();
                if (peek() == ']') {
                    fail(comma, "trailing comma before ']': expected another array element after ','");
                }
                continue;
            }
            if (peek() == ']') {
                ++pos_;
                break;
            }
            fail(pos_, frugal::detail::concat("expected ',' or ']' after an array element, found ", found(pos_)));
        }
        --depth_;
        return value(std::move(a));
    }

    value parse_object() {
        enter(pos_);
        ++pos_; // '{'
        object o;
        std::vector<std::size_t> key_at; // where each key starts, for duplicate messages
        std::unordered_map<std::string, std::size_t> index; // key -> member, once the object is large
        skip_space();
        if (peek() == '}') {
            ++pos_;
            --depth_;
            return value(std::move(o));
        }
        for (;;) {
            skip_space();
            if (peek() != '"') {
                fail(pos_, frugal::detail::concat("expected a string key in double quotes, found ", found(pos_)));
            }
            const std::size_t start = pos_;
            std::string key = parse_string();
            std::size_t first = o.size();
            if (index.empty()) {
                for (std::size_t i = 0; i < o.size(); ++i) {
                    if (o[i].first == key) {
                        first = i;
                        break;
                    }
                }
            } else if (const auto it = index.find(key); it != index.end()) {
                first = it->second;
            }
            if (first != o.size()) {
                const location l = locate(key_at[first]);
                fail(start, frugal::detail::concat("duplicate key \"", key, "\" in an object (first at line ", l.line,
                                                   ", column ", l.column, ")"));
            }
            skip_space();
            if (peek() != ':') {
                fail(pos_, frugal::detail::concat("expected ':' after the key \"", key, "\", found ", found(pos_)));
            }
            ++pos_;
            skip_space();
            value v = parse_value();
            o.emplace_back(std::move(key), std::move(v));
            key_at.push_back(start);
            if (!index.empty()) {
                index.emplace(o.back().first, o.size() - 1);
            } else if (o.size() == 16) { // linear search up to here, hashing from now on
                for (std::size_t i = 0; i < o.size(); ++i) {
                    index.emplace(o[i].first, i);
                }
            }
            skip_space();
            if (peek() == ',') {
                const std::size_t comma = pos_;
                ++pos_;
                skip_space();
                if (peek() == '}') {
                    fail(comma, "trailing comma before '}': expected another member after ','");
                }
                continue;
            }
            if (peek() == '}') {
                ++pos_;
                break;
            }
            fail(pos_, frugal::detail::concat("expected ',' or '}' after an object member, found ", found(pos_)));
        }
        --depth_;
        return value(std::move(o));
    }

    [[nodiscard]] unsigned hex4(std::size_t at) const {
        unsigned u = 0;
        for (std::size_t i = 0; i < 4; ++i) {
            const char c = at + i < text_.size() ? text_[at + i] : '\0';
            unsigned d = 0;
            if (c >= '0' && c <= '9') {
                d = static_cast<unsigned>(c - '0');
            } else if (c >= 'a' && c <= 'f') {
                d = static_cast<unsigned>(c - 'a' + 10);
            } else if (c >= 'A' && c <= 'F') {
                d = static_cast<unsigned>(c - 'A' + 10);
            } else {
                fail(at + i, frugal::detail::concat("expected 4 hex digits after \\u, found ", found(at + i)));
            }
            u = u * 16 + d;
        }
        return u;
    }

    static void append_utf8(std::string& out, unsigned cp) {
        if (cp < 0x80) {
            out += static_cast<char>(cp);
        } else if (cp < 0x800) {
            out += static_cast<char>(0xC0 | (cp >> 6));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else if (cp < 0x10000) {
            out += static_cast<char>(0xE0 | (cp >> 12));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        } else {
            out += static_cast<char>(0xF0 | (cp >> 18));
            out += static_cast<char>(0x80 | ((cp >> 12) & 0x3F));
            out += static_cast<char>(0x80 | ((cp >> 6) & 0x3F));
            out += static_cast<char>(0x80 | (cp & 0x3F));
        }
    }

    std::string parse_string() {
        const std::size_t open = pos_;
        ++pos_; // '"'
        std::string s;
        for (;;) {
            // copy a run of plain characters at once
            const std::size_t run = pos_;
            while (pos_ < text_.size()) {
                const auto c = static_cast<unsigned char>(text_[pos_]);
                if (c == '"' || c == '\\' || c < 0x20 || c >= 0x80) {
                    break;
                }
                ++pos_;
            }
            s.append(text_.substr(run, pos_ - run));
            if (at_end()) {
                const location l = locate(open);
                fail(pos_, frugal::detail::concat("expected '\"' to close the string that starts at line ", l.line,
                                                  ", column ", l.column, ", found end of input"));
            }
            const auto c = static_cast<unsigned char>(text_[pos_]);
            if (c == '"') {
                ++pos_;
                return s;
            }
            if (c < 0x20) {
                fail(pos_, frugal::detail::concat("expected a character or an escape in a string, found ",
                                                  found(pos_), " (control characters must be escaped, e.g. \\n)"));
            }
            if (c >= 0x80) {
                const std::size_t n = frugal::detail::utf8_sequence_length(text_, pos_);
                if (n == 0) {
                    fail(pos_, frugal::detail::concat("expected UTF-8 text in a string, found invalid ", found(pos_)));
                }
                s.append(text_.substr(pos_, n));
                pos_ += n;
                continue;
            }
            // backslash
            const std::size_t esc = pos_;
            ++pos_;
            if (at_end()) {
                fail(pos_, "expected an escape after '\\', found end of input");
            }
            const char e = text_[pos_++];
            switch (e) {
            case '"': s += '"'; break;
            case '\\': s += '\\'; break;
            case '/': s += '/'; break;
            case 'b': s += '\b'; break;
            case 'f': s += '\f'; break;
            case 'n': s += '\n'; break;
            case 'r': s += '\r'; break;
            case 't': s += '\t'; break;
            case 'u': {
                unsigned cp = hex4(pos_);
                pos_ += 4;
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    fail(esc, frugal::detail::concat("expected a high surrogate (\\uD800-\\uDBFF) before the low "
                                                     "surrogate \\u",
                                                     text_.substr(esc + 2, 4), ", found it alone"));
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (text_.substr(pos_, 2) != "\\u") {
                        fail(pos_, frugal::detail::concat("expected a low surrogate \\uDC00-\\uDFFF after the high "
                                                          "surrogate \\u",
                                                          text_.substr(esc + 2, 4), ", found ", found(pos_)));
                    }
                    const unsigned low = hex4(pos_ + 2);
                    if (low < 0xDC00 || low > 0xDFFF) {
                        fail(pos_, frugal::detail::concat("expected a low surrogate \\uDC00-\\uDFFF after the high "
                                                          "surrogate \\u",
                                                          text_.substr(esc + 2, 4), ", found \\u",
                                                          text_.substr(pos_ + 2, 4)));
                    }
                    pos_ += 6;
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (low - 0xDC00);
                }
                append_utf8(s, cp);
                break;
            }
            default:
                fail(esc, frugal::detail::concat("expected an escape (\\\" \\\\ \\/ \\b \\f \\n \\r \\t \\uXXXX), "
                                                 "found '\\' followed by ",
                                                 found(pos_ - 1)));
            }
        }
    }

    double parse_number() {
        const std::size_t start = pos_;
        const auto digit = [&] { return pos_ < text_.size() && text_[pos_] >= '0' && text_[pos_] <= '9'; };
        if (peek() == '-') {
            ++pos_;
            if (!digit()) {
                fail(pos_, frugal::detail::concat("expected a digit after '-', found ", found(pos_)));
            }
        }
        const std::size_t int_begin = pos_;
        if (peek() == '0') {
            ++pos_;
            if (digit()) {
                fail(start, frugal::detail::concat("expected a number, found a leading zero ('",
                                                   text_.substr(start, pos_ + 1 - start),
                                                   "...'): JSON numbers have no leading zeros"));
            }
        } else {
            while (digit()) {
                ++pos_;
            }
        }
        const std::size_t int_end = pos_;
        std::size_t frac_begin = pos_, frac_end = pos_;
        if (peek() == '.') {
            ++pos_;
            if (!digit()) {
                fail(pos_, frugal::detail::concat("expected a digit after the decimal point, found ", found(pos_)));
            }
            frac_begin = pos_;
            while (digit()) {
                ++pos_;
            }
            frac_end = pos_;
        }
        long long exponent = 0;
        if (peek() == 'e' || peek() == 'E') {
            ++pos_;
            bool negative = false;
            if (peek() == '+' || peek() == '-') {
                negative = peek() == '-';
                ++pos_;
            }
            if (!digit()) {
                fail(pos_, frugal::detail::concat("expected a digit in the exponent, found ", found(pos_)));
            }
            while (digit()) {
                exponent = std::min(exponent * 10 + (text_[pos_] - '0'), 1000000000LL);
                ++pos_;
            }
            exponent = negative ? -exponent : exponent;
        }
        const std::string_view t = text_.substr(start, pos_ - start);
        double d = 0.0;
        const auto [end, ec] = std::from_chars(t.data(), t.data() + t.size(), d);
        if (ec == std::errc::result_out_of_range) {
            // Decimal order of magnitude of the first non-zero digit decides
            // between overflow (an error) and underflow (zero).
            long long order = 0;
            bool nonzero = false;
            for (std::size_t i = int_begin; i < int_end && !nonzero; ++i) {
                if (text_[i] != '0') {
                    order = static_cast<long long>(int_end - i) - 1;
                    nonzero = true;
                }
            }
            for (std::size_t i = frac_begin; i < frac_end && !nonzero; ++i) {
                if (text_[i] != '0') {
                    order = -static_cast<long long>(i - frac_begin) - 1;
                    nonzero = true;
                }
            }
            if (nonzero && order + exponent > 0) {
                fail(start, frugal::detail::concat("expected a number within the range of a double (about 1.8e308), "
                                                   "found ",
                                                   t));
            }
            return text_[start] == '-' ? -0.0 : 0.0;
        }
        if (ec != std::errc{} || end != t.data() + t.size()) {
            fail(start, frugal::detail::concat("expected a number, found '", t, "'"));
        }
        return d;
    }

    std::string_view text_;
    std::string_view source_;
    std::size_t pos_ = 0;
    int depth_ = 0;
};

/// One step of the path from the root to the value being written.
struct path_step {
    std::string_view key; // empty with index set for arrays
    std::size_t index = 0;
    bool is_index = false;
};

/// JSON Pointer (RFC 6901) of `path`, for error messages.
inline std::string pointer(const std::vector<path_step>& path) {
    if (path.empty()) {
        return "the root";
    }
    std::string p;
    for (const auto& s : path) {
        p += '/';
        if (s.is_index) {
            p += std::to_string(s.index);
        } else {
            for (const char c : s.key) {
                p += c == '~' ? std::string("~0") : c == '/' ? std::string("~1") : std::string(1, c);
            }
        }
    }
    return p;
}

inline void dump_number(std::string& out, double d, const std::vector<path_step>& path) {
    if (!std::isfinite(d)) {
        throw error(frugal::detail::concat("json::dump: the number at ", pointer(path), " is ",
                                           std::isnan(d) ? "NaN" : d > 0 ? "+infinity" : "-infinity",
                                           ", which JSON cannot represent"));
    }
    char buf[32];
    if (d == 0.0) {
        out += std::signbit(d) ? "-0" : "0";
        return;
    }
    std::to_chars_result r{};
    if (std::trunc(d) == d && std::fabs(d) < 9007199254740992.0) {
        r = std::to_chars(buf, buf + sizeof buf, static_cast<long long>(d));
    } else {
        r = std::to_chars(buf, buf + sizeof buf, d); // shortest text that reads back exactly
    }
    out.append(buf, r.ptr);
}

inline void dump_string(std::string& out, std::string_view s) {
    out += '"';
    std::size_t i = 0;
    while (i < s.size()) {
        const auto c = static_cast<unsigned char>(s[i]);
        switch (c) {
        case '"': out += "\\\""; break;
        case '\\': out += "\\\\"; break;
        case '\b': out += "\\b"; break;
        case '\f': out += "\\f"; break;
        case '\n': out += "\\n"; break;
        case '\r': out += "\\r"; break;
        case '\t': out += "\\t"; break;
        default:
            if (c < 0x20) {
                char buf[8];
                std::snprintf(buf, sizeof buf, "\\u%04x", c);
                out += buf;
            } else if (c < 0x80) {
                out += static_cast<char>(c);
            } else {
                // copy valid UTF-8 sequences; replace invalid bytes by U+FFFD
                // so that the output is always valid JSON
                const std::size_t n = frugal::detail::utf8_sequence_length(s, i);
                if (n == 0) {
                    out += "\xEF\xBF\xBD";
                    ++i;
                } else {
                    out.append(s.substr(i, n));
                    i += n;
                }
                continue;
            }
        }
        ++i;
    }
    out += '"';
}

inline void newline(std::string& out, int indent, int level) {
    if (indent > 0) {
        out += '\n';
        out.append(static_cast<std::size_t>(indent) * static_cast<std::size_t>(level), ' ');
    }
}

inline void dump_value(std::string& out, const value& v, int indent, int level, std::vector<path_step>& path) {
    switch (v.kind()) {
    case kind::null: out += "null"; return;
    case kind::boolean: out += v.as_bool() ? "true" : "false"; return;
    case kind::number: dump_number(out, v.as_number(), path); return;
    case kind::string: dump_string(out, v.as_string()); return;
    case kind::array: {
        const array& a = v.as_array();
        if (a.empty()) {
            out += "[]";
            return;
        }
        out += '[';
        for (std::size_t i = 0; i < a.size(); ++i) {
            if (i > 0) {
                out += ',';
            }
            newline(out, indent, level + 1);
            path.push_back({{}, i, true});
            dump_value(out, a[i], indent, level + 1, path);
            path.pop_back();
        }
        newline(out, indent, level);
        out += ']';
        return;
    }
    case kind::object: {
        const object& o = v.as_object();
        if (o.empty()) {
            out += "{}";
            return;
        }
        out += '{';
        for (std::size_t i = 0; i < o.size(); ++i) {
            if (i > 0) {
                out += ',';
            }
            newline(out, indent, level + 1);
            dump_string(out, o[i].first);
            out += indent > 0 ? ": " : ":";
            path.push_back({o[i].first, 0, false});
            dump_value(out, o[i].second, indent, level + 1, path);
            path.pop_back();
        }
        newline(out, indent, level);
        out += '}';
        return;
    }
    }
}

} // namespace detail

/// Parses a whole JSON document (RFC 8259; a leading UTF-8 byte order mark is
/// skipped). `source` names the text in messages (a file name).
/// @throws frugal::io_error "<source>: line L, column C: expected ..., found
/// ..." for any syntax error, invalid UTF-8 or escape, duplicate key, number
/// out of the range of a double, nesting deeper than json::max_depth, or
/// anything after the value.
[[nodiscard]] inline value parse(std::string_view text, std::string_view source = "json") {
    return detail::parser(text, source).document();
}

/// Reads and parses the JSON file `file`; messages name the file.
/// @throws frugal::io_error if the file cannot be read, or as parse().
[[nodiscard]] inline value parse_file(const std::filesystem::path& file) {
    std::error_code ec;
    if (std::filesystem::is_directory(file, ec)) {
        throw io_error(frugal::detail::concat(file.string(), ": cannot read JSON: it is a folder, not a file"));
    }
    std::ifstream in(file, std::ios::binary);
    if (!in) {
        throw io_error(frugal::detail::concat(file.string(), ": cannot open JSON file: ", std::strerror(errno)));
    }
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    if (in.bad()) {
        throw io_error(frugal::detail::concat(file.string(), ": cannot read JSON file: ", std::strerror(errno)));
    }
    return parse(text, file.string());
}

/// The JSON text of `v`: `indent` spaces per level, one member or element per
/// line; `indent` <= 0 writes everything on one line without spaces. No
/// trailing newline. Strings are escaped (control characters as \u00XX;
/// bytes that are not UTF-8 become U+FFFD).
/// @throws frugal::error naming the JSON Pointer of a NaN or infinite number.
[[nodiscard]] inline std::string dump(const value& v, int indent = 2) {
    std::string out;
    std::vector<detail::path_step> path;
    detail::dump_value(out, v, indent, 0, path);
    return out;
}

/// Writes dump(v) and a newline to `file`, replacing it atomically.
/// @throws frugal::error as dump() (nothing is written then);
/// frugal::io_error naming the file and the system's reason if it cannot be
/// written.
inline void write_file(const std::filesystem::path& file, const value& v) {
    const std::string text = dump(v) + '\n';
    frugal::detail::write_text_atomically(file, text, "JSON");
}

} // namespace json
} // namespace frugal

#endif
