#include "examples.hpp"

#include <meshmaster/protocol/auth.hpp>

#include <array>
#include <cstddef>

namespace meshmaster::protocol::test {

namespace {

// Stand-ins for random nonces: recognisable counting patterns.
template <std::size_t N>
constexpr std::array<std::byte, N> counting(unsigned first) {
    std::array<std::byte, N> bytes{};
    for (std::size_t i = 0; i < N; ++i) bytes[i] = static_cast<std::byte>((first + i) & 0xffu);
    return bytes;
}
constexpr auto slave_nonce = counting<32>(0x00);
constexpr auto master_nonce = counting<32>(0x40);
// The handshake's MACs are real: computed from the documented example secret, both nonces and
// the hello's slave id, so the document's auth_proof and welcome vectors can be recomputed.
const proof slave_mac = slave_proof(example_secret, bytes_view(master_nonce), bytes_view(slave_nonce), "slave-3");
const proof master_mac = master_proof(example_secret, bytes_view(master_nonce), bytes_view(slave_nonce), "slave-3");
// 2026-12-07T05:30:00.123456Z in Unix microseconds: a wall-clock stamp as shard_stopped carries it.
constexpr std::uint64_t stopped_at_us = 1796621400123456;
constexpr std::array<std::byte, 4> chunk_data{std::byte{0xde}, std::byte{0xad}, std::byte{0xbe},
                                              std::byte{0xef}};

}  // namespace

const std::vector<std::pair<std::string_view, message>>& examples() {
    static const std::vector<std::pair<std::string_view, message>> all{
        {"soft_start", soft_start{.restart_id = 7}},
        {"full_start", full_start{.restart_id = 0}},
        {"shard_migration_start", shard_migration_start{.restart_id = 7,
                                                        .role = migration_role::source,
                                                        .peer = "slave-4",
                                                        .shard_count = 16}},
        {"stop_shard", stop_shard{.shard = 12, .epoch = 41, .migration_id = 9001}},
        {"resume", resume{.shard = 12,
                          .epoch = 42,
                          .migration_id = 9001,
                          .state = bytes_view::of("seq=1234"),
                          .state_size = std::nullopt}},
        // 1.3: the stop's wall-clock time relayed to the new holder, which measures the pause.
        {"resume_timed", resume{.shard = 12,
                                .epoch = 42,
                                .migration_id = 9001,
                                .state = bytes_view::of("seq=1234"),
                                .state_size = std::nullopt,
                                .stopped_at_us = stopped_at_us}},
        {"shutdown", shutdown{.reason = "rolling restart", .deadline_ms = 5000}},
        {"state_chunk", state_chunk{.migration_id = 9001,
                                    .shard = 12,
                                    .epoch = 41,
                                    .offset = 65536,
                                    .data = bytes_view(chunk_data)}},
        {"slave_hello", slave_hello{.version_major = 1,
                                    .version_minor = 0,
                                    .slave_id = "slave-3",
                                    .pid = 4242,
                                    .generation = 2,
                                    .nonce = bytes_view(slave_nonce),
                                    .shards = {{0, 3}, {1, 3}, {2, 300}},
                                    .soft_started = false,
                                    .stopped = {{7, 12}}}},
        // 1.2: the same hello from a slave that runs a mesh node (a second vector for event 8).
        {"slave_hello_mesh", slave_hello{.version_major = 1,
                                         .version_minor = 2,
                                         .slave_id = "slave-3",
                                         .pid = 4242,
                                         .generation = 2,
                                         .nonce = bytes_view(slave_nonce),
                                         .shards = {{0, 3}},
                                         .soft_started = false,
                                         .stopped = {},
                                         .mesh_host = "10.0.0.3",
                                         .mesh_port = 7946,
                                         .mesh_incarnation = 0x5eed0003,
                                         .mesh_type = "bot",
                                         .mesh_values = string_map{{"zone", "eu-1"}}}},
        {"soft_start_complete", soft_start_complete{.restart_id = 7}},
        {"shard_stopped", shard_stopped{.shard = 12,
                                        .epoch = 41,
                                        .migration_id = 9001,
                                        .state = bytes_view::of("seq=1234"),
                                        .state_size = 8}},
        // 1.3: the same stop, stamped with when the slave stopped handling the shard's events.
        {"shard_stopped_timed", shard_stopped{.shard = 12,
                                              .epoch = 41,
                                              .migration_id = 9001,
                                              .state = bytes_view::of("seq=1234"),
                                              .state_size = 8,
                                              .stopped_at_us = stopped_at_us}},
        {"auth_challenge", auth_challenge{.version_major = 1,
                                          .version_minor = 3,
                                          .master_id = "master-a",
                                          .nonce = bytes_view(master_nonce)}},
        {"auth_proof", auth_proof{.mac = bytes_view(slave_mac)}},
        {"welcome", welcome{.mac = bytes_view(master_mac), .heartbeat_interval_ms = 250}},
        {"start_shard", start_shard{.shard = 5, .epoch = 1, .shard_count = 32}},
        {"shard_started", shard_started{.shard = 5, .epoch = 1}},
        {"resumed", resumed{.shard = 12, .epoch = 42, .migration_id = 9001}},
        // 1.3: the pause the new holder measured, 48.213 ms after resume_timed's stopped_at_us.
        {"resumed_pause", resumed{.shard = 12, .epoch = 42, .migration_id = 9001, .pause_us = 48213}},
        {"shutdown_complete", shutdown_complete{}},
        {"heartbeat", heartbeat{.seq = 77, .progress = 1234567}},
        // 1.3: the echo of the peer's heartbeat 41, sent 1.83 ms after it arrived.
        {"heartbeat_echo", heartbeat{.seq = 78, .progress = 1234600, .echo_seq = 41, .echo_delay_us = 1830}},
        {"error", error_message{.code = "stale_epoch",
                                .message = "shard 12 is held under epoch 42",
                                .shard = 12,
                                .epoch = 41,
                                .fatal = false}},
        {"checkpoint", checkpoint{.shard = 12, .epoch = 42, .state = bytes_view::of("seq=1300")}},
        {"handoff_complete", handoff_complete{.shard = 12, .epoch = 41, .migration_id = 9001}},
        {"mesh_members", mesh_members{.version = 7,
                                      .members = {{.id = "slave-3",
                                                   .type = "bot",
                                                   .host = "10.0.0.3",
                                                   .port = 7946,
                                                   .incarnation = 0x5eed0003,
                                                   .values = {{"zone", "eu-1"}}},
                                                  {.id = "slave-4",
                                                   .type = "room",
                                                   .host = "fd00::4",
                                                   .port = 7946,
                                                   .incarnation = 0x5eed0004,
                                                   .values = {}}}}},
        {"mesh_update", mesh_update{.mesh_type = "bot", .mesh_values = {{"zone", "eu-2"}, {"load", "0.7"}}}},
        {"application", application_frame{.event = 0x8000'0001u, .body = bytes_view::of("hi")}},
    };
    return all;
}

}  // namespace meshmaster::protocol::test
