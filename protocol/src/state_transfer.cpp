#include <meshmaster/protocol/state_transfer.hpp>

#include <meshmaster/protocol/codec.hpp>

#include <algorithm>

namespace meshmaster::protocol {

namespace {

// Splits `state` into state_chunk frames and the closing one; `emit(message, piece)` encodes each,
// `piece` being the part of `state` it carries.
template <class Closing, class Emit>
result<void> split_state(Closing closing, bytes_view state, std::size_t chunk_size, Emit&& emit) {
    chunk_size = std::max<std::size_t>(chunk_size, 1);
    std::size_t offset = 0;
    std::uint64_t migration = 0;  // checkpoints have none: their chunks use 0
    if constexpr (requires { closing.migration_id; }) migration = closing.migration_id;
    while (state.size() - offset > chunk_size) {
        const bytes_view piece = state.subspan(offset, chunk_size);
        const state_chunk chunk{.migration_id = migration,
                                .shard = closing.shard,
                                .epoch = closing.epoch,
                                .offset = offset,
                                .data = piece};
        if (auto r = emit(chunk, piece); !r) return r;
        offset += chunk_size;
    }
    closing.state = state.subspan(offset);
    closing.state_size = offset == 0 ? std::nullopt : std::optional<std::uint64_t>(state.size());
    return emit(closing, closing.state);
}

}  // namespace

template <class Closing>
result<void> encode_with_state(Closing closing, bytes_view state, std::vector<std::byte>& out, std::size_t chunk_size) {
    const std::size_t start = out.size();
    auto r = split_state(closing, state, chunk_size, [&](const auto& m, bytes_view) { return encode(m, out); });
    if (!r) out.resize(start);
    return r;
}

template <class Closing>
result<void> encode_with_state(Closing closing, bytes_view state, gathered_frames& out, std::size_t chunk_size) {
    const std::size_t bytes = out.bytes.size();
    const std::size_t pieces = out.pieces.size();
    auto r = split_state(closing, state, chunk_size,
                         [&](const auto& m, bytes_view piece) { return encode_gathered(m, piece, out); });
    if (!r) {
        out.bytes.resize(bytes);
        out.pieces.resize(pieces);
    }
    return r;
}

template result<void> encode_with_state<resume>(resume, bytes_view, std::vector<std::byte>&, std::size_t);
template result<void> encode_with_state<shard_stopped>(shard_stopped, bytes_view, std::vector<std::byte>&, std::size_t);
template result<void> encode_with_state<checkpoint>(checkpoint, bytes_view, std::vector<std::byte>&, std::size_t);
template result<void> encode_with_state<resume>(resume, bytes_view, gathered_frames&, std::size_t);
template result<void> encode_with_state<shard_stopped>(shard_stopped, bytes_view, gathered_frames&, std::size_t);
template result<void> encode_with_state<checkpoint>(checkpoint, bytes_view, gathered_frames&, std::size_t);

result<void> state_assembler::add(const state_chunk& chunk) {
    auto key = std::make_tuple(chunk.migration_id, chunk.shard);
    auto existing = partial_.find(key);
    if (existing == partial_.end()) {
        // A peer must not make us keep an unbounded number of (possibly empty) partial states.
        if (chunk.offset != 0) return fail(errc::out_of_range, "offset");
        if (chunk.data.empty()) return {};
        if (partial_.size() >= max_states_in_flight) return fail(errc::frame_too_large, "states in flight");
    }
    auto& partial = partial_[key];
    if (chunk.offset != partial.size()) {
        partial_.erase(key);
        return fail(errc::out_of_range, "offset");
    }
    if (buffered_bytes() + chunk.data.size() > max_state_size_) {
        partial_.erase(key);
        return fail(errc::frame_too_large);
    }
    partial.insert(partial.end(), chunk.data.begin(), chunk.data.end());
    return {};
}

result<std::vector<std::byte>> state_assembler::finish(std::uint64_t migration, std::uint32_t shard,
                                                       bytes_view last_piece, std::optional<std::uint64_t> state_size) {
    std::vector<std::byte> whole;
    if (auto it = partial_.find(std::make_tuple(migration, shard)); it != partial_.end()) {
        whole = std::move(it->second);
        partial_.erase(it);
    }
    if (whole.size() + last_piece.size() > max_state_size_) return fail(errc::frame_too_large);
    whole.insert(whole.end(), last_piece.begin(), last_piece.end());
    if (state_size && *state_size != whole.size()) return fail(errc::out_of_range, "state_size");
    return whole;
}

std::uint64_t state_assembler::buffered_bytes() const noexcept {
    std::uint64_t total = 0;
    for (const auto& [key, bytes] : partial_) total += bytes.size();
    return total;
}

}  // namespace meshmaster::protocol
