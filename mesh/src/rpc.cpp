#include "rpc.hpp"

#include <boost/endian/conversion.hpp>

#include <cstring>

namespace meshmaster::mesh {

std::string_view to_string(outcome::kind k) noexcept {
    switch (k) {
        case outcome::kind::response: return "response";
        case outcome::kind::error: return "error";
        case outcome::kind::timeout: return "timeout";
        case outcome::kind::stopped: return "stopped";
    }
    return "unknown";
}

}  // namespace meshmaster::mesh

namespace meshmaster::mesh::rpc {

std::array<std::byte, msg_header> encode_header(msg_kind kind, std::uint16_t command, std::uint64_t id) {
    std::array<std::byte, msg_header> head{};
    head[0] = std::byte{static_cast<std::uint8_t>(kind)};
    boost::endian::store_little_u16(reinterpret_cast<unsigned char*>(head.data() + 1), command);
    boost::endian::store_little_u64(reinterpret_cast<unsigned char*>(head.data() + 3), id);
    return head;
}

bytes encode_message(msg_kind kind, std::uint16_t command, std::uint64_t id, std::span<const std::byte> payload) {
    bytes m(msg_header + payload.size());
    const auto head = encode_header(kind, command, id);
    std::memcpy(m.data(), head.data(), msg_header);
    if (!payload.empty()) std::memcpy(m.data() + msg_header, payload.data(), payload.size());
    return m;
}

std::optional<message> parse_message(std::span<const std::byte> m) {
    if (m.size() < msg_header) return std::nullopt;
    const auto kind = static_cast<msg_kind>(m[0]);
    switch (kind) {
        case msg_kind::request:
        case msg_kind::response:
        case msg_kind::error:
        case msg_kind::oneway:
        case msg_kind::stopped: break;
        default: return std::nullopt;
    }
    return message{.kind = kind,
                   .command = boost::endian::load_little_u16(reinterpret_cast<const unsigned char*>(m.data() + 1)),
                   .id = boost::endian::load_little_u64(reinterpret_cast<const unsigned char*>(m.data() + 3)),
                   .payload = m.subspan(msg_header)};
}

std::optional<outcome> outcome_of(const message& m) {
    switch (m.kind) {
        case msg_kind::response: return outcome{.what = outcome::kind::response, .body = bytes(m.payload.begin(), m.payload.end())};
        case msg_kind::error:
            return outcome{.what = outcome::kind::error,
                           .message = std::string(reinterpret_cast<const char*>(m.payload.data()), m.payload.size())};
        case msg_kind::stopped: return outcome{.what = outcome::kind::stopped, .message = "the peer is going offline"};
        case msg_kind::request:
        case msg_kind::oneway: break;
    }
    return std::nullopt;
}

// --- answer_cache ---------------------------------------------------------------------------------

void answer_cache::remember(std::uint64_t id, std::optional<bytes> answer) {
    const std::size_t size = answer ? answer->size() : 0;
    auto [it, fresh] = answered_.try_emplace(id, std::nullopt);
    if (it->second) bytes_ -= it->second->size();
    it->second = size <= bytes_kept ? std::move(answer) : std::nullopt;
    if (it->second) bytes_ += size;
    if (fresh) order_.push_back(id);
    if (it->second) cached_.push_back(id);
    // Over the byte budget: the oldest kept answers go (their ids stay: the handler ran).
    while (bytes_ > bytes_kept && !cached_.empty()) {
        const std::uint64_t old = cached_.front();
        cached_.pop_front();
        auto kept = answered_.find(old);
        if (old != id && kept != answered_.end() && kept->second) {
            bytes_ -= kept->second->size();
            kept->second.reset();
        }
    }
    if (order_.size() > ids_kept) {
        if (auto oldest = answered_.find(order_.front()); oldest != answered_.end()) {
            if (oldest->second) bytes_ -= oldest->second->size();
            answered_.erase(oldest);
        }
        order_.pop_front();
        while (!cached_.empty() && !answered_.contains(cached_.front())) cached_.pop_front();
    }
}

void answer_cache::forget(std::uint64_t id) {
    if (auto it = answered_.find(id); it != answered_.end()) {
        if (it->second) bytes_ -= it->second->size();
        answered_.erase(it);
    }
}

const std::optional<bytes>* answer_cache::find(std::uint64_t id) const {
    auto it = answered_.find(id);
    return it == answered_.end() ? nullptr : &it->second;
}

// --- request_table --------------------------------------------------------------------------------

std::uint64_t request_table::begin(std::string peer, std::uint64_t incarnation, std::function<void()> wake) {
    const std::uint64_t id = ++next_;
    auto& p = requests_[id];
    p.peer = std::move(peer);
    p.incarnation = incarnation;
    p.wake = std::move(wake);
    return id;
}

void request_table::set_deadline(std::uint64_t id, mono_time deadline) {
    if (auto it = requests_.find(id); it != requests_.end()) it->second.deadline = deadline;
}

void request_table::set(pending& p, outcome o) {
    p.result = std::move(o);
    if (p.wake) p.wake();
}

bool request_table::complete(std::uint64_t id, std::string_view peer, std::uint64_t incarnation, outcome o) {
    auto it = requests_.find(id);
    if (it == requests_.end() || it->second.peer != peer || it->second.incarnation != incarnation || it->second.result) return false;
    set(it->second, std::move(o));
    return true;
}

bool request_table::settle(std::uint64_t id, outcome o) {
    auto it = requests_.find(id);
    if (it == requests_.end() || it->second.result) return false;
    set(it->second, std::move(o));
    return true;
}

void request_table::stop_to(std::string_view peer, std::uint64_t incarnation, const std::string& why) {
    for (auto& [id, r] : requests_) {
        if (r.peer == peer && r.incarnation == incarnation && !r.result) set(r, outcome{.what = outcome::kind::stopped, .message = why});
    }
}

void request_table::stop_all(const std::string& why) {
    for (auto& [id, r] : requests_) {
        if (!r.result) set(r, outcome{.what = outcome::kind::stopped, .message = why});
    }
}

const request_table::pending* request_table::find(std::uint64_t id) const {
    auto it = requests_.find(id);
    return it == requests_.end() ? nullptr : &it->second;
}

outcome request_table::finish(std::uint64_t id) {
    auto it = requests_.find(id);
    if (it == requests_.end()) return outcome{.what = outcome::kind::timeout};
    outcome o = it->second.result.value_or(outcome{.what = outcome::kind::timeout});
    requests_.erase(it);
    return o;
}

}  // namespace meshmaster::mesh::rpc
