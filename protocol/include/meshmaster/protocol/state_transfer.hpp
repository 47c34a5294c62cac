// Shard states of any size, over frames of bounded size.
//
// A state travels with the frame that hands it over (shard_stopped from the old holder, resume to
// the new one). When it is larger than one chunk, all but its last piece go first as state_chunk
// frames with increasing offsets, and the closing frame carries the last piece plus the total in
// `state_size`. The sender uses `encode_with_state` (into one buffer, or gathered: the state left
// where it is, for a writev); the receiver feeds chunks to a
// `state_assembler` and collects the whole state when the closing frame arrives.
//
// Thread safety: `encode_with_state` is a pure function; a `state_assembler` belongs to one
// connection and is used from that connection's thread.
#pragma once

#include <meshmaster/protocol/bytes.hpp>
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame.hpp>
#include <meshmaster/protocol/messages.hpp>
#include <meshmaster/protocol/result.hpp>

#include <cstddef>
#include <cstdint>
#include <map>
#include <tuple>
#include <vector>

namespace meshmaster::protocol {

/// Default piece size: 1 MiB keeps every frame far below the 16 MiB frame limit and lets other
/// frames (heartbeats, other shards' moves) interleave with a large transfer.
inline constexpr std::size_t default_state_chunk_size = std::size_t{1} << 20;

/// Appends `closing` (a resume, shard_stopped or checkpoint; its `state` and `state_size` are set here) carrying
/// `state`, preceded by state_chunk frames when `state` exceeds `chunk_size`.
template <class Closing>
result<void> encode_with_state(Closing closing, bytes_view state, std::vector<std::byte>& out,
                               std::size_t chunk_size = default_state_chunk_size);

/// The same frames, the same bytes on the wire, but `state` is not copied: its pieces in `out` view
/// it (see gathered_frames), so `state` must stay alive and unchanged until `out` is written.
template <class Closing>
result<void> encode_with_state(Closing closing, bytes_view state, gathered_frames& out,
                               std::size_t chunk_size = default_state_chunk_size);

/// Collects the pieces of incoming states, per (migration, shard), up to a total size limit.
class state_assembler {
public:
    /// Partial states kept at once (a slave sends one state's chunks after another, so one or two
    /// in flight is the norm).
    static constexpr std::size_t max_states_in_flight = 64;

    explicit state_assembler(std::uint64_t max_state_size) : max_state_size_(max_state_size) {}

    /// Takes one piece. Fails with `out_of_range:offset` when it does not continue its state
    /// exactly, or `frame_too_large` when the states buffered would grow past the limit or more
    /// than max_states_in_flight would be pending (the partial state is dropped either way).
    result<void> add(const state_chunk& chunk);

    /// The closing frame arrived: returns the whole state (earlier pieces + `last_piece`). Fails
    /// with `out_of_range:state_size` if the total is not `state_size`, `frame_too_large` past
    /// the limit.
    result<std::vector<std::byte>> finish(std::uint64_t migration, std::uint32_t shard, bytes_view last_piece,
                                          std::optional<std::uint64_t> state_size);

    /// Drops every partial state (the connection closed).
    void clear() noexcept { partial_.clear(); }
    [[nodiscard]] std::size_t pending() const noexcept { return partial_.size(); }
    [[nodiscard]] std::uint64_t buffered_bytes() const noexcept;

private:
    std::uint64_t max_state_size_;
    std::map<std::tuple<std::uint64_t, std::uint32_t>, std::vector<std::byte>> partial_;
};

}  // namespace meshmaster::protocol
