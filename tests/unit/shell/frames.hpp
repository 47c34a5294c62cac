// Whole frames over a test_stream, for the scripted peers of the shells' unit tests: each read
// frame is kept as its own bytes, so decoded views stay valid as long as the frame.
#pragma once

#include "test_stream.hpp"

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <boost/asio/awaitable.hpp>

#include <optional>
#include <vector>

namespace meshmaster::shell::testing {

struct owned_frame {
    std::uint32_t event = 0;
    std::vector<std::byte> body;
    /// Decoded; views into `body`.
    std::optional<protocol::message> message() const {
        auto m = protocol::decode(protocol::frame_view{event, protocol::bytes_view(body)});
        if (!m) return std::nullopt;
        return *m;
    }
};

class frame_reader {
public:
    explicit frame_reader(test_stream& s) : s_(s) {}
    /// The next whole frame, or none once the stream ends (or breaks).
    boost::asio::awaitable<std::optional<owned_frame>> next() {
        while (true) {
            auto f = decoder_.next();
            if (!f) co_return std::nullopt;
            if (*f) co_return owned_frame{(**f).event, std::vector<std::byte>((**f).body.begin(), (**f).body.end())};
            auto space = decoder_.prepare(4096);
            const io_result r = co_await s_.read_some(space);
            if (r.ec) co_return std::nullopt;
            decoder_.commit(r.bytes);
        }
    }

private:
    test_stream& s_;
    protocol::frame_decoder decoder_;
};

template <class Message>
boost::asio::awaitable<bool> send(test_stream& s, const Message& m) {
    std::vector<std::byte> bytes;
    if (!protocol::encode(m, bytes)) co_return false;
    const io_result r = co_await s.write(bytes);
    co_return !r.ec;
}

}  // namespace meshmaster::shell::testing
