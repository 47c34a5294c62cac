// The master's side of one slave connection, without sockets: the handshake lets in only a slave
// that proves it knows the secret, nothing an unauthenticated peer sends reaches the supervisor,
// and after the handshake frames (states in chunks included) become supervisor inputs.
#include "session_harness.hpp"

#include <meshmaster/protocol/state_transfer.hpp>

#include <doctest/doctest.h>

using namespace meshmaster::master;
using namespace meshmaster::master::test;
namespace p = meshmaster::protocol;

namespace {

template <class Message>
std::vector<std::byte> frame(const Message& m) {
    std::vector<std::byte> out;
    REQUIRE(p::encode(m, out).has_value());
    return out;
}

bool connected(const session_harness& h, const std::string& id) {
    for (const auto& s : h.core.status(h.now).slaves) {
        if (s.id == id) return s.connected;
    }
    return false;
}

}  // namespace

TEST_CASE("a slave that knows the secret is welcomed, with a proof of the master's own, and joins") {
    session_harness h;
    h.feed(h.handshake_reply("w1", h.settings.secret), 3);  // in 3-byte reads: framing is the session's job
    REQUIRE(h.session->authenticated());
    CHECK_FALSE(h.session->closing());
    CHECK(connected(h, "w1"));
    bool welcomed = false;
    h.each_written([&](const p::message& m) {
        if (const auto* w = std::get_if<p::welcome>(&m)) {
            welcomed = true;
            CHECK(w->heartbeat_interval_ms == h.core.config().heartbeat_interval.count());
            CHECK(w->mac.size() == p::proof_size);
        }
    });
    CHECK(welcomed);
}

TEST_CASE("a wrong proof is refused, logged, and the supervisor never hears of the peer") {
    session_harness h;
    h.feed(h.handshake_reply("w1", "not-the-secret-at-all"));
    CHECK_FALSE(h.session->authenticated());
    CHECK(h.session->closing());
    CHECK(h.close_requests == 1);
    CHECK(h.logged("auth_failed") == 1);
    CHECK(h.error_codes() == std::vector<std::string>{"auth_failed"});
    CHECK(h.core_inputs == 0);
    CHECK_FALSE(connected(h, "w1"));
    h.session->closed();
    CHECK(h.core_inputs == 0);  // nothing to tell: it never joined
}

TEST_CASE("a hello whose nonce is not 32 bytes is refused even with a proof made over it") {
    for (const std::size_t size : {std::size_t{0}, std::size_t{8}, std::size_t{31}, std::size_t{33}}) {
        CAPTURE(size);
        session_harness h;
        std::optional<std::vector<std::byte>> master_nonce;
        h.each_written([&](const p::message& m) {
            if (const auto* c = std::get_if<p::auth_challenge>(&m)) master_nonce.emplace(c->nonce.begin(), c->nonce.end());
        });
        REQUIRE(master_nonce);
        const std::vector<std::byte> slave_nonce(size, std::byte{0x5a});
        std::vector<std::byte> out;
        REQUIRE(p::encode(p::slave_hello{.version_major = p::current_version.major,
                                         .version_minor = p::current_version.minor,
                                         .slave_id = "w1",
                                         .nonce = p::bytes_view(slave_nonce)},
                          out)
                    .has_value());
        const p::proof mac = p::slave_proof(h.settings.secret, p::bytes_view(*master_nonce), p::bytes_view(slave_nonce), "w1");
        REQUIRE(p::encode(p::auth_proof{.mac = p::bytes_view(mac)}, out).has_value());
        h.feed(out);
        CHECK_FALSE(h.session->authenticated());
        CHECK(h.error_codes() == std::vector<std::string>{"auth_failed"});
        CHECK(h.logged("auth_failed") == 1);
        CHECK_FALSE(connected(h, "w1"));
    }
}

TEST_CASE("any frame but hello, then proof, before authentication closes the connection") {
    session_harness h;
    SUBCASE("a heartbeat first") { h.feed(frame(p::heartbeat{.progress = 1})); }
    SUBCASE("a checkpoint after the hello, instead of the proof") {
        auto reply = h.handshake_reply("w1", h.settings.secret);
        // Keep the hello, replace the proof.
        p::frame_decoder d;
        d.feed(reply);
        auto hello = d.next();
        REQUIRE(hello.has_value());
        REQUIRE(hello->has_value());
        const std::size_t hello_size = p::frame_header_size + (**hello).body.size();
        std::vector<std::byte> bytes(reply.begin(), reply.begin() + static_cast<std::ptrdiff_t>(hello_size));
        auto cp = frame(p::checkpoint{.shard = 0, .epoch = 1});
        bytes.insert(bytes.end(), cp.begin(), cp.end());
        h.feed(bytes);
    }
    SUBCASE("garbage") {
        const std::vector<std::byte> garbage(64, std::byte{0xff});
        h.feed(garbage);
    }
    CHECK(h.session->closing());
    CHECK_FALSE(h.session->authenticated());
    CHECK(h.core_inputs == 0);
    CHECK(h.logged("frame_refused") == 1);
}

TEST_CASE("a slave speaking another major version is refused with the versions named") {
    session_harness h;
    h.feed(h.handshake_reply("w1", h.settings.secret, p::current_version.major + 1));
    CHECK(h.session->closing());
    CHECK(h.core_inputs == 0);
    REQUIRE(h.log_records.size() == 1);
    CHECK(h.log_records[0].reason.find("speaks protocol") != std::string::npos);
}

TEST_CASE("unauthenticated peers are read in small pieces") {
    session_harness h;
    CHECK(h.session->read_buffer().size() == slave_session::pre_auth_read_size);
    h.feed(h.handshake_reply("w1", h.settings.secret));
    CHECK(h.session->read_buffer().size() == slave_session::read_size);
}

TEST_CASE("after the handshake: a state in chunks reaches the supervisor whole, refusals are not fatal") {
    session_harness h;
    h.feed(h.handshake_reply("w1", h.settings.secret));
    REQUIRE(h.session->authenticated());
    const std::size_t inputs = h.core_inputs;

    // A checkpoint of a shard it does not hold arrives in 10-byte chunks: reassembled and handed on
    // (the supervisor then ignores it; nothing here is refused).
    std::vector<std::byte> state(100, std::byte{7});
    std::vector<std::byte> bytes;
    REQUIRE(p::encode_with_state(p::checkpoint{.shard = 1, .epoch = 1}, p::bytes_view(state), bytes, 10).has_value());
    h.feed(bytes, 17);
    // Each chunk tells the supervisor the slave is alive and working, then the whole state follows.
    std::size_t chunks = 0;
    p::frame_decoder frames;
    frames.feed(bytes);
    while (auto f = frames.next().value()) chunks += f->event == static_cast<std::uint32_t>(p::event_id::state_chunk);
    CHECK(chunks == 9);
    CHECK(h.core_inputs == inputs + chunks + 1);
    CHECK(h.logged("frame_refused") == 0);

    // An event only the master sends: refused, logged, the connection stays.
    h.feed(frame(p::start_shard{.shard = 0, .epoch = 9, .shard_count = 4}));
    CHECK(h.error_codes().back() == "unexpected_event");
    CHECK(h.logged("frame_refused") == 1);
    CHECK_FALSE(h.session->closing());

    // A chunk that does not continue its state: refused, not fatal.
    h.feed(frame(p::state_chunk{.migration_id = 5, .shard = 1, .epoch = 1, .offset = 40}));
    CHECK(h.error_codes().back() == "out_of_range:offset");
    CHECK_FALSE(h.session->closing());
}

TEST_CASE("a broken frame stream closes the connection, and the supervisor hears of it exactly once") {
    session_harness h;
    h.feed(h.handshake_reply("w1", h.settings.secret));
    REQUIRE(connected(h, "w1"));
    // A header announcing a body larger than max_frame_size.
    std::vector<std::byte> header{std::byte{17}, std::byte{0}, std::byte{0}, std::byte{0},
                                  std::byte{0}, std::byte{0}, std::byte{0x10}, std::byte{0}};
    h.feed(header);
    CHECK(h.session->closing());
    CHECK(h.error_codes().back() == "frame_too_large");
    const std::size_t inputs = h.core_inputs;
    h.session->closed();
    h.session->closed();
    CHECK(h.core_inputs == inputs + 1);
    CHECK_FALSE(connected(h, "w1"));
}

TEST_CASE("the supervisor closing the connection sends a fatal error and stops reading") {
    session_harness h;
    h.feed(h.handshake_reply("w1", h.settings.secret));
    h.session->close("replaced", "the slave connected again");
    CHECK(h.session->closing());
    CHECK(h.error_codes().back() == "replaced");
    const std::size_t inputs = h.core_inputs;
    h.feed(frame(p::heartbeat{.progress = 3}));
    CHECK(h.core_inputs == inputs);
}

TEST_CASE("a stream that ends in the middle of a frame is logged with the bytes expected and received") {
    session_harness h;
    auto reply = h.handshake_reply("w1", h.settings.secret);
    SUBCASE("cut inside the hello's body") {
        const std::size_t cut = 20;
        h.feed(std::span(reply).first(cut));
        h.session->closed();
        REQUIRE(h.logged("frame_truncated") == 1);
        const event_record& r = h.log_records.back();
        CHECK(r.address == "192.0.2.1:4000");
        CHECK(r.bytes_received == cut);
        p::frame_decoder d;
        d.feed(reply);
        auto hello = d.next();
        REQUIRE(hello.has_value());
        REQUIRE(hello->has_value());
        CHECK(r.bytes_expected == p::frame_header_size + (**hello).body.size());
        CHECK(r.reason.find("event 8") != std::string::npos);
    }
    SUBCASE("cut inside a header, after the handshake") {
        h.feed(reply);
        REQUIRE(h.session->authenticated());
        const auto heartbeat = frame(p::heartbeat{.progress = 1});
        h.feed(std::span(heartbeat).first(5));
        h.session->closed();
        REQUIRE(h.logged("frame_truncated") == 1);
        const auto r = std::find_if(h.log_records.begin(), h.log_records.end(),
                                    [](const event_record& x) { return x.event == "frame_truncated"; });
        CHECK(r->bytes_received == 5u);
        CHECK_FALSE(r->bytes_expected.has_value());
        CHECK(r->slave == "w1");
    }
    SUBCASE("whole frames, then the end: nothing to say") {
        h.feed(reply);
        h.session->closed();
        CHECK(h.logged("frame_truncated") == 0);
    }
    SUBCASE("this side closed first (a refusal): the rest of the stream is of no interest") {
        auto wrong = h.handshake_reply("w1", "not-the-secret-at-all");
        wrong.resize(wrong.size() + 3, std::byte{1});  // the start of a next frame, left unread
        h.feed(wrong);
        REQUIRE(h.logged("auth_failed") == 1);
        h.session->closed();
        CHECK(h.logged("frame_truncated") == 0);
    }
}

TEST_CASE("chunks of a state still arriving keep a slave whose heartbeats wait behind them from being lost") {
    session_harness h;  // heartbeat 250 ms x 8: silent for 2 s is lost
    h.feed(h.handshake_reply("w1", h.settings.secret));
    REQUIRE(connected(h, "w1"));
    h.feed(frame(p::heartbeat{.seq = 1, .progress = 5}));

    // A large checkpoint crawls in, one 10-byte chunk every 500 ms for 10 s: no heartbeat gets
    // through meanwhile.
    std::vector<std::byte> state(200, std::byte{3});
    std::vector<std::byte> bytes;
    REQUIRE(p::encode_with_state(p::checkpoint{.shard = 1, .epoch = 1}, p::bytes_view(state), bytes, 10).has_value());
    p::frame_decoder frames;
    frames.feed(bytes);
    int chunks = 0;
    while (auto f = frames.next().value()) {
        if (f->event != static_cast<std::uint32_t>(p::event_id::state_chunk)) break;  // the final frame: not fed
        h.tick(std::chrono::milliseconds(500));
        std::vector<std::byte> one;
        p::frame_header header{f->event, static_cast<std::uint32_t>(f->body.size())};
        one.resize(p::frame_header_size);
        p::write_frame_header(one.data(), header);
        one.insert(one.end(), f->body.begin(), f->body.end());
        h.feed(one);
        ++chunks;
    }
    REQUIRE(chunks == 19);
    CHECK(h.logged("slave_lost") == 0);
    CHECK(connected(h, "w1"));

    // Then nothing more: lost once the silence has passed.
    h.tick(std::chrono::milliseconds(2100));
    REQUIRE(h.logged("slave_lost") == 1);
    const auto lost = std::find_if(h.log_records.begin(), h.log_records.end(),
                                   [](const event_record& r) { return r.event == "slave_lost"; });
    CHECK(lost->reason == "heartbeat_timeout");
}
