// Redis discovery: the coroutines that keep the own key alive and the peer
// view in step (see redis_discovery.hpp for the layout in Redis and the guarantees).
//
// Shape: one coroutine per node, run(), connects two connections (commands; pub/sub), and while
// connected runs command_loop() || subscriber_loop(). Only command_loop() sends commands on the
// command connection — refresh, update, re-scan and the goodbye — so they reach Redis in the order
// it decides; that ordering is what makes leave() final. The record codec, the scan of every
// record and the one-shot listing are in redis_records.cpp.
#include <meshmaster/mesh/redis_discovery.hpp>

#include "redis_records.hpp"
#include "resp_connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/this_coro.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>
#include <boost/json/value.hpp>

#include <algorithm>
#include <charconv>
#include <cstdio>
#include <exception>
#include <map>
#include <random>
#include <set>
#include <stdexcept>
#include <utility>

namespace meshmaster::mesh {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::awaitable;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
using boost::system::error_code;
using clock = std::chrono::steady_clock;
using detail::reply;
using detail::resp_connection;
using detail::text_of;
using detail::record_object;
using detail::record_of;
using detail::scan_records;
using detail::string_field;

namespace {

std::string node_key(const redis_options& o, std::string_view id) { return o.prefix + "node:" + std::string(id); }

// Deletes the key only while it holds this node's own record: a leave that comes late must not
// delete the key of a newer incarnation that reuses the id.
constexpr const char* delete_if_mine =
    "if redis.call('GET', KEYS[1]) == ARGV[1] then return redis.call('DEL', KEYS[1]) end return 0";

void default_log(std::string_view level, std::string_view message) {
    json::object line;
    line["level"] = level;
    line["component"] = "mesh.redis";
    line["msg"] = message;
    const std::string text = json::serialize(line);
    std::fprintf(stderr, "%s\n", text.c_str());
}

}  // namespace

// ---- the node's coroutines ------------------------------------------------------------------

struct redis_discovery::impl : std::enable_shared_from_this<impl> {
    impl(asio::any_io_executor e, redis_options o, discovery_sink& s)
        : ex(std::move(e)), opts(std::move(o)), sink(&s), channel(opts.prefix + "events"), wake(ex), leave_timer(ex) {
        if (!opts.log) opts.log = default_log;
    }

    [[nodiscard]] bool stopped() const noexcept { return finished || destroyed; }
    void log(std::string_view level, const std::string& message) const { opts.log(level, message); }

    // -- sink calls: none once leaving or destroyed -----------------------------------------------
    bool may_report() const noexcept { return sink && !leaving && !stopped(); }
    void report_up(const peer_record& r) {
        if (may_report()) sink->peer_up(r);
    }
    void report_down(const std::string& id) {
        if (may_report()) sink->peer_down(id);
    }

    // -- commands (command_loop's connection only) ---------------------------------------------

    // (Re)writes the own record and announces it. The leave guard: no SET once leaving.
    awaitable<error_code> write_own(resp_connection& c, const char* event) {
        if (leaving || stopped()) co_return error_code{};
        update_pending = false;
        std::string value = encode_redis_record(self);
        const std::vector<std::string> set{"SET", self_key, value, "PX", std::to_string(opts.ttl.count())};
        const reply r = co_await c.command(set, opts.command_timeout);
        if (!r.is(REDIS_REPLY_STATUS)) co_return detail::error_of(r, redis_errc::server_error);
        written = std::move(value);
        json::object message;
        message["event"] = event;
        message["db"] = opts.database;
        message["node"] = record_object(self);
        const std::vector<std::string> publish{"PUBLISH", channel, json::serialize(message)};
        const reply p = co_await c.command(publish, opts.command_timeout);
        if (!p.is(REDIS_REPLY_INTEGER)) co_return detail::error_of(p, redis_errc::server_error);
        co_return error_code{};
    }

    // Extends the key's TTL without ever creating it (XX): only write_own() creates, and only
    // while not leaving. A key that vanished while we lived (expired during a stall, deleted by
    // an operator, Redis flushed) is written again and announced as a join.
    awaitable<error_code> refresh_own(resp_connection& c) {
        if (leaving || stopped()) co_return error_code{};
        const std::vector<std::string> set{"SET", self_key, written, "XX", "PX", std::to_string(opts.ttl.count())};
        const reply r = co_await c.command(set, opts.command_timeout);
        if (r.is(REDIS_REPLY_NIL)) {
            if (leaving || stopped()) co_return error_code{};
            log("warn", "the own key " + self_key + " had vanished from Redis; publishing it again");
            const error_code ec = co_await write_own(c, "join");
            co_return ec;
        }
        if (!r.is(REDIS_REPLY_STATUS)) co_return detail::error_of(r, redis_errc::server_error);
        co_return error_code{};
    }

    awaitable<error_code> say_goodbye(resp_connection& c) {
        const std::vector<std::string> del{"EVAL", delete_if_mine, "1", self_key, written};
        const reply r = co_await c.command(del, opts.command_timeout);
        if (r.ec) co_return r.ec;
        if (r.is(REDIS_REPLY_ERROR)) {
            // Scripting denied (an ACL, a managed Redis): a plain DEL is still ordered after our
            // last SET, which is what keeps leave final.
            log("warn", "conditional delete refused (" + std::string(r.text()) + "); deleting with DEL");
            const std::vector<std::string> plain{"DEL", self_key};
            const reply d = co_await c.command(plain, opts.command_timeout);
            if (!d.is(REDIS_REPLY_INTEGER)) co_return detail::error_of(d, redis_errc::server_error);
        } else if (!r.is(REDIS_REPLY_INTEGER)) {
            co_return redis_errc::protocol_error;
        }
        json::object message;
        message["event"] = "leave";
        message["db"] = opts.database;
        message["id"] = self.id;
        message["incarnation"] = std::to_string(self.incarnation);
        const std::vector<std::string> publish{"PUBLISH", channel, json::serialize(message)};
        const reply p = co_await c.command(publish, opts.command_timeout);
        if (!p.is(REDIS_REPLY_INTEGER)) co_return detail::error_of(p, redis_errc::server_error);
        co_return error_code{};
    }

    awaitable<error_code> resync(resp_connection& c) {
        const std::uint64_t scan_seq = event_seq;
        std::map<std::string, peer_record> found;
        const error_code ec = co_await scan_records(
            c, opts, found, [this] { return leaving || stopped(); },
            [this](std::string_view key) {
                if (warned_keys.emplace(key).second) {
                    log("warn", "ignoring " + std::string(key) + ": not a node record of the id it names");
                }
            });
        if (ec) co_return ec;
        reconcile(found, scan_seq);
        co_return error_code{};
    }

    // The view becomes what the scan found, except for ids a pub/sub event touched after the
    // scan began (the event is newer than what the scan read), and except that nobody is
    // reported down during the grace period after a reconnection.
    void reconcile(const std::map<std::string, peer_record>& found, std::uint64_t scan_seq) {
        if (!may_report()) return;
        const auto newer_event = [&](const std::string& id) {
            const auto it = last_event.find(id);
            return it != last_event.end() && it->second > scan_seq;
        };
        for (const auto& [id, record] : found) {
            if (id == self.id) {
                if (record.incarnation != self.incarnation && !warned_duplicate) {
                    warned_duplicate = true;
                    log("warn", "another node publishes the id " + id + " (incarnation " +
                                    std::to_string(record.incarnation) + "): node ids must be unique");
                }
                continue;
            }
            if (newer_event(id)) continue;
            const auto it = view.find(id);
            if (it != view.end() && it->second == record) continue;
            view.insert_or_assign(id, record);
            report_up(record);
        }
        if (clock::now() >= grace_until) {
            std::vector<std::string> gone;
            for (const auto& [id, record] : view) {
                if (!found.contains(id) && !newer_event(id)) gone.push_back(id);
            }
            for (const auto& id : gone) {
                view.erase(id);
                report_down(id);
            }
        }
        std::erase_if(last_event, [&](const auto& e) { return e.second <= scan_seq; });
    }

    void on_event(std::string_view payload) {
        if (!may_report()) return;
        error_code ec;
        const json::value v = json::parse(payload, ec);
        const auto* o = ec ? nullptr : v.if_object();
        if (!o) return;
        const auto* db = o->if_contains("db");
        const auto* event = string_field(*o, "event");
        if (!db || !db->is_int64() || db->as_int64() != opts.database || !event) return;
        if (*event == "join" || *event == "update") {
            const auto* node = o->if_contains("node");
            auto record = node ? record_of(*node) : std::nullopt;
            if (!record || record->id == self.id) return;
            last_event[record->id] = ++event_seq;
            const auto it = view.find(record->id);
            if (it != view.end() && it->second == *record) return;
            view.insert_or_assign(record->id, *record);
            report_up(*record);
        } else if (*event == "leave") {
            const auto* id = string_field(*o, "id");
            const auto* incarnation = string_field(*o, "incarnation");
            if (!id || !incarnation || *id == self.id) return;
            const std::string name(*id);
            last_event[name] = ++event_seq;
            const auto it = view.find(name);
            // A late goodbye of an earlier incarnation does not remove its successor.
            if (it == view.end() || std::to_string(it->second.incarnation) != *incarnation) return;
            view.erase(it);
            report_down(name);
        }
    }

    // -- the loops of one connected session ----------------------------------------------------

    static awaitable<bool> cancelled() {
        const auto state = co_await asio::this_coro::cancellation_state;
        co_return state.cancelled() != asio::cancellation_type::none;
    }

    awaitable<error_code> command_loop(resp_connection& c) {
        auto next_tick = clock::now() + opts.refresh;
        while (true) {
            if (stopped()) co_return error_code{};
            if (leaving) {
                const error_code ec = co_await say_goodbye(c);
                if (!ec) finish_leave({});
                co_return ec;
            }
            if (update_pending) {
                const error_code ec = co_await write_own(c, "update");
                if (ec) {
                    update_pending = true;
                    co_return ec;
                }
                continue;
            }
            if (clock::now() >= next_tick) {
                error_code ec = co_await refresh_own(c);
                if (!ec) ec = co_await resync(c);
                if (ec) co_return ec;
                next_tick += opts.refresh;
                if (next_tick <= clock::now()) next_tick = clock::now() + opts.refresh;
                continue;
            }
            wake.expires_at(next_tick);
            co_await wake.async_wait(asio::as_tuple(use_awaitable));  // cut short by update()/leave()
            const bool aborted = co_await cancelled();
            if (aborted) co_return asio::error::operation_aborted;
        }
    }

    // Reads pub/sub messages; PINGs when the line is quiet for a refresh period, and gives up on a
    // connection whose PONG does not come back within command_timeout.
    awaitable<error_code> subscriber_loop(resp_connection& s) {
        std::optional<clock::time_point> ping_deadline;
        while (true) {
            const auto wait = ping_deadline ? std::chrono::duration_cast<std::chrono::milliseconds>(*ping_deadline - clock::now())
                                            : opts.refresh;
            const reply r = co_await s.receive(std::max(wait, std::chrono::milliseconds(1)));
            if (stopped()) co_return error_code{};
            if (r.ec == redis_errc::timed_out) {
                if (ping_deadline) co_return redis_errc::timed_out;
                const std::vector<std::string> ping{"PING"};
                const error_code ec = co_await s.send(ping, opts.command_timeout);
                if (ec) co_return ec;
                ping_deadline = clock::now() + opts.command_timeout;
                continue;
            }
            if (r.ec) co_return r.ec;
            if (r.is(REDIS_REPLY_ERROR)) co_return detail::error_of(r, redis_errc::server_error);
            if (!r.is(REDIS_REPLY_ARRAY) || r.value->elements < 2) continue;
            const std::string_view kind = text_of(r.value->element[0]);
            if (kind == "message" && r.value->elements == 3) {
                on_event(text_of(r.value->element[2]));
            } else if (kind == "pong") {
                ping_deadline.reset();
            }
        }
    }

    awaitable<error_code> subscribe(resp_connection& s) {
        const std::vector<std::string> args{"SUBSCRIBE", channel};
        const reply r = co_await s.command(args, opts.command_timeout);
        if (!r.is(REDIS_REPLY_ARRAY)) co_return detail::error_of(r, redis_errc::server_error);
        if (r.value->elements != 3 || text_of(r.value->element[0]) != "subscribe") co_return redis_errc::protocol_error;
        co_return error_code{};
    }

    // Publish, reconcile, then serve until the connection fails or the node has left.
    awaitable<error_code> session(resp_connection& c, resp_connection& s) {
        error_code ec = co_await write_own(c, "join");
        if (!ec) ec = co_await resync(c);
        if (ec) co_return ec;
        if (stopped()) co_return error_code{};
        is_connected = true;
        log("info", "connected to Redis at " + opts.host + ":" + std::to_string(opts.port) + "; " +
                        std::to_string(view.size()) + " peer(s) known");
        auto ended = co_await (command_loop(c) || subscriber_loop(s));
        is_connected = false;
        co_return ended.index() == 0 ? std::get<0>(ended) : std::get<1>(ended);
    }

    static awaitable<void> run(std::shared_ptr<impl> self) {
        std::minstd_rand jitter(std::random_device{}());
        auto backoff = self->opts.reconnect_min;
        std::uint64_t failures = 0;
        while (!self->stopped()) {
            auto cmd = std::make_shared<resp_connection>(self->ex);
            auto sub = std::make_shared<resp_connection>(self->ex);
            self->cmd = cmd;
            self->sub = sub;
            error_code ec = co_await cmd->open(self->opts);
            bool served = false;
            if (!ec && !self->stopped()) {
                if (self->leaving) {
                    // Gone before (re)connecting: the key may still be there; delete it.
                    ec = co_await self->say_goodbye(*cmd);
                    if (!ec) self->finish_leave({});
                } else {
                    ec = co_await sub->open(self->opts);
                    if (!ec) ec = co_await self->subscribe(*sub);
                    if (!ec) {
                        failures = 0;
                        backoff = self->opts.reconnect_min;
                        if (self->lost) self->grace_until = clock::now() + self->opts.ttl;
                        served = true;
                        ec = co_await self->session(*cmd, *sub);
                    }
                }
            }
            cmd->close();
            sub->close();
            self->cmd.reset();
            self->sub.reset();
            if (self->stopped()) break;
            if (ec) self->last_error = ec;
            if (served) {
                self->lost = true;
                self->log("warn", "lost the Redis connection (" + ec.message() + "); keeping the last view, reconnecting");
            } else if (failures++ % 20 == 0) {
                self->log("warn", "cannot reach Redis at " + self->opts.host + ":" + std::to_string(self->opts.port) +
                                      ": " + ec.message() + " (retrying)");
            }
            // Full jitter in [backoff/2, backoff]: nodes of a restarted Redis do not stampede it.
            // Leaving retries at the shortest backoff until leave()'s deadline.
            const auto half = (self->leaving ? self->opts.reconnect_min : backoff).count() / 2;
            const auto wait = std::chrono::milliseconds(half + static_cast<long>(jitter() % static_cast<unsigned>(half + 1)));
            self->wake.expires_after(wait);
            co_await self->wake.async_wait(asio::as_tuple(use_awaitable));  // leave() cuts it short
            backoff = std::min(backoff * 2, self->opts.reconnect_max);
        }
    }

    // -- the end ----------------------------------------------------------------------------------

    void close_connections() noexcept {
        if (cmd) cmd->close();
        if (sub) sub->close();
    }

    void finish_leave(error_code outcome) {
        if (finished) return;
        finished = true;
        leave_outcome = outcome;
        leave_timer.cancel();
        wake.cancel();
        close_connections();
        if (outcome) {
            log("warn", "left without deleting the key (" + outcome.message() + "); it expires by its TTL");
        } else {
            log("info", "left the mesh: key deleted, leave published");
        }
        for (auto& done : std::exchange(leave_done, {})) complete(std::move(done), outcome);
    }

    // Runs a leave() callback from the executor's queue, unless the redis_discovery is gone by then.
    void complete(std::function<void(error_code)> done, error_code outcome) {
        asio::post(ex, [self = shared_from_this(), done = std::move(done), outcome] {
            if (!self->destroyed) done(outcome);
        });
    }

    void shutdown() noexcept {
        destroyed = true;
        sink = nullptr;
        leave_done.clear();
        wake.cancel();
        leave_timer.cancel();
        close_connections();
    }

    asio::any_io_executor ex;
    redis_options opts;
    discovery_sink* sink;
    const std::string channel;
    peer_record self;
    std::string self_key;
    std::string written;  // the value our last SET wrote: what the conditional delete compares
    bool started = false;
    bool leaving = false;
    bool finished = false;   // left (or gave up leaving): nothing runs any more
    bool destroyed = false;  // the redis_discovery is gone
    bool update_pending = false;
    bool is_connected = false;
    bool lost = false;  // a connection was lost before: the next one starts with a grace period
    bool warned_duplicate = false;
    error_code last_error;
    error_code leave_outcome;
    std::vector<std::function<void(error_code)>> leave_done;
    asio::steady_timer wake;         // the waits of run() and command_loop(); cancel() to wake
    asio::steady_timer leave_timer;  // bounds leave()
    std::shared_ptr<resp_connection> cmd, sub;
    std::map<std::string, peer_record> view;           // peers reported up and not down since
    std::map<std::string, std::uint64_t> last_event;   // id → sequence of its last pub/sub event
    std::uint64_t event_seq = 0;
    clock::time_point grace_until{};
    std::set<std::string, std::less<>> warned_keys;
};

redis_discovery::redis_discovery(asio::any_io_executor ex, redis_options opts, discovery_sink& sink) {
    using std::chrono::milliseconds;
    if (opts.refresh <= milliseconds(0) || opts.ttl <= opts.refresh) {
        throw std::invalid_argument("redis discovery: refresh must be positive and shorter than ttl");
    }
    if (opts.command_timeout <= milliseconds(0)) throw std::invalid_argument("redis discovery: command_timeout must be positive");
    if (opts.reconnect_min <= milliseconds(0) || opts.reconnect_max < opts.reconnect_min) {
        throw std::invalid_argument("redis discovery: need 0 < reconnect_min <= reconnect_max");
    }
    if (opts.database < 0) throw std::invalid_argument("redis discovery: database must not be negative");
    impl_ = std::make_shared<impl>(std::move(ex), std::move(opts), sink);
}

redis_discovery::~redis_discovery() { impl_->shutdown(); }

void redis_discovery::start(peer_record self) {
    if (impl_->started) throw std::logic_error("redis discovery: start() called twice");
    if (self.id.empty()) throw std::invalid_argument("redis discovery: the own record needs an id");
    impl_->started = true;
    impl_->self_key = node_key(impl_->opts, self.id);
    impl_->self = std::move(self);
    asio::co_spawn(impl_->ex, impl::run(impl_), [weak = std::weak_ptr<impl>(impl_)](std::exception_ptr e) {
        const auto self = weak.lock();
        if (!e || !self) return;
        try {
            std::rethrow_exception(e);
        } catch (const std::exception& x) {
            self->log("error", std::string("redis discovery stopped: ") + x.what());
        }
    });
}

void redis_discovery::update(peer_record self) {
    auto& d = *impl_;
    if (!d.started) throw std::logic_error("redis discovery: update() before start()");
    if (self.id != d.self.id) throw std::invalid_argument("redis discovery: update() cannot change the id");
    if (d.leaving || d.stopped()) return;
    d.self = std::move(self);
    d.update_pending = true;
    // Wake the command loop only: during a backoff the record goes out with the next connection.
    if (d.is_connected) d.wake.cancel();
}

void redis_discovery::leave(std::function<void(boost::system::error_code)> done) {
    auto& d = *impl_;
    if (!d.started || d.finished) {
        const error_code outcome = d.started ? d.leave_outcome : error_code(redis_errc::not_started);
        d.complete(std::move(done), outcome);
        return;
    }
    d.leave_done.push_back(std::move(done));
    if (d.leaving) return;
    d.leaving = true;
    d.leave_timer.expires_after(3 * d.opts.command_timeout);
    d.leave_timer.async_wait([self = impl_](error_code ec) {
        if (ec || self->finished) return;
        self->finish_leave(self->last_error ? self->last_error : error_code(redis_errc::timed_out));
    });
    d.wake.cancel();  // the command loop (or a reconnection backoff) acts on it now
}

bool redis_discovery::connected() const noexcept { return impl_->is_connected; }

}  // namespace meshmaster::mesh
