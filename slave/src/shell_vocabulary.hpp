// The Asio vocabulary both halves of the slave's shell are written in (slave_shell.cpp: the
// connection's life; slave_shell_io.cpp: its read, write and heartbeat coroutines). Private to
// those two sources: it opens awaitable_operators into meshmaster::slave, which no header that
// others include may do.
#pragma once

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/awaitable.hpp>
#include <boost/asio/experimental/awaitable_operators.hpp>
#include <boost/asio/use_awaitable.hpp>

#include <chrono>

namespace meshmaster::protocol {}  // declared for the alias `p` below

namespace meshmaster::slave {

namespace asio = boost::asio;
using asio::awaitable;
using asio::use_awaitable;
using namespace asio::experimental::awaitable_operators;
namespace p = meshmaster::protocol;
using clock = std::chrono::steady_clock;

/// co_await op(..., tuple_awaitable): the error comes back as a value, never as an exception.
inline constexpr auto tuple_awaitable = asio::as_tuple(use_awaitable);

}  // namespace meshmaster::slave
