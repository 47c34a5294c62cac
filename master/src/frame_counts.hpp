// Frames in and out of the slave server, per protocol event: `meshmaster_frames_total`. Counted on
// every frame, so an array indexed by event id, not a map with a name built per frame; the names
// are given only when the metrics are written. Application events (ids from
// protocol::application_event_first up) share one count, and ids this build does not know
// (refused as they arrive) another. Sans-I/O. Thread safety: none; the slave server's thread.
#pragma once

#include <meshmaster/protocol/event_id.hpp>
#include <meshmaster/protocol/frame.hpp>

#include <array>
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace meshmaster::master {

struct frame_counts {
    static constexpr std::size_t unknown = 0;  // ids no event of this build has (slot 0: no event has id 0)
    static constexpr std::size_t application = protocol::last_known_event + 1;
    static constexpr std::size_t slots = application + 1;

    std::array<std::uint64_t, slots> in{};
    std::array<std::uint64_t, slots> out{};

    [[nodiscard]] static constexpr std::size_t slot(std::uint32_t event) noexcept {
        if (protocol::is_application_event(event)) return application;
        return protocol::known_event(event) ? event : unknown;
    }
    /// The `event` label of a slot: the protocol's name, "application" or "unknown".
    [[nodiscard]] static std::string_view label(std::size_t slot) noexcept {
        if (slot == application) return "application";
        if (slot == unknown) return "unknown";
        return protocol::to_string(static_cast<protocol::event_id>(slot));
    }

    void received(std::uint32_t event) noexcept { ++in[slot(event)]; }
    /// Whole frames, as queued for a slave: each header is read, its body skipped.
    void sent(std::span<const std::byte> frames) noexcept {
        std::size_t at = 0;
        while (frames.size() - at >= protocol::frame_header_size) {
            const protocol::frame_header h = protocol::read_frame_header(frames.data() + at);
            ++out[slot(h.event)];
            at += protocol::frame_header_size + h.body_size;
            if (at > frames.size()) break;  // not whole frames: count no further
        }
    }
};

}  // namespace meshmaster::master
