// cpp_greeter/cpp_greeter.cpp -- demonstrates a C++ plugin: classes registered
// with PLUGIN_CLASS (plugin_annotations.hpp), the standard library (std::string,
// std::vector, a template), and exceptions kept inside the plugin.  The three
// greeters answer as c_greeter's and rust_greeter's do; -DNO_AGGREGATE leaves
// the aggregate out (the host-owned path).  The builder links it so that only
// plugin_* is exported: otherwise libstdc++'s STB_GNU_UNIQUE symbols would
// keep it mapped after an unload (try `restrict_exports = false` and
// `plugin-host abi check`).
#include <stdexcept>
#include <string>
#include <vector>

#include "plugin_annotations.hpp"
#include "plugin_trait_greeter.h"

namespace {

template <class... Parts>
std::string concat(const Parts &...parts) {
    std::string out;
    ((out += std::string(parts)), ...);
    return out;
}

std::vector<std::string> counted;  // static state: fresh after every reload

class English {
public:
    std::string greet(const char *name) { return concat("Hello, ", name, "!"); }
};

class French {
public:
    std::string greet(const char *name) { return concat("Bonjour, ", name, "!"); }
};

class Counting {
public:
    std::string greet(const char *name) {
        if (std::string(name).empty()) {
            throw std::invalid_argument("Counting.greet: an empty name");  // contained: the host sees NULL
        }
        counted.emplace_back(name);
        return concat("call ", std::to_string(counted.size()), ", ", name);
    }
};

}  // namespace

PLUGIN_CLASS(Greeter, English, English)
PLUGIN_CLASS(Greeter, French, French)
PLUGIN_CLASS(Greeter, Counting, Counting)
#ifdef NO_AGGREGATE
PLUGIN_UNMAKER_COUNTER(Greeter)
#else
PLUGIN_AGGREGATES(Greeter)
#endif
