#ifndef FRUGAL_EXAMPLES_COMMON_CLI_HPP
#define FRUGAL_EXAMPLES_COMMON_CLI_HPP

// A small command-line reader for the examples: --name value pairs, each
// declared with a default and a help line; unknown or malformed options stop
// the program with a message.

#include <cstdio>
#include <cstdlib>
#include <map>
#include <stdexcept>
#include <string>
#include <vector>

namespace cli {

class args {
public:
    args(int argc, char** argv, std::string program, std::string about)
        : program_(std::move(program)), about_(std::move(about)) {
        for (int i = 1; i < argc; ++i) {
            std::string a = argv[i];
            if (a == "--help" || a == "-h") {
                help_ = true;
                continue;
            }
            if (a.rfind("--", 0) != 0) {
                positional_.push_back(a);
                continue;
            }
            a = a.substr(2);
            const auto eq = a.find('=');
            if (eq != std::string::npos) {
                given_[a.substr(0, eq)] = a.substr(eq + 1);
            } else if (i + 1 < argc) {
                given_[a] = argv[++i];
            } else {
                fail("option --" + a + " needs a value");
            }
        }
    }

    /// The arguments that are not options (folders, files); without this
    /// call, finish() rejects them.
    const std::vector<std::string>& positionals(const std::string& what, const std::string& help) {
        positional_help_ = what + ": " + help;
        accepts_positionals_ = true;
        return positional_;
    }

    std::string str(const std::string& name, const std::string& def, const std::string& help) {
        declare(name, def, help);
        const auto it = given_.find(name);
        return it == given_.end() ? def : it->second;
    }
    long integer(const std::string& name, long def, const std::string& help) {
        const std::string v = str(name, std::to_string(def), help);
        char* end = nullptr;
        const long r = std::strtol(v.c_str(), &end, 10);
        if (end == v.c_str() || *end != '\0') {
            fail("--" + name + " expects an integer, got '" + v + "'");
        }
        return r;
    }
    double real(const std::string& name, double def, const std::string& help) {
        char buf[64];
        std::snprintf(buf, sizeof buf, "%g", def);
        const std::string v = str(name, buf, help);
        char* end = nullptr;
        const double r = std::strtod(v.c_str(), &end);
        if (end == v.c_str() || *end != '\0') {
            fail("--" + name + " expects a number, got '" + v + "'");
        }
        return r;
    }
    bool flag(const std::string& name, bool def, const std::string& help) {
        const std::string v = str(name, def ? "on" : "off", help);
        if (v == "on" || v == "1" || v == "true" || v == "yes") {
            return true;
        }
        if (v == "off" || v == "0" || v == "false" || v == "no") {
            return false;
        }
        fail("--" + name + " expects on or off, got '" + v + "'");
    }

    /// Call after declaring every option: prints help or rejects unknown options.
    void finish() {
        if (help_) {
            std::printf("%s: %s\n\noptions:\n", program_.c_str(), about_.c_str());
            for (const auto& d : declared_) {
                std::printf("  --%-14s %s (default: %s)\n", d.name.c_str(), d.help.c_str(), d.def.c_str());
            }
            if (accepts_positionals_) {
                std::printf("  %s\n", positional_help_.c_str());
            }
            std::exit(0);
        }
        if (!accepts_positionals_ && !positional_.empty()) {
            fail("unexpected argument '" + positional_.front() + "' (options are --name value)");
        }
        for (const auto& [k, v] : given_) {
            bool known = false;
            for (const auto& d : declared_) {
                known = known || d.name == k;
            }
            if (!known) {
                fail("unknown option --" + k + " (see --help)");
            }
        }
    }

    [[noreturn]] void fail(const std::string& what) const {
        std::fprintf(stderr, "%s: %s\n", program_.c_str(), what.c_str());
        std::exit(2);
    }

private:
    struct decl {
        std::string name, def, help;
    };
    void declare(const std::string& name, const std::string& def, const std::string& help) {
        declared_.push_back({name, def, help});
    }

    std::string program_, about_;
    std::map<std::string, std::string> given_;
    std::vector<decl> declared_;
    std::vector<std::string> positional_;
    std::string positional_help_;
    bool accepts_positionals_ = false;
    bool help_ = false;
};

} // namespace cli

#endif
