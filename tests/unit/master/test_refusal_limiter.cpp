// The refusal limiter without sockets or clock: records and times in, records to write out.
#include "refusal_limiter.hpp"

#include <doctest/doctest.h>
#include <fmt/format.h>

#include <string>
#include <vector>

using namespace meshmaster::master;
using namespace std::chrono_literals;

namespace {

event_record wrong_secret(const std::string& address) {
    return {.event = "auth_failed", .slave = "intruder", .reason = "wrong proof from " + address, .address = address};
}

std::size_t count(const std::vector<event_record>& records, std::string_view event) {
    std::size_t n = 0;
    for (const auto& r : records) n += r.event == event;
    return n;
}

void append(std::vector<event_record>& to, std::vector<event_record> more) {
    for (auto& r : more) to.push_back(std::move(r));
}

}  // namespace

TEST_CASE("a flood from one peer writes `burst` records per window, then one summary of the rest") {
    refusal_limiter limiter({.burst = 3, .window = 10s});
    std::vector<event_record> written;
    for (int i = 0; i < 1000; ++i) append(written, limiter.offer(wrong_secret("192.0.2.7:" + std::to_string(40000 + i)), 1ms * i));
    CHECK(written.size() == 3);  // one peer, whatever its source port
    CHECK(count(written, "auth_failed") == 3);
    // The tail: due when the oldest written record leaves the window, not on the next refusal.
    REQUIRE(limiter.next_due() == mono_time(10s));
    CHECK(limiter.due(10s - 1ns).empty());
    const auto tail = limiter.due(10s);
    REQUIRE(tail.size() == 1);
    CHECK(tail[0].event == "refusals_suppressed");
    CHECK(tail[0].suppressed == 997u);
    CHECK(tail[0].address == "192.0.2.7");
    CHECK(tail[0].reason.find("auth_failed: 997") != std::string::npos);
    CHECK(limiter.next_due() == std::nullopt);  // nothing held back any more
}

TEST_CASE("the window slides: a steady flood writes at most `burst` records in any window, summaries included") {
    refusal_limiter limiter({.burst = 4, .window = 1s});
    std::vector<std::pair<mono_time, event_record>> written;
    std::uint64_t suppressed = 0;
    const std::uint64_t offered = 20'000;
    for (std::uint64_t i = 0; i < offered; ++i) {
        const mono_time t = 1ms * i;  // 20 s of 1000 refusals a second
        if (auto next = limiter.next_due(); next && *next <= t) {
            for (auto& r : limiter.due(*next)) written.emplace_back(*next, std::move(r));
        }
        for (auto& r : limiter.offer(wrong_secret("192.0.2.7:1"), t)) written.emplace_back(t, std::move(r));
    }
    for (auto& r : limiter.flush(20s)) written.emplace_back(20s, std::move(r));
    std::uint64_t logged = 0;
    for (std::size_t i = 0; i < written.size(); ++i) {
        const auto& r = written[i].second;
        if (r.event == "refusals_suppressed") suppressed += *r.suppressed;
        else logged += 1;
        // Sliding, not per calendar second: any 4 consecutive records before the final flush span
        // at least a window.
        if (i + 4 < written.size() - 1) CHECK(written[i + 4].first - written[i].first >= 1s);
    }
    CHECK(logged + suppressed == offered);  // every refusal is written or counted: none lost
    CHECK(written.size() <= 4 * 21);
}

TEST_CASE("one peer's flood does not hold back another peer's refusals; other peers are counted apart") {
    refusal_limiter limiter({.burst = 2, .window = 10s});
    for (int i = 0; i < 50; ++i) (void)limiter.offer(wrong_secret("192.0.2.7:1"), 1ms * i);
    const auto other = limiter.offer(wrong_secret("198.51.100.1:2"), 100ms);
    REQUIRE(other.size() == 1);
    CHECK(other[0].event == "auth_failed");
    CHECK(other[0].address == "198.51.100.1:2");
    // A stale acknowledgement has no address: it counts against the slave it names.
    for (int i = 0; i < 2; ++i) {
        CHECK(limiter.offer({.event = "stale_ack_ignored", .slave = "s0-g1"}, 200ms).size() == 1);
    }
    CHECK(limiter.offer({.event = "stale_ack_ignored", .slave = "s0-g1"}, 200ms).empty());
    const auto summaries = limiter.flush(1s);
    REQUIRE(summaries.size() == 2);
    for (const auto& s : summaries) {
        if (s.slave == "s0-g1") {
            CHECK(s.suppressed == 1u);
            CHECK(s.address.empty());
        } else {
            CHECK(s.address == "192.0.2.7");
            CHECK(s.suppressed == 48u);
        }
    }
}

TEST_CASE("a summary comes first when the window lets a record through again, and takes its place") {
    refusal_limiter limiter({.burst = 2, .window = 10s});
    (void)limiter.offer(wrong_secret("192.0.2.7:1"), 0s);
    (void)limiter.offer({.event = "frame_refused", .address = "192.0.2.7:1"}, 1s);
    CHECK(limiter.offer({.event = "handshake_timeout", .address = "192.0.2.7:2"}, 2s).empty());
    CHECK(limiter.offer(wrong_secret("192.0.2.7:3"), 3s).empty());
    // The driver's timer is late; the next refusal carries the summary, and both fit the window.
    const auto out = limiter.offer(wrong_secret("192.0.2.7:4"), 11s);
    REQUIRE(out.size() == 2);
    CHECK(out[0].event == "refusals_suppressed");
    CHECK(out[0].suppressed == 2u);
    CHECK(out[0].reason.find("auth_failed: 1") != std::string::npos);
    CHECK(out[0].reason.find("handshake_timeout: 1") != std::string::npos);
    CHECK(out[0].duration_ms == doctest::Approx(9000));  // since the first refusal held back
    CHECK(out[1].event == "auth_failed");
    CHECK(limiter.offer(wrong_secret("192.0.2.7:5"), 11s).empty());  // the window is full again
}

TEST_CASE("memory is bounded: idle peers are forgotten, and beyond the cap peers share one bucket") {
    refusal_limiter limiter({.burst = 1, .window = 1s, .max_peers = 100});
    for (int i = 0; i < 100; ++i) CHECK(limiter.offer(wrong_secret(fmt::format("10.0.0.{}:1", i)), 0s).size() == 1);
    CHECK(limiter.tracked_peers() == 100);
    // The cap is reached: a new peer's first refusal is still written, in the shared bucket ...
    CHECK(limiter.offer(wrong_secret("10.0.1.1:1"), 1ms).size() == 1);
    CHECK(limiter.offer(wrong_secret("10.0.1.2:1"), 1ms).empty());  // ... which holds back the next
    CHECK(limiter.tracked_peers() == 101);
    const auto summaries = limiter.flush(2ms);
    REQUIRE(summaries.size() == 1);
    CHECK(summaries[0].address == "*");
    CHECK(summaries[0].reason.find("beyond the 100 tracked") != std::string::npos);
    // A window later every peer is idle and forgotten.
    CHECK(limiter.offer(wrong_secret("10.0.2.1:1"), 3s).size() == 1);
    CHECK(limiter.tracked_peers() == 1);
}

TEST_CASE("peers are addresses without the port, IPv6 included") {
    CHECK(refusal_limiter::peer_of({.event = "auth_failed", .address = "127.0.0.2:5000"}) == "127.0.0.2");
    CHECK(refusal_limiter::peer_of({.event = "auth_failed", .address = "::1:5000"}) == "::1");
    CHECK(refusal_limiter::peer_of({.event = "auth_failed", .address = "[2001:db8::1]:5000"}) == "2001:db8::1");
    CHECK(refusal_limiter::peer_of({.event = "stale_ack_ignored", .slave = "s1-g2"}) == "s1-g2");
}
