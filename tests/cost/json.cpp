// frugal::json: hand-written documents, exact dump/parse round trips, number
// formatting, an io_error naming the source and the line for every kind of
// malformed input, and atomic files.

#include <doctest/doctest.h>

#include <chrono>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <iterator>
#include <limits>
#include <random>
#include <string>
#include <system_error>
#include <vector>

#include <unistd.h>

#include <frugal/cost/json.hpp>
#include "temp_dir.hpp"

namespace fr = frugal;
namespace json = frugal::json;

using test::read_text;
using test::temp_dir;

namespace {


bool mentions(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

/// The message of the io_error that parsing `text` throws ("" if none).
std::string parse_error(const std::string& text, const std::string& source = "doc.json") {
    try {
        (void)json::parse(text, source);
    } catch (const fr::io_error& e) {
        return e.what();
    }
    return "";
}

json::value rich_value() {
    json::value v;
    v["name"] = "résumé \"quoted\" \\ / \n\t\x01 \xF0\x9F\x98\x80";
    v["integer"] = 42;
    v["negative"] = -17;
    v["big"] = 9007199254740991.0; // 2^53 - 1
    v["huge"] = 1e300;
    v["tiny"] = 4.9e-324;
    v["pi"] = 3.141592653589793;
    v["third"] = 1.0 / 3.0;
    v["minus zero"] = -0.0;
    v["yes"] = true;
    v["no"] = false;
    v["nothing"] = nullptr;
    v["empty array"] = json::array{};
    v["empty object"] = json::object{};
    v["layers"] = json::array{json::object{{"name", "conv1"}, {"macs", 1234567}, {"energy", 1.5e-3}},
                              json::object{{"name", "fc"}, {"macs", 10}, {"energy", 2.25e-7}}};
    v["nested"]["deeper"]["deepest"].push_back(1);
    v["nested"]["deeper"]["deepest"].push_back(json::array{2, 3, json::array{}});
    return v;
}

} // namespace

TEST_SUITE("cost/json") {

TEST_CASE("a hand-written document parses into the expected values") {
    const std::string text = R"({
  "name": "fmnist run",
  "epochs": 12,
  "rate": -2.5e-3,
  "big": 1E+3,
  "small": 25e-1,
  "flags": [true, false, null],
  "layers": [
    {"name": "conv1", "macs": 0, "phases": {"forward": 1.25, "backward": [1, [2, [3]]]}},
    {"name": "fc", "macs": -0.5}
  ],
  "text": "tab\there \"q\" back\\slash sl\/ash \u00e9 \ud83d\ude00 \u0041\b\f\n\r",
  "empty": {}, "none": []
})";
    const json::value v = json::parse(text);
    REQUIRE(v.is_object());
    CHECK(v.size() == 10);
    CHECK(v.at("name").as_string() == "fmnist run");
    CHECK(v.at("epochs").as_number() == 12.0);
    CHECK(v.at("rate").as_number() == -2.5e-3);
    CHECK(v.at("big").as_number() == 1000.0);
    CHECK(v.at("small").as_number() == 2.5);
    const json::value& flags = v.at("flags");
    REQUIRE(flags.size() == 3);
    CHECK(flags.at(0).as_bool());
    CHECK_FALSE(flags.at(1).as_bool());
    CHECK(flags.at(2).is_null());
    const json::value& layers = v.at("layers");
    REQUIRE(layers.is_array());
    REQUIRE(layers.size() == 2);
    CHECK(layers.at(0).at("phases").at("forward").as_number() == 1.25);
    CHECK(layers.at(0).at("phases").at("backward").at(1).at(1).at(0).as_number() == 3.0);
    CHECK(layers.at(1).at("macs").as_number() == -0.5);
    CHECK(v.at("text").as_string() == "tab\there \"q\" back\\slash sl/ash \xC3\xA9 \xF0\x9F\x98\x80 A\b\f\n\r");
    CHECK(v.at("empty").is_object());
    CHECK(v.at("empty").size() == 0);
    CHECK(v.at("none").is_array());
    CHECK(v.find("absent") == nullptr);
    CHECK(v.at("flags").find("x") == nullptr); // not an object
    // insertion order is kept
    const auto& members = v.as_object();
    CHECK(members.front().first == "name");
    CHECK(members.back().first == "none");
}

TEST_CASE("scalars and whitespace at the top level") {
    CHECK(json::parse(" \t\r\n 7 \n").as_number() == 7.0);
    CHECK(json::parse("\"x\"").as_string() == "x");
    CHECK(json::parse("true").as_bool());
    CHECK(json::parse("null").is_null());
    CHECK(json::parse("-0").as_number() == 0.0);
    CHECK(std::signbit(json::parse("-0").as_number()));
    CHECK(json::parse("1e-400").as_number() == 0.0); // underflows to zero
    CHECK(json::parse("\xEF\xBB\xBF{}").is_object()); // byte order mark skipped
    CHECK(json::parse("\"\\u0000\"").as_string() == std::string(1, '\0'));
    CHECK(json::parse("\"\\uFFFF\\uD800\\uDC00\\uDBFF\\uDFFF\"").as_string() ==
          "\xEF\xBF\xBF\xF0\x90\x80\x80\xF4\x8F\xBF\xBF");
}

TEST_CASE("dump then parse round-trips a rich value exactly") {
    const json::value v = rich_value();
    for (int indent : {0, 2, 4}) {
        INFO("indent = " << indent);
        const std::string text = json::dump(v, indent);
        const json::value back = json::parse(text);
        CHECK(back == v);
        CHECK(json::dump(back, indent) == text);
        CHECK(std::signbit(back.at("minus zero").as_number()));
        CHECK(back.at("tiny").as_number() == 4.9e-324);
    }
    CHECK(json::dump(v, 0).find('\n') == std::string::npos);
}

TEST_CASE("pretty and compact layouts") {
    const json::value v = json::object{{"a", 1}, {"b", json::array{true, nullptr}}, {"c", json::object{}}};
    CHECK(json::dump(v, 0) == R"({"a":1,"b":[true,null],"c":{}})");
    CHECK(json::dump(v) == "{\n  \"a\": 1,\n  \"b\": [\n    true,\n    null\n  ],\n  \"c\": {}\n}");
    CHECK(json::dump(json::array{}) == "[]");
    CHECK(json::dump(json::value{}) == "null");
}

TEST_CASE("numbers print without a decimal point when integral and exactly otherwise") {
    CHECK(json::dump(3) == "3");
    CHECK(json::dump(3.0) == "3");
    CHECK(json::dump(-12.0) == "-12");
    CHECK(json::dump(0) == "0");
    CHECK(json::dump(1e15) == "1000000000000000");
    CHECK(json::dump(9007199254740991.0) == "9007199254740991");
    CHECK(json::dump(std::size_t{123456789}) == "123456789");
    CHECK(json::dump(0.1) == "0.1");
    CHECK(json::parse(json::dump(0.1)).as_number() == 0.1);
    CHECK(json::dump(2.5) == "2.5");
    CHECK(json::dump(1.0f / 3.0f) != "0"); // floats convert to double exactly
    std::mt19937_64 g(2024);
    INFO("seed = 2024");
    for (int i = 0; i < 2000; ++i) {
        std::uint64_t bits = g();
        double d = 0;
        std::memcpy(&d, &bits, sizeof d);
        if (!std::isfinite(d)) {
            continue;
        }
        CAPTURE(d);
        REQUIRE(json::parse(json::dump(d)).as_number() == d);
    }
    for (double d : {1e16, 1.5e300, 2e-300, 123456789.125, -1e-7, 9007199254740992.0}) {
        CAPTURE(d);
        CHECK(json::parse(json::dump(d)).as_number() == d);
    }
}

TEST_CASE("strings are escaped on output") {
    CHECK(json::dump("a\"b\\c\n\x01\x1f\x7f") == "\"a\\\"b\\\\c\\n\\u0001\\u001f\x7f\"");
    CHECK(json::dump("\xC3\xA9") == "\"\xC3\xA9\""); // UTF-8 written as is
    CHECK(json::dump("bad \xFF byte") == "\"bad \xEF\xBF\xBD byte\""); // not UTF-8: U+FFFD
    CHECK(json::parse(json::dump(std::string("nul\0in", 6))).as_string() == std::string("nul\0in", 6));
}

TEST_CASE("NaN and infinities cannot be dumped") {
    json::value v;
    v["layers"].push_back(json::object{{"energy", 1.0}});
    v["layers"].push_back(json::object{{"energy", std::nan("")}});
    CHECK_THROWS_AS((void)json::dump(v), fr::error);
    try {
        (void)json::dump(v);
    } catch (const fr::error& e) {
        INFO(e.what());
        CHECK(mentions(e.what(), "/layers/1/energy"));
        CHECK(mentions(e.what(), "NaN"));
    }
    CHECK_THROWS_AS((void)json::dump(std::numeric_limits<double>::infinity()), fr::error);
    CHECK_THROWS_AS((void)json::dump(json::array{-std::numeric_limits<double>::infinity()}), fr::error);
}

TEST_CASE("accessors name the expected and the found type") {
    const json::value v = json::parse(R"({"n": 1, "s": "x", "a": [1, 2]})");
    CHECK_THROWS_AS((void)v.at("n").as_string(), fr::error);
    CHECK_THROWS_WITH((void)v.at("n").as_string(), "json: expected a string, found a number");
    CHECK_THROWS_WITH((void)v.at("s").as_number(), "json: expected a number, found a string");
    CHECK_THROWS_WITH((void)v.as_array(), "json: expected an array, found an object");
    CHECK_THROWS_WITH((void)v.at("a").as_object(), "json: expected an object, found an array");
    CHECK_THROWS_WITH((void)json::value{}.as_bool(), "json: expected a boolean, found null");
    CHECK_THROWS_AS((void)v.at("missing"), fr::error);
    try {
        (void)v.at("missing");
    } catch (const fr::error& e) {
        CHECK(mentions(e.what(), "\"missing\""));
        CHECK(mentions(e.what(), "\"n\", \"s\", \"a\""));
    }
    CHECK_THROWS_WITH((void)v.at("a").at(2), "json: index 2 is out of range for an array of 2 elements");
    CHECK_THROWS_AS((void)v.at("s").size(), fr::error);
    json::value n = 1;
    CHECK_THROWS_AS(n["x"], fr::error);
    CHECK_THROWS_AS(n.push_back(1), fr::error);
}

TEST_CASE("operator[] and push_back build values") {
    json::value v;
    CHECK(v.is_null());
    CHECK(v.size() == 0);
    v["a"] = 1;
    v["b"]["c"] = "d";
    v["a"] = 2; // existing key: replaced, not duplicated
    CHECK(v.is_object());
    CHECK(v.size() == 2);
    CHECK(v.at("a").as_number() == 2.0);
    CHECK(v.at("b").at("c").as_string() == "d");
    json::value list;
    list.push_back(1);
    list.push_back("two");
    CHECK(list.is_array());
    CHECK(list.size() == 2);
    list.as_array()[0] = false;
    CHECK_FALSE(list.at(0).as_bool());
    v.at("b").at("c") = json::array{1};
    CHECK(v.at("b").at("c").is_array());
}

TEST_CASE("malformed input throws an io_error naming the source and the line") {
    struct bad {
        const char* name;
        std::string text;
        int line;
        const char* says; // part of the message
    };
    const std::vector<bad> cases = {
        {"empty input", "", 1, "expected a value"},
        {"only whitespace", "  \n ", 2, "found end of input"},
        {"missing comma in an array", "[1,\n 2\n 3]", 3, "expected ',' or ']'"},
        {"missing comma in an object", "{\"a\": 1\n \"b\": 2}", 2, "expected ',' or '}'"},
        {"trailing comma in an array", "[1, 2,\n]", 1, "trailing comma"},
        {"trailing comma in an object", "{\"a\": 1,\n}", 1, "trailing comma"},
        {"missing colon", "{\"a\" 1}", 1, "expected ':'"},
        {"unquoted key", "{a: 1}", 1, "expected a string key"},
        {"single quotes", "['a']", 1, "expected a value"},
        {"unterminated string", "{\n\"a\": \"abc", 2, "close the string"},
        {"unterminated array", "[1, 2", 1, "found end of input"},
        {"unterminated object", "{\"a\": 1", 1, "found end of input"},
        {"bad escape", "\n\"a\\qb\"", 2, "expected an escape"},
        {"escape at end", "\"a\\", 1, "found end of input"},
        {"invalid \\u", "\"\\u12G4\"", 1, "4 hex digits"},
        {"short \\u", "\"\\u12\"", 1, "4 hex digits"},
        {"lone high surrogate", "\"\\uD83Dx\"", 1, "low surrogate"},
        {"high surrogate then non-surrogate", "\"\\uD83D\\u0041\"", 1, "low surrogate"},
        {"lone low surrogate", "\n\n\"\\uDE00\"", 3, "high surrogate"},
        {"control character in a string", "\"a\tb\"", 1, "control character"},
        {"newline in a string", "[\"a\nb\"]", 1, "control character"},
        {"invalid UTF-8", "\"\xC3\x28\"", 1, "UTF-8"},
        {"overlong UTF-8", "\"\xC0\xAF\"", 1, "UTF-8"},
        {"UTF-8 surrogate", "\"\xED\xA0\x80\"", 1, "UTF-8"},
        {"leading zero", "01", 1, "leading zero"},
        {"leading zeros in an array", "[\n-007]", 2, "leading zero"},
        {"lone minus", "-", 1, "digit after '-'"},
        {"minus then letter", "[-a]", 1, "digit after '-'"},
        {"plus sign", "+1", 1, "expected a value"},
        {"leading dot", ".5", 1, "expected a value"},
        {"trailing dot", "1.", 1, "decimal point"},
        {"empty exponent", "1e", 1, "exponent"},
        {"exponent sign only", "1e+", 1, "exponent"},
        {"hex number", "0x10", 1, "end of input"},
        {"number too large", "1e400", 1, "range of a double"},
        {"NaN literal", "NaN", 1, "expected a value"},
        {"Infinity literal", "[Infinity]", 1, "expected a value"},
        {"misspelled true", "tru", 1, "expected 'true', found 'tru'"},
        {"misspelled null", "[nul]", 1, "expected 'null', found 'nul'"},
        {"capitalised literal", "True", 1, "expected a value"},
        {"trailing garbage", "{}\n\n x", 3, "end of input"},
        {"two values", "1 2", 1, "end of input"},
        {"duplicate key", "{\"a\": 1,\n \"a\": 2}", 2, "duplicate key \"a\""},
        {"comment", "// no\n1", 1, "expected a value"},
        {"closing bracket mismatch", "[1}", 1, "expected ',' or ']'"},
        {"raw byte outside strings", "[\x80]", 1, "byte 0x80"},
    };
    for (const auto& c : cases) {
        INFO(c.name << ": " << c.text);
        const std::string message = parse_error(c.text);
        INFO("message: " << message);
        REQUIRE_FALSE(message.empty());
        CHECK(mentions(message, "doc.json: line " + std::to_string(c.line) + ", column "));
        CHECK(mentions(message, c.says));
    }
    CHECK_THROWS_AS((void)json::parse("[1,]"), fr::io_error);
    CHECK(parse_error("[1,]", "json") == "json: line 1, column 3: trailing comma before ']': expected another array "
                                         "element after ','");
    CHECK(parse_error("{\"a\": 1,\n \"a\": 2}") ==
          "doc.json: line 2, column 2: duplicate key \"a\" in an object (first at line 1, column 2)");
    CHECK(parse_error("\"\xC3\xA9\xC3\xA9\" x") ==
          "doc.json: line 1, column 6: expected end of input after the JSON value, found 'x'"); // columns count characters
}

TEST_CASE("random corruptions either parse or throw an io_error") {
    const std::string original = json::dump(rich_value(), 1);
    const std::string alphabet = "{}[]\",:\\u0123456789eE+-.tfnl \n\t\x01\x80\xC3\xA9\xED";
    std::mt19937_64 g(7);
    INFO("seed = 7");
    std::size_t parsed = 0;
    for (int round = 0; round < 3000; ++round) {
        std::string text = original;
        const int edits = 1 + static_cast<int>(g() % 4);
        for (int e = 0; e < edits && !text.empty(); ++e) {
            const std::size_t at = g() % text.size();
            switch (g() % 3) {
            case 0: text[at] = alphabet[g() % alphabet.size()]; break;
            case 1: text.erase(at, 1 + g() % 3); break;
            default: text.insert(at, 1, alphabet[g() % alphabet.size()]);
            }
        }
        CAPTURE(round);
        try {
            const json::value v = json::parse(text, "fuzz");
            ++parsed;
            REQUIRE(json::parse(json::dump(v)) == v);
        } catch (const fr::io_error& e) {
            REQUIRE(std::string(e.what()).rfind("fuzz: line ", 0) == 0);
        }
    }
    CHECK(parsed > 0); // some edits land inside strings and keep the document valid
}

TEST_CASE("duplicate keys are found in large objects too") {
    std::string text = "{";
    for (int i = 0; i < 100; ++i) {
        text += "\"k" + std::to_string(i) + "\": " + std::to_string(i) + ",\n";
    }
    REQUIRE(json::parse(text + "\"last\": 0}").size() == 101);
    const std::string message = parse_error(text + "\"k57\": 0}");
    CHECK(mentions(message, "doc.json: line 101, column 1: duplicate key \"k57\""));
    CHECK(mentions(message, "first at line 58"));
}

TEST_CASE("nesting is limited to 256 levels") {
    const auto nested = [](int depth) {
        std::string s;
        for (int i = 0; i < depth; ++i) {
            s += i % 2 == 0 ? "[" : "{\"k\":";
        }
        s += "0";
        for (int i = depth - 1; i >= 0; --i) {
            s += i % 2 == 0 ? "]" : "}";
        }
        return s;
    };
    CHECK_NOTHROW((void)json::parse(nested(256)));
    const std::string message = parse_error(nested(257));
    CHECK(mentions(message, "doc.json: line 1, column "));
    CHECK(mentions(message, "deeper than 256"));
    CHECK(mentions(parse_error(std::string(100000, '[')), "deeper than 256")); // no stack overflow
    // a value built in code deeper than that still dumps
    json::value deep = 1;
    for (int i = 0; i < 300; ++i) {
        deep = json::array{deep};
    }
    CHECK(json::dump(deep, 0).size() == 601);
}

TEST_CASE("write_file and parse_file round-trip in a temporary folder") {
    temp_dir dir;
    const auto file = dir / "summary.json";
    const json::value v = rich_value();
    json::write_file(file, v);
    CHECK(json::parse_file(file) == v);
    // replaced in place, and no temporary file is left behind
    json::write_file(file, json::object{{"second", 2}});
    CHECK(json::parse_file(file).at("second").as_number() == 2.0);
    std::size_t files = 0;
    for (const auto& e : std::filesystem::directory_iterator(dir.path())) {
        (void)e;
        ++files;
    }
    CHECK(files == 1);
    std::ifstream in(file);
    const std::string text((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    CHECK(text.back() == '\n');
}

TEST_CASE("file errors name the file") {
    temp_dir dir;
    const auto plain = dir / "plain.txt";
    {
        std::ofstream out(plain);
        out << "{\n  \"a\": 1,\n  \"b\": tru\n}\n";
    }
    SUBCASE("parse errors carry the file name as source") {
        const std::string expected = plain.string() + ": line 3, column 8: expected 'true', found 'tru'";
        CHECK_THROWS_AS((void)json::parse_file(plain), fr::io_error);
        try {
            (void)json::parse_file(plain);
        } catch (const fr::io_error& e) {
            CHECK(mentions(e.what(), expected));
        }
    }
    SUBCASE("a missing file") {
        const auto missing = dir / "missing.json";
        CHECK_THROWS_AS((void)json::parse_file(missing), fr::io_error);
        try {
            (void)json::parse_file(missing);
        } catch (const fr::io_error& e) {
            CHECK(mentions(e.what(), missing.string()));
        }
        CHECK_THROWS_AS((void)json::parse_file(dir.path()), fr::io_error); // a folder
    }
    SUBCASE("an unwritable path under a regular file") {
        const auto under = plain / "summary.json";
        CHECK_THROWS_AS(json::write_file(under, json::value{1}), fr::io_error);
        try {
            json::write_file(under, json::value{1});
        } catch (const fr::io_error& e) {
            INFO(e.what());
            CHECK(mentions(e.what(), under.string()));
            CHECK(mentions(e.what(), "cannot write JSON"));
        }
    }
    SUBCASE("a NaN writes nothing") {
        const auto file = dir / "nan.json";
        CHECK_THROWS_AS(json::write_file(file, json::array{std::nan("")}), fr::error);
        CHECK_FALSE(std::filesystem::exists(file));
    }
}

} // TEST_SUITE
