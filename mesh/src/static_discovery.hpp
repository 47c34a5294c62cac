// Static discovery, sans I/O: the configured "HOST:PORT" list of nodes to find by probing, and
// what a round of probes means — each answerer (but this node itself) is reported as a member,
// and the next round comes quickly while some address is silent, else every offline_after (a
// restart shows as a new incarnation). The driver sends the probes and waits; this decides.
//
// Thread safety: none; used by one coroutine of the node.
#pragma once

#include <meshmaster/mesh/discovery.hpp>
#include <meshmaster/mesh/node_types.hpp>

#include <chrono>
#include <cstdint>
#include <optional>
#include <string>
#include <vector>

namespace meshmaster::mesh {

class static_discovery {
public:
    struct target {
        std::string host;  ///< the IP address, as the node writes it (canonical text)
        std::uint16_t port = 0;
    };
    /// While some address is silent, the next round comes after this.
    static constexpr std::chrono::milliseconds retry{500};
    /// How long one probe waits for its answer.
    static constexpr std::chrono::milliseconds probe_timeout{250};

    static_discovery(const std::vector<std::string>& addresses, std::string self_id);

    /// The addresses that parse as IP:PORT, in the configured order.
    [[nodiscard]] const std::vector<target>& targets() const noexcept { return targets_; }
    /// The configured entries that are not IP:PORT (the driver warns of them each round).
    [[nodiscard]] const std::vector<std::string>& invalid() const noexcept { return invalid_; }

    /// A round starts: every target is still to answer.
    void begin_round() noexcept { all_answered_ = true; }
    /// The outcome of the probe of `t`: the record to report to the node (peer_up), if any.
    std::optional<peer_record> answered(const target& t, const std::optional<probe_result>& r);
    /// The pause before the next round: `offline_after` once every target answered this round.
    [[nodiscard]] std::chrono::milliseconds pause(std::chrono::milliseconds offline_after) const noexcept {
        return all_answered_ ? offline_after : retry;
    }

    /// "IP:PORT" (the port after the last colon; IPv4 or IPv6, a scope kept as written).
    static std::optional<target> parse(const std::string& address);

private:
    std::vector<target> targets_;
    std::vector<std::string> invalid_;
    std::string self_id_;
    bool all_answered_ = true;
};

}  // namespace meshmaster::mesh
