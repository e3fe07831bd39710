// The energy table: a known operation mix costs the hand sum; missing
// entries are interpolated and flagged; a table survives a JSON round trip;
// malformed table files are rejected with the file and the entry named.

#include <doctest/doctest.h>

#include <filesystem>
#include <fstream>
#include <string>

#include <unistd.h>

#include <frugal/cost/energy.hpp>

namespace fr = frugal;
using fr::op_format;
using fr::op_key;
using fr::op_kind;

namespace {

struct temp_file {
    std::filesystem::path path;
    explicit temp_file(const std::string& text) {
        static int counter = 0;
        path = std::filesystem::temp_directory_path() /
               ("frugal-energy-" + std::to_string(::getpid()) + "-" + std::to_string(counter++) + ".json");
        std::ofstream(path) << text;
    }
    ~temp_file() { std::filesystem::remove(path); }
};

std::string load_error(const std::string& text) {
    temp_file f(text);
    try {
        (void)fr::energy_table::load_json(f.path);
    } catch (const fr::io_error& e) {
        const std::string what = e.what();
        CHECK_MESSAGE(what.find(f.path.string()) != std::string::npos, what);
        return what;
    }
    return "";
}

bool has_text(const std::string& s, const std::string& part) { return s.find(part) != std::string::npos; }

} // namespace

TEST_SUITE("cost/energy") {

TEST_CASE("a known operation mix costs the hand sum") {
    const auto t = fr::energy_table::horowitz_45nm();
    const auto i8 = op_format::integer(8);
    fr::op_counts ops;
    ops[{op_kind::mac, fr::fp32, fr::fp32}] = 1000;   // 1000 x (3.7 + 0.9) pJ
    ops[{op_kind::mac, i8, i8}] = 500;                // 500 x (0.2 + 0.1) pJ: int32 accumulation
    ops[{op_kind::shift, i8, i8}] = 100;              // 100 x 0.024 pJ
    ops[{op_kind::add, fr::fp32, fr::fp32}] = 10;     // 10 x 0.9 pJ
    ops[{op_kind::abs, op_format::integer(32), op_format::integer(32)}] = 20; // priced as an int32 add: 20 x 0.1
    ops[{op_kind::compare, fr::fp16, fr::fp16}] = 30;  // as an fp16 add: 30 x 0.4
    const double pj = 1000 * 4.6 + 500 * 0.3 + 100 * 0.024 + 10 * 0.9 + 20 * 0.1 + 30 * 0.4;
    const auto e = fr::estimate(ops, 12345, t);
    CHECK(e.joules == doctest::Approx(pj * 1e-12).epsilon(1e-12));
    CHECK(e.interpolated.empty());
    CHECK(e.memory_joules == 0.0); // the default table has no memory model
    // with a memory model, bytes are priced too
    auto tm = t;
    tm.set_memory_pj_per_byte(2.5);
    CHECK(fr::estimate(ops, 1000, tm).memory_joules == doctest::Approx(2500e-12));
    // the other views
    CHECK(fr::macs_of(ops) == 1500);
    CHECK(fr::flops_of(ops) == 2 * 1500 + 100 + 10 + 20 + 30);
    CHECK(fr::bitops_fp32_macs(ops) == doctest::Approx(1000 + 500 * 64.0 / 1024));
}

TEST_CASE("missing entries are interpolated and flagged") {
    const auto t = fr::energy_table::horowitz_45nm();
    // int16 multiply: between int8 (size 64, 0.2 pJ) and int32 (size 1024, 3.1 pJ) over a*b
    const auto m16 = t.get(fr::unit_op::multiply, op_format::integer(16));
    CHECK(m16.interpolated);
    CHECK(m16.pj == doctest::Approx(0.2 + (256.0 - 64.0) / (1024.0 - 64.0) * 2.9));
    // below the smallest entry: proportional to size; int4 x int4 = 16 / 64 of int8's
    const auto m4 = t.get(fr::unit_op::multiply, op_format::integer(4));
    CHECK(m4.interpolated);
    CHECK(m4.pj == doctest::Approx(0.2 * 16.0 / 64.0));
    // a mixed int4 x int10 multiply scales with 40
    CHECK(t.get(fr::unit_op::multiply, op_format::integer(4), op_format::integer(10)).pj ==
          doctest::Approx(0.2 * 40.0 / 64.0));
    // listed entries are exact
    const auto a16 = t.get(fr::unit_op::add, op_format::integer(16));
    CHECK_FALSE(a16.interpolated);
    CHECK(a16.pj == 0.05);
    // shifts: int16 between int8 0.024 and int32 0.13, linear in width
    CHECK(t.get(fr::unit_op::shift, op_format::integer(16)).pj == doctest::Approx(0.024 + 8.0 / 24.0 * (0.13 - 0.024)));
    // an estimate names every interpolated operation
    fr::op_counts ops;
    ops[{op_kind::mac, op_format::integer(4), op_format::integer(4)}] = 10;
    ops[{op_kind::mac, fr::fp32, fr::fp32}] = 10;
    const auto e = fr::estimate(ops, 0, t);
    REQUIRE(e.interpolated.size() == 1);
    CHECK(*e.interpolated.begin() == "mac int4xint4");
    CHECK(e.joules == doctest::Approx(10 * (0.05 + 0.1) * 1e-12 + 10 * 4.6e-12));
}

TEST_CASE("an energy table survives a json round trip") {
    auto t = fr::energy_table::horowitz_45nm();
    t.set(fr::unit_op::multiply, op_format::integer(4), 0.07);
    t.set_memory_pj_per_byte(40.0);
    temp_file f(fr::json::dump(t.to_json()));
    const auto back = fr::energy_table::load_json(f.path);
    CHECK(back.name() == t.name());
    CHECK(back.source() == t.source());
    REQUIRE(back.entries().size() == t.entries().size());
    for (std::size_t i = 0; i < t.entries().size(); ++i) {
        CHECK(back.entries()[i].op == t.entries()[i].op);
        CHECK(back.entries()[i].format == t.entries()[i].format);
        CHECK(back.entries()[i].pj == t.entries()[i].pj);
    }
    CHECK(back.memory_pj_per_byte() == 40.0);
    CHECK_FALSE(back.get(fr::unit_op::multiply, op_format::integer(4)).interpolated);
}

TEST_CASE("a user table file is read and its own gaps interpolated") {
    temp_file f(R"({"name": "fpga", "source": "a measured board", "unit": "pJ",
                    "add": {"int8": 0.5, "int32": 1.5},
                    "multiply": {"int8": 2.0, "fix16": 5.0}})");
    const auto t = fr::energy_table::load_json(f.path);
    CHECK(t.name() == "fpga");
    CHECK(t.mac(op_format::integer(8), op_format::integer(8)).pj == doctest::Approx(2.0 + 1.5));
    // fp32 operations come from the integer points when the table lists no float ones
    const auto p = t.mac(fr::fp32, fr::fp32);
    CHECK(p.interpolated);
    CHECK(p.pj > 0.0);
}

TEST_CASE("malformed or incomplete table files are rejected naming the entry") {
    CHECK_FALSE(load_error("{\"add\": {\"int8\": 0.1}").empty()); // truncated json
    CHECK(has_text(load_error("[1, 2]"), "JSON object"));
    CHECK(has_text(load_error(R"({"add": {"int8": 0.1}})"), "multiply"));
    CHECK(has_text(load_error(R"({"add": {"int8": 0.1}, "multiply": {"int8": -1}})"), "multiply.int8"));
    CHECK(has_text(load_error(R"({"add": {"int8x": 0.1}, "multiply": {"int8": 1}})"), "add.int8x"));
    CHECK(has_text(load_error(R"({"add": {"int8": 0.1}, "multiply": {"int8": "big"}})"), "multiply.int8"));
    CHECK(has_text(load_error(R"({"add": {"int8": 0.1}, "multiply": {"int8": 1}, "divide": {}})"), "divide"));
    CHECK(has_text(load_error(R"({"add": 3, "multiply": {"int8": 1}})"), "'add'"));
    CHECK(has_text(load_error(R"({"add": {"int8": 0.1}, "multiply": {"int8": 1}, "unit": "nJ"})"), "unit"));
    CHECK(has_text(load_error(R"({"add": {"int8": 0.1}, "multiply": {"int8": 1}, "memory_pj_per_byte": -3})"),
                   "memory_pj_per_byte"));
    CHECK_FALSE(load_error("").empty()); // empty file
    CHECK_THROWS_AS((void)fr::energy_table::load_json("/nonexistent/frugal/table.json"), fr::io_error);
}

} // TEST_SUITE
