// Redis discovery's records: the JSON codec, reading every record under the prefix, and the
// one-shot listing (redis_discovery::async_list / list). See redis_records.hpp.
#include "redis_records.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/co_spawn.hpp>
#include <boost/asio/io_context.hpp>
#include <boost/asio/post.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/json/parse.hpp>
#include <boost/json/serialize.hpp>

#include <charconv>
#include <exception>
#include <utility>

namespace meshmaster::mesh {

namespace asio = boost::asio;
namespace json = boost::json;
using asio::awaitable;
using boost::system::error_code;
using detail::reply;
using detail::resp_connection;
using detail::text_of;

namespace detail {

// ---- record codec ---------------------------------------------------------------------------

json::object record_object(const peer_record& r) {
    json::object values;
    for (const auto& [k, v] : r.values) values[k] = v;
    json::object o;
    o["v"] = 1;
    o["id"] = r.id;
    o["type"] = r.type;
    o["host"] = r.host;
    o["port"] = r.port;
    o["incarnation"] = std::to_string(r.incarnation);
    o["values"] = std::move(values);
    return o;
}

const json::string* string_field(const json::object& o, std::string_view name) {
    const auto* v = o.if_contains(name);
    return v ? v->if_string() : nullptr;
}

std::optional<std::uint64_t> u64_of(std::string_view text) {
    std::uint64_t n = 0;
    const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), n);
    if (ec != std::errc() || end != text.data() + text.size() || text.empty()) return std::nullopt;
    return n;
}

std::optional<peer_record> record_of(const json::value& v) {
    const auto* o = v.if_object();
    if (!o) return std::nullopt;
    const auto* version = o->if_contains("v");
    if (!version || !version->is_int64() || version->as_int64() != 1) return std::nullopt;
    const auto* id = string_field(*o, "id");
    const auto* type = string_field(*o, "type");
    const auto* host = string_field(*o, "host");
    const auto* incarnation = string_field(*o, "incarnation");
    const auto* port = o->if_contains("port");
    const auto* values = o->if_contains("values");
    if (!id || id->empty() || !type || !host || !incarnation || !port || !values || !values->is_object()) {
        return std::nullopt;
    }
    const auto* port_number = port->if_int64();
    if (!port_number || *port_number < 0 || *port_number > 65535) return std::nullopt;
    const auto inc = u64_of(*incarnation);
    if (!inc) return std::nullopt;
    peer_record r{.id = std::string(*id),
                  .type = std::string(*type),
                  .host = std::string(*host),
                  .port = static_cast<std::uint16_t>(*port_number),
                  .incarnation = *inc};
    for (const auto& [k, val] : values->get_object()) {
        const auto* s = val.if_string();
        if (!s) return std::nullopt;
        r.values.emplace(std::string(k), std::string(*s));
    }
    return r;
}

// ---- helpers --------------------------------------------------------------------------------

// SCAN MATCH is a glob: a prefix holding * ? [ ] or \ must match itself only.
std::string escape_glob(std::string_view s) {
    std::string out;
    for (const char c : s) {
        if (c == '*' || c == '?' || c == '[' || c == ']' || c == '\\') out.push_back('\\');
        out.push_back(c);
    }
    return out;
}


awaitable<error_code> scan_records(resp_connection& c, const redis_options& opts, std::map<std::string, peer_record>& out,
                                   const std::function<bool()>& abort,
                                   const std::function<void(std::string_view key)>& bad) {
    const std::string pattern = escape_glob(opts.prefix) + "node:*";
    const std::string key_start = opts.prefix + "node:";
    std::string cursor = "0";
    do {
        if (abort && abort()) co_return error_code{};
        const std::vector<std::string> scan{"SCAN", cursor, "MATCH", pattern, "COUNT", "1000"};
        const reply page = co_await c.command(scan, opts.command_timeout);
        if (!page.is(REDIS_REPLY_ARRAY)) co_return detail::error_of(page, redis_errc::server_error);
        const redisReply* r = page.value.get();
        if (r->elements != 2 || r->element[0]->type != REDIS_REPLY_STRING || r->element[1]->type != REDIS_REPLY_ARRAY) {
            co_return redis_errc::protocol_error;
        }
        cursor = std::string(text_of(r->element[0]));
        const redisReply* keys = r->element[1];
        if (keys->elements == 0) continue;
        std::vector<std::string> mget{"MGET"};
        for (std::size_t i = 0; i < keys->elements; ++i) mget.emplace_back(text_of(keys->element[i]));
        const reply values = co_await c.command(mget, opts.command_timeout);
        if (!values.is(REDIS_REPLY_ARRAY)) co_return detail::error_of(values, redis_errc::server_error);
        if (values.value->elements != keys->elements) co_return redis_errc::protocol_error;
        for (std::size_t i = 0; i < keys->elements; ++i) {
            const redisReply* v = values.value->element[i];
            if (v->type == REDIS_REPLY_NIL) continue;  // expired between SCAN and MGET
            const std::string_view key = text_of(keys->element[i]);
            auto record = v->type == REDIS_REPLY_STRING ? decode_redis_record(text_of(v)) : std::nullopt;
            if (!record || key.substr(key_start.size()) != record->id) {
                if (bad) bad(key);
                continue;
            }
            std::string id = record->id;
            out.insert_or_assign(std::move(id), std::move(*record));
        }
    } while (cursor != "0");
    co_return error_code{};
}

}  // namespace detail

std::string encode_redis_record(const peer_record& record) { return json::serialize(detail::record_object(record)); }

std::optional<peer_record> decode_redis_record(std::string_view text) {
    error_code ec;
    const json::value v = json::parse(text, ec);
    if (ec) return std::nullopt;
    return detail::record_of(v);
}

void redis_discovery::async_list(asio::any_io_executor ex, redis_options opts, list_handler done) {
    auto body = [](asio::any_io_executor ex, redis_options opts) -> awaitable<boost::system::result<std::vector<peer_record>>> {
        resp_connection c(ex);
        const error_code ec = co_await c.open(opts);
        if (ec) co_return ec;
        std::map<std::string, peer_record> found;
        const error_code sec = co_await detail::scan_records(c, opts, found, {}, {});
        c.close();
        if (sec) co_return sec;
        std::vector<peer_record> records;
        for (auto& [id, record] : found) records.push_back(std::move(record));
        co_return records;  // sorted by id: the map's order
    };
    asio::co_spawn(ex, body(ex, std::move(opts)),
                   [ex, done = std::move(done)](std::exception_ptr e, boost::system::result<std::vector<peer_record>> r) mutable {
                       if (e) std::rethrow_exception(e);  // only out of memory gets here
                       asio::post(ex, [done = std::move(done), r = std::move(r)]() mutable { done(std::move(r)); });
                   });
}

boost::system::result<std::vector<peer_record>> redis_discovery::list(const redis_options& opts) {
    asio::io_context io(1);
    std::optional<boost::system::result<std::vector<peer_record>>> outcome;
    async_list(io.get_executor(), opts, [&](boost::system::result<std::vector<peer_record>> r) { outcome = std::move(r); });
    io.run();
    return std::move(*outcome);
}

}  // namespace meshmaster::mesh
