#include "static_discovery.hpp"

#include <arpa/inet.h>
#include <netinet/in.h>

#include <cstdlib>

namespace meshmaster::mesh {

static_discovery::static_discovery(const std::vector<std::string>& addresses, std::string self_id)
    : self_id_(std::move(self_id)) {
    for (const auto& a : addresses) {
        if (auto t = parse(a)) {
            targets_.push_back(std::move(*t));
        } else {
            invalid_.push_back(a);
        }
    }
}

std::optional<peer_record> static_discovery::answered(const target& t, const std::optional<probe_result>& r) {
    if (!r) {
        all_answered_ = false;
        return std::nullopt;
    }
    if (r->id == self_id_) return std::nullopt;  // the list names this node too
    return peer_record{.id = r->id, .type = r->type, .host = t.host, .port = t.port, .incarnation = r->incarnation, .values = {}};
}

std::optional<static_discovery::target> static_discovery::parse(const std::string& address) {
    const auto colon = address.rfind(':');
    if (colon == std::string::npos) return std::nullopt;
    const std::string ip = address.substr(0, colon);
    // The port as strtoul reads it (what the node always did): digits up to the first other char.
    const auto port = static_cast<std::uint16_t>(std::strtoul(address.c_str() + colon + 1, nullptr, 10));
    char text[INET6_ADDRSTRLEN] = {};
    in_addr v4{};
    if (::inet_pton(AF_INET, ip.c_str(), &v4) == 1) {
        ::inet_ntop(AF_INET, &v4, text, sizeof text);
        return target{text, port};
    }
    const auto percent = ip.find('%');
    const std::string bare = ip.substr(0, percent);
    in6_addr v6{};
    if (::inet_pton(AF_INET6, bare.c_str(), &v6) == 1) {
        ::inet_ntop(AF_INET6, &v6, text, sizeof text);
        return target{std::string(text) + (percent == std::string::npos ? "" : ip.substr(percent)), port};
    }
    return std::nullopt;
}

}  // namespace meshmaster::mesh
