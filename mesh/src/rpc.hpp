// The rpc layer of the node, sans I/O: the application message format carried inside channel
// messages and unreliable frames, the table of requests in flight (ids, deadlines, exactly one
// outcome each), and per peer the cache of requests already answered, which makes a retried
// request run its handler once. The Asio driver (node.cpp) sends what this encodes, waits on
// timers, and hands in what arrives and the time; nothing here reads a clock or touches a socket.
//
// Thread safety: none; every type here is used on the node's executor only.
#pragma once

#include <meshmaster/mesh/channel.hpp>
#include <meshmaster/mesh/node_types.hpp>

#include <array>
#include <cstdint>
#include <deque>
#include <functional>
#include <optional>
#include <span>
#include <string>
#include <unordered_map>
#include <vector>

namespace meshmaster::mesh::rpc {

// Application messages, inside a channel message or an unreliable frame (the wire format):
//   u8 kind · u16 LE command · u64 LE request id · payload
enum class msg_kind : std::uint8_t { request = 1, response = 2, error = 3, oneway = 4, stopped = 5 };
constexpr std::size_t msg_header = 11;
// The reasons a bye frame carries.
constexpr std::uint8_t bye_draining = 1;  // no new requests, please; answers still come
constexpr std::uint8_t bye_gone = 2;      // this incarnation is over

std::array<std::byte, msg_header> encode_header(msg_kind kind, std::uint16_t command, std::uint64_t id);
bytes encode_message(msg_kind kind, std::uint16_t command, std::uint64_t id, std::span<const std::byte> payload);

struct message {
    msg_kind kind{};
    std::uint16_t command = 0;
    std::uint64_t id = 0;
    std::span<const std::byte> payload;
};
/// Nullopt: shorter than the header, or a kind this version does not know (a bad frame).
std::optional<message> parse_message(std::span<const std::byte> m);

/// What a response, error or stopped message means to the request it answers; nullopt for the
/// kinds that are no answer (request, oneway).
std::optional<outcome> outcome_of(const message& m);

/// Requests this node answered or is answering for one peer, by id, so that a retry runs no
/// handler twice: the last 4096 ids, with their answers while those stay under 1 MiB in all (a
/// retry of one whose answer was let go gets none and times out — the handler still ran once).
class answer_cache {
public:
    static constexpr std::size_t ids_kept = 4096;
    static constexpr std::size_t bytes_kept = std::size_t{1} << 20;

    /// Records `id` as answered with `answer` (nullopt: the handler runs, no answer yet).
    void remember(std::uint64_t id, std::optional<bytes> answer);
    /// Forgets `id` (its handler gave no answer: a retry may run it again).
    void forget(std::uint64_t id);
    /// Nullptr: never seen. Else the entry, holding the encoded answer if one is kept.
    [[nodiscard]] const std::optional<bytes>* find(std::uint64_t id) const;
    [[nodiscard]] std::size_t size() const noexcept { return answered_.size(); }
    [[nodiscard]] std::size_t bytes_held() const noexcept { return bytes_; }

private:
    std::unordered_map<std::uint64_t, std::optional<bytes>> answered_;
    std::deque<std::uint64_t> order_;   // every id, oldest first
    std::deque<std::uint64_t> cached_;  // ids whose answers are kept, oldest first
    std::size_t bytes_ = 0;
};

/// The requests this node sent and awaits, by id. Each gets exactly one outcome: the first of a
/// response, an error, stopped (the peer left, restarted or is going offline; this node shuts
/// down) or, when the driver finishes it after its last deadline without one, a timeout. Later
/// answers to a finished id are ignored.
class request_table {
public:
    struct pending {
        std::string peer;
        std::uint64_t incarnation = 0;
        mono_time deadline{};
        std::optional<outcome> result;
        std::function<void()> wake;  // the driver's: a result has come (cancel its wait)
    };

    /// A new request to `peer` (that incarnation of it): its id, never 0, never reused.
    std::uint64_t begin(std::string peer, std::uint64_t incarnation, std::function<void()> wake = {});
    /// Sets the deadline of the current attempt (a retry sets a new one); the driver's timer
    /// waits for it, and finish() after it gives a timeout unless an answer came first.
    void set_deadline(std::uint64_t id, mono_time deadline);
    /// The answer to `id` from that peer's incarnation: true if it is the request's outcome.
    bool complete(std::uint64_t id, std::string_view peer, std::uint64_t incarnation, outcome o);
    /// Outcome `o` for `id`, unless it has one (a local failure: the peer went away, too large).
    bool settle(std::uint64_t id, outcome o);
    /// Every unfinished request to that incarnation of `peer` is stopped with `why`.
    void stop_to(std::string_view peer, std::uint64_t incarnation, const std::string& why);
    /// Every unfinished request is stopped with `why` (the node shuts down).
    void stop_all(const std::string& why);
    [[nodiscard]] const pending* find(std::uint64_t id) const;
    /// Removes `id` and returns its outcome: a timeout if none came.
    outcome finish(std::uint64_t id);
    [[nodiscard]] std::size_t size() const noexcept { return requests_.size(); }

private:
    void set(pending& p, outcome o);
    std::unordered_map<std::uint64_t, pending> requests_;
    std::uint64_t next_ = 0;
};

}  // namespace meshmaster::mesh::rpc
