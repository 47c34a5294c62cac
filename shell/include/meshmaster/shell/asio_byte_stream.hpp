// byte_stream over a real Asio stream: a TCP socket, or TLS over one (Asio SSL). Included only by
// the translation units that connect or accept (slave.cpp, slave_server.cpp): it brings the SSL
// headers. The two streams' members are compiled once, in asio_byte_stream.cpp (extern templates
// below), not in every translation unit that makes one. Thread safety: as byte_stream's.
#pragma once

#include <meshmaster/shell/byte_stream.hpp>

#include <boost/asio/as_tuple.hpp>
#include <boost/asio/ip/tcp.hpp>
#include <boost/asio/ssl/stream.hpp>
#include <boost/asio/use_awaitable.hpp>
#include <boost/asio/write.hpp>

#include <type_traits>
#include <utility>
#include <variant>
#include <vector>

namespace meshmaster::shell {

template <class Stream>  // boost::asio::ip::tcp::socket, or boost::asio::ssl::stream of one
class asio_byte_stream final : public byte_stream {
public:
    static constexpr bool tls = !std::is_same_v<Stream, boost::asio::ip::tcp::socket>;

    /// A plain stream over `socket`.
    explicit asio_byte_stream(boost::asio::ip::tcp::socket socket)
        requires(!tls)
        : stream_(std::move(socket)) {}
    /// A TLS stream over `socket`, whose handshake() takes the side `side`.
    asio_byte_stream(boost::asio::ip::tcp::socket socket, boost::asio::ssl::context& context,
                     boost::asio::ssl::stream_base::handshake_type side)
        requires tls
        : stream_(std::move(socket), context), side_(side) {}

    /// The Asio stream, to set it up before the handshake (a server name, a verify callback).
    Stream& stream() { return stream_; }

    boost::asio::any_io_executor get_executor() override { return stream_.get_executor(); }

    boost::asio::awaitable<io_result> read_some(std::span<std::byte> into) override {
        auto [ec, n] = co_await stream_.async_read_some(boost::asio::buffer(into.data(), into.size()), tuple_awaitable);
        co_return io_result{ec, n};
    }

    boost::asio::awaitable<io_result> write(std::span<const std::byte> bytes) override {
        auto [ec, n] = co_await boost::asio::async_write(stream_, boost::asio::buffer(bytes.data(), bytes.size()), tuple_awaitable);
        co_return io_result{ec, n};
    }

    boost::asio::awaitable<io_result> write_gathered(std::span<const std::span<const std::byte>> pieces) override {
        // Asio sends a sequence of buffers with sendmsg (TCP), or packs small ones into each TLS
        // record (ssl::stream linearises them): either way no copy of ours.
        std::vector<boost::asio::const_buffer> buffers;
        buffers.reserve(pieces.size());
        for (const auto piece : pieces) buffers.emplace_back(piece.data(), piece.size());
        auto [ec, n] = co_await boost::asio::async_write(stream_, buffers, tuple_awaitable);
        co_return io_result{ec, n};
    }

    boost::system::error_code write_now(std::span<const std::byte> bytes) override {
        boost::system::error_code ec;
        boost::asio::write(stream_, boost::asio::buffer(bytes.data(), bytes.size()), ec);
        return ec;
    }

    boost::asio::awaitable<boost::system::error_code> handshake() override {
        if constexpr (tls) {
            auto [ec] = co_await stream_.async_handshake(side_, tuple_awaitable);
            co_return ec;
        } else {
            co_return boost::system::error_code{};
        }
    }

    bool secured() const override { return tls; }

    boost::asio::awaitable<void> goodbye() override {
        if constexpr (tls) co_await stream_.async_shutdown(tuple_awaitable);
    }

    bool is_open() const override { return stream_.lowest_layer().is_open(); }
    void shutdown() override {
        boost::system::error_code ignored;
        stream_.lowest_layer().shutdown(boost::asio::ip::tcp::socket::shutdown_both, ignored);
    }
    void close() override {
        boost::system::error_code ignored;
        stream_.lowest_layer().close(ignored);
    }

private:
    static constexpr auto tuple_awaitable = boost::asio::as_tuple(boost::asio::use_awaitable);
    Stream stream_;
    [[no_unique_address]] std::conditional_t<tls, boost::asio::ssl::stream_base::handshake_type, std::monostate> side_{};
};

using tcp_byte_stream = asio_byte_stream<boost::asio::ip::tcp::socket>;
using tls_byte_stream = asio_byte_stream<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>>;

extern template class asio_byte_stream<boost::asio::ip::tcp::socket>;
extern template class asio_byte_stream<boost::asio::ssl::stream<boost::asio::ip::tcp::socket>>;

}  // namespace meshmaster::shell
