// Redis-backed discovery: for meshes whose nodes span several masters or hosts.
//
//   meshmaster::mesh::redis_discovery discovery(io.get_executor(), {.host = "10.0.0.2"}, node);
//   discovery.start({.id = "bot-3", .type = "bot", .host = "10.0.0.7", .port = 7100,
//                    .incarnation = random_u64(), .values = {{"shards", "0-15"}}});
//   ...
//   discovery.leave([&](boost::system::error_code) { io.stop(); });  // on SIGTERM
//
// Layout in Redis (P = redis_options::prefix, "meshmaster:mesh:" by default):
//   P "node:" id   a string: the node's record as one JSON object (encode_redis_record()), set with
//                  a TTL of `ttl` and refreshed every `refresh` (`SET … XX PX ttl`). A string rather
//                  than a hash: one SET writes record and TTL atomically, a refresh that finds the
//                  key gone cannot re-create it (XX), and MGET reads a page of SCAN in one trip.
//   P "events"     a pub/sub channel; every node publishes
//                    {"event":"join"|"update","db":0,"node":{record}}   when it (re)publishes
//                    {"event":"leave","db":0,"id":"…","incarnation":"…"} when it leaves gracefully
//                  Channels are global to a Redis server, not per database: "db" lets nodes that
//                  share a server and a prefix but not a database ignore each other.
//
// What the sink hears, and when:
//  - At (re)connection: SUBSCRIBE first, then publish the own record, then SCAN `P node:*` + MGET:
//    every peer found is reported up. Afterwards join/update/leave arrive by pub/sub at once.
//  - Every `refresh`, a re-scan reconciles the view: peers whose key expired (a node killed with
//    SIGKILL, a partitioned node) are reported down, at most `ttl + refresh` after the node's
//    last refresh — no keyspace notifications needed. Events that arrive while a scan runs win
//    over what the scan read.
//  - While Redis is unreachable the last view is kept: nothing is reported down. After the next
//    connection, peers missing from the scans are reported down only once `ttl` has passed since
//    reconnecting (a restarted, empty Redis gets every live node's record back within its
//    reconnect backoff), so a Redis restart causes no spurious downs.
//  - The own node (same id) is never reported. A record with a different incarnation, endpoint,
//    type or values is reported up again (peer_up means "appeared or changed").
//
// Graceful leave cannot be undone by a late refresh, by construction: every command of a node
// goes over one connection from one coroutine, in order. leave() only sets a flag; that coroutine
// checks the flag before each SET it sends, so once it sees the flag it sends no SET again, and a
// SET already in flight is answered before the delete is sent behind it on the same connection.
// Refreshes are `SET XX` (never create the key), and the delete is conditional on the key still
// holding this node's own record (a script comparing the value), so a leave racing a restart of
// the same id cannot delete the new incarnation's key either.
//
// Thread safety: none. The executor must not run two handlers at once (a single-threaded
// io_context or a strand); call every member on that executor, or before it runs. The sink, the
// log and every callback are called on it. Callbacks may call update() and leave(), and may
// destroy the redis_discovery.
//
// Lifetimes: the sink must outlive the redis_discovery. Destroying it stops everything at once,
// without deleting the key (it expires after `ttl`) and without calling a pending leave()'s `done`;
// nothing is called after the destructor returns. Internal state lives until the executor has run
// the aborted operations (or is destroyed).
#pragma once

#include <meshmaster/mesh/discovery.hpp>

#include <boost/asio/any_io_executor.hpp>
#include <boost/system/error_code.hpp>
#include <boost/system/result.hpp>

#include <chrono>
#include <cstdint>
#include <functional>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <type_traits>
#include <vector>

namespace meshmaster::mesh {

struct redis_options {
    std::string host = "127.0.0.1";  ///< name or address; resolved at every connection attempt
    std::uint16_t port = 6379;
    std::string username;  ///< Redis 6 ACL user; empty: `AUTH password` (the default user)
    std::string password;  ///< empty: no AUTH
    int database = 0;      ///< SELECT'ed when not 0
    std::string prefix = "meshmaster:mesh:";
    std::chrono::milliseconds ttl{3000};      ///< lifetime of a node's key without refresh
    std::chrono::milliseconds refresh{1000};  ///< key refresh and peer re-scan period; < ttl
    std::chrono::milliseconds command_timeout{1000};  ///< per connect, AUTH, command; a miss drops the connection
    /// Reconnection backoff, doubled per failure, with jitter. Keep reconnect_max below ttl: it
    /// bounds how long a node's key stays missing after Redis restarts.
    std::chrono::milliseconds reconnect_min{100};
    std::chrono::milliseconds reconnect_max{1000};
    /// Where connection trouble goes ("info", "warn", "error"). Empty: JSON lines on stderr.
    std::function<void(std::string_view level, std::string_view message)> log;
};

/// Failures of talking to Redis, beside the network's own error codes (refused, reset, …).
enum class redis_errc : std::uint8_t {
    ok = 0,
    timed_out,       ///< no answer within command_timeout
    auth_failed,     ///< AUTH refused, or Redis wants a password and none was given
    select_failed,   ///< SELECT refused (database index out of range)
    server_error,    ///< another error reply
    protocol_error,  ///< not valid RESP, or not the reply the command has
    not_started,     ///< leave() before start(): nothing was published
};

const boost::system::error_category& redis_category() noexcept;
inline boost::system::error_code make_error_code(redis_errc e) noexcept {
    return {static_cast<int>(e), redis_category()};
}

/// A node record as stored in Redis: one JSON object,
///   {"v":1,"id":"bot-3","type":"bot","host":"10.0.0.7","port":7100,
///    "incarnation":"12345678901234567890","values":{"shards":"0-15"}}
/// The incarnation is a decimal string: JSON readers in other languages lose 64-bit integers.
std::string encode_redis_record(const peer_record& record);
/// The record, or nothing when `text` is not a valid version-1 record.
std::optional<peer_record> decode_redis_record(std::string_view text);

class redis_discovery {
public:
    /// Throws std::invalid_argument on inconsistent options (refresh ≥ ttl, zero periods, …).
    redis_discovery(boost::asio::any_io_executor ex, redis_options opts, discovery_sink& sink);
    ~redis_discovery();
    redis_discovery(const redis_discovery&) = delete;
    redis_discovery& operator=(const redis_discovery&) = delete;

    /// Publishes `self` and reports peers from now on; connects, and keeps reconnecting, in the
    /// background. Throws std::logic_error if called twice, std::invalid_argument if self.id is
    /// empty.
    void start(peer_record self);

    /// The own record changed (values, type, endpoint): rewrites the key and publishes an update
    /// as soon as connected. The id must stay the same (std::invalid_argument). Ignored after
    /// leave().
    void update(peer_record self);

    /// Graceful goodbye: stops refreshing, deletes the own key, publishes leave, then stops
    /// everything. `done` runs on the executor with an empty error code once the key is deleted,
    /// or with the failure (e.g. Redis unreachable) after at most 3 × command_timeout — the key
    /// then expires after `ttl`. No sink call happens once leave() has been called. Calling leave()
    /// again is harmless: its `done` runs with the same outcome. Before start(), `done` gets
    /// redis_errc::not_started.
    void leave(std::function<void(boost::system::error_code)> done);

    /// True while connected to Redis with the own record published and the peer view reconciled.
    [[nodiscard]] bool connected() const noexcept;

    using list_handler = std::function<void(boost::system::result<std::vector<peer_record>>)>;
    /// One-shot read of every record under opts.prefix in opts.database (e.g. for
    /// `meshmaster mesh nodes --redis`), sorted by id. `done` runs on `ex`.
    static void async_list(boost::asio::any_io_executor ex, redis_options opts, list_handler done);
    /// The same, blocking the calling thread (runs an io_context of its own).
    static boost::system::result<std::vector<peer_record>> list(const redis_options& opts);

private:
    struct impl;
    std::shared_ptr<impl> impl_;
};

}  // namespace meshmaster::mesh

template <>
struct boost::system::is_error_code_enum<meshmaster::mesh::redis_errc> : std::true_type {};
