// examples/bot: a sharded worker built on the slave library, against the fake gateway.
//
// Per shard it owns, it holds a gateway session and processes that shard's events in order,
// folding each payload into a running checksum (the per-shard state that must survive handoffs).
// On stop_shard it stops processing at once, acknowledges what it processed, detaches from the
// gateway and hands back (session, sequence, checksum, padding); on resume_shard it RESUMEs the
// session from that sequence, so the gateway replays exactly what happened in between. The
// gateway's audit then proves every event was processed once, by exactly one owner at a time.
//
//   bot --gateway 127.0.0.1:7500 [--state-padding BYTES] [--soft-start-delay-ms MS] [--stop-delay-ms MS]
//       [--ignore-shutdown] [--checkpoint-ms MS] [--checkpoint-events N] [--mesh]
//       (bot --help says what each does)
// --mesh runs a node of the fleet's UDP mesh, found through meshmaster (embedded discovery).
// The master connection comes from the environment meshmaster sets (MESHMASTER_ADDR, ...).
//
// This file only wires things up: the command line (settings.cpp), the bot (bot.hpp and its
// sources, one per concept), the signals.
#include "bot.hpp"
#include "settings.hpp"

#include <boost/asio/io_context.hpp>
#include <boost/asio/signal_set.hpp>

#include <fmt/format.h>

#include <csignal>
#include <cstdio>
#include <exception>

namespace asio = boost::asio;
namespace ms = meshmaster::slave;
using namespace meshmaster::example_bot;

int main(int argc, char** argv) {
    std::signal(SIGPIPE, SIG_IGN);  // survive a master restart: our stdout is its pipe
    settings s;
    if (const auto exit_code = parse_settings(argc, argv, s)) return *exit_code;
    ms::options options;
    try {
        options = ms::options::from_environment();
    } catch (const std::exception& e) {
        fmt::print(stderr, "bot: {}\n", e.what());
        return 78;
    }
    asio::io_context io(1);
    bot b(io, s, std::move(options));
    b.start();
    asio::signal_set signals(io, SIGTERM, SIGINT);
    signals.async_wait([&](boost::system::error_code ec, int) { if (!ec) io.stop(); });
    b.on_shutdown = [&] { signals.cancel(); };  // io.run() returns once the goodbye is written
    io.run();
    return 0;
}
