#include "process_metrics.hpp"

#include <charconv>
#include <cstdint>
#include <dirent.h>
#include <fstream>
#include <iterator>
#include <sstream>
#include <string>
#include <sys/resource.h>
#include <unistd.h>
#include <vector>

namespace meshmaster::master {

namespace {

std::optional<std::string> read_text(const char* path) {
    std::ifstream in(path);
    if (!in) return std::nullopt;
    return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

std::optional<double> number(std::string_view s) {
    std::uint64_t v = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
    if (ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return static_cast<double>(v);
}

// /proc/stat's "btime N": when the machine booted, in seconds since the epoch.
std::optional<double> boot_time() {
    const auto text = read_text("/proc/stat");
    if (!text) return std::nullopt;
    std::istringstream lines(*text);
    std::string line;
    while (std::getline(lines, line)) {
        if (line.starts_with("btime ")) return number(std::string_view(line).substr(6));
    }
    return std::nullopt;
}

std::optional<double> open_fds() {
    DIR* dir = ::opendir("/proc/self/fd");
    if (!dir) return std::nullopt;
    double n = 0;
    while (const dirent* e = ::readdir(dir)) {
        if (e->d_name[0] != '.') ++n;
    }
    ::closedir(dir);
    return n - 1;  // less the descriptor this very listing held open
}

}  // namespace

process_facts facts_from_stat(std::string_view stat, std::optional<double> boot, double ticks_per_second, double page_size) {
    process_facts f;
    // "pid (comm) state ppid …": comm may hold spaces and parentheses, so the fields after it are
    // counted from its last ')'. Field 3 (state) is index 0 below.
    const auto close = stat.rfind(')');
    if (close == std::string_view::npos) return f;
    std::vector<std::string_view> fields;
    std::size_t at = close + 1;
    while (at < stat.size()) {
        while (at < stat.size() && (stat[at] == ' ' || stat[at] == '\n')) ++at;
        const std::size_t start = at;
        while (at < stat.size() && stat[at] != ' ' && stat[at] != '\n') ++at;
        if (at > start) fields.push_back(stat.substr(start, at - start));
    }
    const auto field = [&](std::size_t n) -> std::optional<double> {  // n: the 1-based field of proc(5)
        return n - 3 < fields.size() ? number(fields[n - 3]) : std::nullopt;
    };
    const auto utime = field(14);
    const auto stime = field(15);
    if (utime && stime && ticks_per_second > 0) f.cpu_seconds = (*utime + *stime) / ticks_per_second;
    if (const auto start = field(22); start && boot && ticks_per_second > 0) f.start_time_seconds = *boot + *start / ticks_per_second;
    f.virtual_bytes = field(23);
    if (const auto rss = field(24)) f.resident_bytes = *rss * page_size;
    return f;
}

process_facts read_process_facts() {
    process_facts f;
    if (const auto stat = read_text("/proc/self/stat")) {
        f = facts_from_stat(*stat, boot_time(), static_cast<double>(::sysconf(_SC_CLK_TCK)),
                            static_cast<double>(::sysconf(_SC_PAGESIZE)));
    }
    f.open_fds = open_fds();
    if (rlimit limit{}; ::getrlimit(RLIMIT_NOFILE, &limit) == 0 && limit.rlim_cur != RLIM_INFINITY) {
        f.max_fds = static_cast<double>(limit.rlim_cur);
    }
    return f;
}

}  // namespace meshmaster::master
