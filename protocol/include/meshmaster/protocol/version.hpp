// The protocol version and the rule for which peers may talk to each other.
//
// Peers exchange (major, minor) in auth_challenge and slave_hello. Same major: compatible; the
// newer side must not send events or rely on fields the older minor does not know (unknown keys
// are ignored, so extra fields are always safe). Different major: refused with
// `errc::unsupported_version` before anything else happens.
#pragma once

#include <meshmaster/protocol/result.hpp>

#include <cstdint>

namespace meshmaster::protocol {

struct protocol_version {
    std::uint32_t major = 0;
    std::uint32_t minor = 0;
    friend constexpr auto operator<=>(const protocol_version&, const protocol_version&) = default;
};

/// The version this build speaks.
inline constexpr protocol_version current_version{1, 3};

/// Whether a peer announcing `peer` may talk to this build.
[[nodiscard]] constexpr bool is_compatible(protocol_version peer) noexcept {
    return peer.major == current_version.major;
}

/// `is_compatible` as a result: `unsupported_version` naming the field that carried the version.
[[nodiscard]] inline result<void> check_compatible(protocol_version peer) noexcept {
    if (is_compatible(peer)) return {};
    return fail(errc::unsupported_version, "version_major");
}

}  // namespace meshmaster::protocol
