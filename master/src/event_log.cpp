#include "event_log.hpp"

#include <meshmaster/protocol/json_text.hpp>

#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value_from.hpp>

#include <fmt/chrono.h>
#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <fstream>
#include <stdexcept>
#include <unistd.h>

namespace meshmaster::master {

namespace json = boost::json;

std::string iso8601(std::chrono::system_clock::time_point t) {
    const auto seconds = std::chrono::floor<std::chrono::seconds>(t);
    const auto micros = std::chrono::duration_cast<std::chrono::microseconds>(t - seconds).count();
    return fmt::format("{:%Y-%m-%dT%H:%M:%S}.{:06}Z", fmt::gmtime(std::chrono::system_clock::to_time_t(seconds)), micros);
}

namespace {

int open_log(const std::string& path) {
    return ::open(path.c_str(), O_WRONLY | O_APPEND | O_CREAT | O_CLOEXEC, 0644);
}

}  // namespace

event_log::event_log(std::string path) : path_(std::move(path)) {
    if (auto last = last_record(path_)) {
        if (auto* seq = last->if_contains("seq"); seq && seq->is_int64()) seq_ = static_cast<std::uint64_t>(seq->as_int64());
    }
    fd_ = open_log(path_);
    if (fd_ < 0) throw std::runtime_error(fmt::format("cannot open the event log {}: {}", path_, std::strerror(errno)));
}

event_log::~event_log() {
    if (fd_ >= 0) ::close(fd_);
}

json::object event_log::to_json(const event_record& r) {
    json::object o;
    o["event"] = r.event.name();
    if (!r.slave.empty()) o["slave"] = r.slave;
    if (!r.peer.empty()) o["peer"] = r.peer;
    if (r.shard) o["shard"] = *r.shard;
    if (r.epoch) o["epoch"] = *r.epoch;
    if (r.migration) o["migration"] = *r.migration;
    if (r.restart) o["restart"] = *r.restart;
    if (r.generation) o["generation"] = *r.generation;
    if (r.slot) o["slot"] = *r.slot;
    if (r.pid) o["pid"] = *r.pid;
    if (r.duration_ms) o["duration_ms"] = std::round(*r.duration_ms * 1000) / 1000;
    if (r.pause_ms) o["pause_ms"] = std::round(*r.pause_ms * 1000) / 1000;
    if (r.slave_pause_ms) o["slave_pause_ms"] = std::round(*r.slave_pause_ms * 1000) / 1000;
    if (r.count) o["count"] = *r.count;
    if (r.state_bytes) o["state_bytes"] = *r.state_bytes;
    if (r.state_lost) o["state_lost"] = *r.state_lost;
    if (!r.reason.empty()) o["reason"] = r.reason;
    if (!r.epochs.empty()) o["epochs"] = json::value_from(r.epochs);
    if (!r.address.empty()) o["address"] = r.address;
    if (r.suppressed) o["suppressed"] = *r.suppressed;
    if (r.bytes_expected) o["bytes_expected"] = *r.bytes_expected;
    if (r.bytes_received) o["bytes_received"] = *r.bytes_received;
    return o;
}

std::string event_log::write(const event_record& r, std::chrono::system_clock::time_point wall, double mono_ms) {
    json::object o;
    o["seq"] = ++seq_;
    o["time"] = iso8601(wall);
    o["mono_ms"] = std::round(mono_ms * 1000) / 1000;
    for (auto& [key, value] : to_json(r)) o[key] = value;
    std::string line = protocol::json_text(o);  // plain decimals: "duration_ms":7800, not 7.8E3
    line.push_back('\n');
    const char* p = line.data();
    std::size_t left = line.size();
    while (left > 0) {
        const ssize_t n = ::write(fd_, p, left);
        if (n < 0 && errno == EINTR) continue;
        if (n <= 0) {
            fmt::print(stderr, R"({{"level":"error","component":"event-log","msg":"write to {} failed: {}"}})" "\n", path_,
                       std::strerror(errno));
            break;
        }
        p += n;
        left -= static_cast<std::size_t>(n);
    }
    line.pop_back();
    return line;
}

std::optional<std::string> event_log::reopen() {
    const int fd = open_log(path_);
    if (fd < 0) return fmt::format("cannot reopen {}: {}", path_, std::strerror(errno));
    ::close(fd_);
    fd_ = fd;
    return std::nullopt;
}

std::optional<json::object> event_log::last_record(const std::string& path) {
    std::ifstream in(path, std::ios::binary | std::ios::ate);
    if (!in) return std::nullopt;
    const std::streamoff size = in.tellg();
    const std::streamoff window = std::min<std::streamoff>(size, 256 * 1024);
    std::string tail(static_cast<std::size_t>(window), '\0');
    in.seekg(size - window);
    in.read(tail.data(), window);
    // The last complete line (a crash may have left a partial one after it).
    std::size_t end = tail.rfind('\n');
    while (end != std::string::npos && end > 0) {
        const std::size_t begin = tail.rfind('\n', end - 1);
        const std::size_t from = begin == std::string::npos ? 0 : begin + 1;
        boost::system::error_code ec;
        json::value v = json::parse(std::string_view(tail).substr(from, end - from), ec);
        if (!ec && v.is_object()) return v.as_object();
        if (begin == std::string::npos) break;
        end = begin;
    }
    return std::nullopt;
}

}  // namespace meshmaster::master
