#include "resp_connection.hpp"

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/connect.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/steady_timer.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <limits>
#include <string>
#include <vector>

namespace meshmaster::mesh {

namespace {

class redis_category_impl final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "meshmaster.redis"; }
    std::string message(int code) const override {
        switch (static_cast<redis_errc>(code)) {
            case redis_errc::ok: return "ok";
            case redis_errc::timed_out: return "Redis did not answer in time";
            case redis_errc::auth_failed: return "Redis refused the credentials (AUTH), or wants a password";
            case redis_errc::select_failed: return "Redis refused the database index (SELECT)";
            case redis_errc::server_error: return "Redis answered with an error";
            case redis_errc::protocol_error: return "unexpected or malformed reply from Redis";
            case redis_errc::not_started: return "discovery was not started";
        }
        return "unknown Redis error";
    }
};

}  // namespace

const boost::system::error_category& redis_category() noexcept {
    static const redis_category_impl category;
    return category;
}

}  // namespace meshmaster::mesh

namespace meshmaster::mesh::detail {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using asio::ip::tcp;
using namespace asio::experimental::awaitable_operators;
using boost::system::error_code;

resp_connection::resp_connection(asio::any_io_executor ex)
    : socket_(std::move(ex)), reader_(redisReaderCreate(), &redisReaderFree) {
    if (!reader_) throw std::bad_alloc();
}

resp_connection::~resp_connection() = default;

void resp_connection::close() noexcept {
    error_code ignored;
    socket_.shutdown(tcp::socket::shutdown_both, ignored);
    socket_.close(ignored);
}

awaitable<error_code> resp_connection::open(const redis_options& opts) {
    auto ex = socket_.get_executor();
    // A literal address needs no resolver. For names the system resolver's own timeout applies:
    // Asio's resolver cannot be cancelled, so a deadline would not shorten the wait anyway.
    std::vector<tcp::endpoint> endpoints;
    error_code ec;
    const auto address = asio::ip::make_address(opts.host, ec);
    if (!ec) {
        endpoints.emplace_back(address, opts.port);
    } else {
        tcp::resolver resolver(ex);
        auto [rec, results] = co_await resolver.async_resolve(opts.host, std::to_string(opts.port),
                                                               asio::as_tuple(use_awaitable));
        if (rec) co_return rec;
        for (const auto& entry : results) endpoints.push_back(entry.endpoint());
    }
    // A fresh reader per connection: nothing of a previous conversation may leak into this one.
    reader_.reset(redisReaderCreate());
    if (!reader_) throw std::bad_alloc();

    asio::steady_timer timer(ex);
    timer.expires_after(opts.command_timeout);
    auto connected = co_await (asio::async_connect(socket_, endpoints, asio::as_tuple(use_awaitable)) ||
                               timer.async_wait(asio::as_tuple(use_awaitable)));
    if (connected.index() == 1) {
        close();
        co_return redis_errc::timed_out;
    }
    if (const auto [cec, endpoint] = std::get<0>(connected); cec) {
        close();
        co_return cec;
    }
    socket_.set_option(tcp::no_delay(true), ec);

    if (!opts.password.empty()) {
        std::vector<std::string> auth{"AUTH"};
        if (!opts.username.empty()) auth.push_back(opts.username);
        auth.push_back(opts.password);
        const reply r = co_await command(auth, opts.command_timeout);
        if (r.ec) co_return r.ec;
        if (!r.is(REDIS_REPLY_STATUS)) {
            close();
            co_return error_of(r, redis_errc::auth_failed);
        }
    }
    if (opts.database != 0) {
        const std::vector<std::string> select{"SELECT", std::to_string(opts.database)};
        const reply r = co_await command(select, opts.command_timeout);
        if (r.ec) co_return r.ec;
        if (!r.is(REDIS_REPLY_STATUS)) {
            close();
            co_return error_of(r, redis_errc::select_failed);
        }
    }
    co_return error_code{};
}

awaitable<error_code> resp_connection::send(std::span<const std::string> args, duration timeout) {
    std::vector<const char*> argv;
    std::vector<std::size_t> lengths;
    argv.reserve(args.size());
    lengths.reserve(args.size());
    for (const auto& a : args) {
        argv.push_back(a.data());
        lengths.push_back(a.size());
    }
    char* formatted = nullptr;
    const int size = redisFormatCommandArgv(&formatted, static_cast<int>(argv.size()), argv.data(), lengths.data());
    if (size < 0) throw std::bad_alloc();  // hiredis fails only when out of memory
    const std::unique_ptr<char, void (*)(char*)> owned(formatted, &redisFreeCommand);

    asio::steady_timer timer(socket_.get_executor());
    timer.expires_after(timeout);
    auto written = co_await (asio::async_write(socket_, asio::buffer(formatted, static_cast<std::size_t>(size)),
                                               asio::as_tuple(use_awaitable)) ||
                             timer.async_wait(asio::as_tuple(use_awaitable)));
    if (written.index() == 1) {
        close();  // part of the command may have left: the stream is broken
        co_return redis_errc::timed_out;
    }
    if (const auto [ec, n] = std::get<0>(written); ec) {
        close();
        co_return ec;
    }
    co_return error_code{};
}

awaitable<reply> resp_connection::receive(duration timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    asio::steady_timer timer(socket_.get_executor());
    while (true) {
        void* parsed = nullptr;
        if (redisReaderGetReply(reader_.get(), &parsed) != REDIS_OK) {
            close();
            co_return reply{.ec = redis_errc::protocol_error};
        }
        if (parsed) co_return reply{.value = reply_ptr(static_cast<redisReply*>(parsed))};
        timer.expires_at(deadline);
        // An aborted read_some takes nothing from the socket: a timeout here loses no data.
        auto got = co_await (socket_.async_read_some(asio::buffer(input_), asio::as_tuple(use_awaitable)) ||
                             timer.async_wait(asio::as_tuple(use_awaitable)));
        if (got.index() == 1) co_return reply{.ec = redis_errc::timed_out};
        const auto [ec, n] = std::get<0>(got);
        if (ec) {
            close();
            co_return reply{.ec = ec};
        }
        if (redisReaderFeed(reader_.get(), input_.data(), n) != REDIS_OK) {
            close();
            co_return reply{.ec = redis_errc::protocol_error};
        }
    }
}

awaitable<reply> resp_connection::command(std::span<const std::string> args, duration timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    const error_code ec = co_await send(args, timeout);
    if (ec) co_return reply{.ec = ec};
    const auto left = std::chrono::duration_cast<duration>(deadline - std::chrono::steady_clock::now());
    reply r = co_await receive(std::max(left, duration(1)));
    if (r.ec) close();  // a late reply would answer the next command
    co_return r;
}

error_code error_of(const reply& r, redis_errc otherwise) {
    if (r.ec) return r.ec;
    if (!r.value || r.value->type != REDIS_REPLY_ERROR) return redis_errc::protocol_error;
    const auto text = r.text();
    if (text.starts_with("NOAUTH") || text.starts_with("WRONGPASS")) return redis_errc::auth_failed;
    return otherwise;
}

}  // namespace meshmaster::mesh::detail
