// What a slave reports is the truth about what it runs, even when it contradicts the table: a
// shard reported under an older epoch than its grant (the grant is lost) or handed back while the
// table says it runs there (it was stopped on an earlier request) is granted again. Both were
// found by the seeded simulation once it drove the real slave core.
#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>

#include <doctest/doctest.h>

#include <string>
#include <vector>

using namespace meshmaster::master;
using namespace std::chrono_literals;
namespace p = meshmaster::protocol;

namespace {

// The grants (start_shard or resume: shard → epoch) and fence stops sent on `connection`.
struct sent_frames {
    std::vector<std::pair<std::uint32_t, std::uint64_t>> grants;
    std::vector<std::pair<std::uint32_t, std::uint64_t>> stops;
};

sent_frames sent_on(const std::vector<action>& actions, connection_id connection) {
    sent_frames out;
    for (const action& a : actions) {
        const auto* send = std::get_if<actions::send_frame>(&a);
        if (!send || send->connection != connection) continue;
        p::frame_decoder decoder;
        decoder.feed(send->frames);
        while (auto next = decoder.next()) {
            if (!*next) break;
            auto m = p::decode(**next);
            REQUIRE(m.has_value());
            if (const auto* x = std::get_if<p::start_shard>(&*m)) out.grants.emplace_back(x->shard, x->epoch);
            if (const auto* x = std::get_if<p::resume>(&*m)) out.grants.emplace_back(x->shard, x->epoch);
            if (const auto* x = std::get_if<p::stop_shard>(&*m)) out.stops.emplace_back(x->shard, x->epoch);
        }
    }
    return out;
}

}  // namespace

TEST_CASE("a slave reporting an older epoch than its grant is fenced and granted the shard again") {
    supervisor_config c{.shard_count = 1, .slave_count = 1, .spawn_slaves = false};
    supervisor core(c, 1000);
    core.start(0ms);
    (void)core.take_actions();

    // Connection 1's hello: shard 0 granted at epoch 1 (the slave takes it).
    core.on_slave_connected(1, {.id = "ext-0", .pid = 5, .version_minor = 2}, 1ms);
    CHECK(sent_on(core.take_actions(), 1).grants == std::vector<std::pair<std::uint32_t, std::uint64_t>>{{0, 1}});
    // An older connection's hello, read late: it reports nothing, so the shard is granted again at
    // epoch 2 — down a connection that is already gone.
    core.on_slave_connected(2, {.id = "ext-0", .pid = 5, .version_minor = 2}, 2ms);
    CHECK(sent_on(core.take_actions(), 2).grants == std::vector<std::pair<std::uint32_t, std::uint64_t>>{{0, 2}});
    REQUIRE(core.status(2ms).shards[0].epoch == 2);

    // The slave comes back holding epoch 1: that one is fenced, and the shard granted anew.
    core.on_slave_connected(3, {.id = "ext-0", .pid = 5, .shards = {{0, 1}}, .version_minor = 2}, 3ms);
    const sent_frames third = sent_on(core.take_actions(), 3);
    CHECK(third.stops == std::vector<std::pair<std::uint32_t, std::uint64_t>>{{0, 1}});
    REQUIRE(third.grants.size() == 1);
    CHECK(third.grants[0].first == 0);
    CHECK(third.grants[0].second == 3);

    // The same when it reports the old epoch's state as kept (it stopped it) rather than running.
    core.on_slave_connected(4, {.id = "ext-0", .pid = 5, .stopped = {{0, 1}}, .version_minor = 2}, 4ms);
    const sent_frames fourth = sent_on(core.take_actions(), 4);
    REQUIRE(fourth.grants.size() == 1);
    CHECK(fourth.grants[0].second == 4);
}

TEST_CASE("a holder that hands back a shard the table says it runs has stopped it: the shard is granted again") {
    // Found by the same simulation: a master killed after sending stop_shard; the slave, still
    // stopping the shard, reported it as held in its hello to the next master, which adopted it as
    // running and then ignored the shard_stopped that followed — no one ran the shard any more.
    supervisor_config c{.shard_count = 1, .slave_count = 1, .spawn_slaves = false};
    supervisor core(c, 1000);
    core.start(0ms);
    (void)core.take_actions();
    core.on_slave_connected(1, {.id = "ext-0", .pid = 5, .shards = {{0, 4}}, .version_minor = 2}, 1ms);
    (void)core.take_actions();
    REQUIRE(core.status(1ms).shards[0].phase == "running");

    auto state = std::make_shared<const std::vector<std::byte>>(std::vector<std::byte>{std::byte{1}, std::byte{2}});
    core.on_shard_stopped(1, 0, 4, 110, state, 2ms);  // the dead master's migration 110
    const sent_frames sent = sent_on(core.take_actions(), 1);
    REQUIRE(sent.grants.size() == 1);
    CHECK(sent.grants[0].first == 0);
    CHECK(sent.grants[0].second == 5);
    CHECK(core.status(2ms).shards[0].phase == "resuming");  // from the state it handed back
}
