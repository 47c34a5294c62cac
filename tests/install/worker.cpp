// The smallest correct worker, built outside the project against the installed library (by
// consumer_cmake/ and consumer_pkgconfig/): it keeps each shard's state, hands it over when a shard
// moves, and returns from io.run() once the master shuts it down.
#include <meshmaster/slave/slave.hpp>

#include <boost/asio/io_context.hpp>

#include <map>

namespace ms = meshmaster::slave;

int main() {
    boost::asio::io_context io;
    std::map<std::uint32_t, std::vector<std::byte>> shards;
    ms::slave slave(io, ms::options::from_environment(), {
        .start_shard = [&](ms::shard_grant g, ms::completion<> done) { shards[g.shard] = {}; done(); },
        .stop_shard = [&](ms::shard_grant g, ms::completion<std::vector<std::byte>> done) {
            done(std::move(shards[g.shard]));
            shards.erase(g.shard);
        },
        .resume_shard = [&](ms::shard_grant g, std::span<const std::byte> state, ms::completion<> done) {
            shards[g.shard].assign(state.begin(), state.end());
            done();
        },
        .shutdown = [&](ms::completion<> done) { shards.clear(); done(); },
    });
    slave.start();
    io.run();
}
