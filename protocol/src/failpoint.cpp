#include <meshmaster/protocol/failpoint.hpp>

#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <map>
#include <string>
#include <thread>
#include <unistd.h>

namespace meshmaster::protocol {

namespace {

struct action {
    enum { abort, hang, delay } kind = abort;
    int delay_ms = 0;
};

std::map<std::string, action, std::less<>> parse() {
    std::map<std::string, action, std::less<>> armed;
    const char* spec = std::getenv("MESHMASTER_FAILPOINTS");
    if (!spec || !*spec) return armed;
    const char* generation_env = std::getenv("MESHMASTER_GENERATION");
    const std::string generation = generation_env ? generation_env : "";
    std::string_view rest(spec);
    while (!rest.empty()) {
        const auto comma = rest.find(',');
        std::string_view item = rest.substr(0, comma);
        rest = comma == std::string_view::npos ? std::string_view() : rest.substr(comma + 1);
        const auto eq = item.find('=');
        if (eq == std::string_view::npos) continue;
        std::string_view name = item.substr(0, eq);
        const std::string_view what = item.substr(eq + 1);
        if (name.size() > 1 && name[0] == 'g' && name.find('/') != std::string_view::npos) {
            const auto slash = name.find('/');
            if (name.substr(1, slash - 1) != generation) continue;  // for slaves of another generation
            name = name.substr(slash + 1);
        }
        action a;
        if (what == "abort") {
            a.kind = action::abort;
        } else if (what == "hang") {
            a.kind = action::hang;
        } else if (what.starts_with("delay:")) {
            a.kind = action::delay;
            a.delay_ms = std::atoi(std::string(what.substr(6)).c_str());
        } else {
            std::fprintf(stderr, "meshmaster: unknown failpoint action '%.*s' for %.*s\n", static_cast<int>(what.size()),
                         what.data(), static_cast<int>(name.size()), name.data());
            continue;
        }
        armed.emplace(std::string(name), a);
    }
    return armed;
}

const std::map<std::string, action, std::less<>>& table() {
    static const auto armed = parse();
    return armed;
}

}  // namespace

bool failpoints_armed() { return !table().empty(); }

void failpoint(std::string_view name) {
    const auto& armed = table();
    if (armed.empty()) return;
    const auto it = armed.find(name);
    if (it == armed.end()) return;
    std::fprintf(stderr, "{\"level\":\"warn\",\"component\":\"failpoint\",\"pid\":%d,\"msg\":\"failpoint %.*s hit\"}\n",
                 static_cast<int>(::getpid()), static_cast<int>(name.size()), name.data());
    std::fflush(stderr);
    switch (it->second.kind) {
        case action::abort: ::raise(SIGKILL); break;
        case action::hang: ::raise(SIGSTOP); break;
        case action::delay: std::this_thread::sleep_for(std::chrono::milliseconds(it->second.delay_ms)); break;
    }
}

}  // namespace meshmaster::protocol
