// libFuzzer target over the master's handling of one slave connection (slave_session) with a real
// supervisor behind it: arbitrary byte streams, read in arbitrary pieces.
//
// The first input byte picks the mode: even — the bytes come from an unauthenticated peer; odd —
// a slave that knows the secret completes the handshake first, then sends the bytes. The second
// byte picks the read size. Properties, besides "no crash, no leak, no undefined behaviour" and
// the allocation limit run_fuzzer.sh sets:
//  - nothing an unauthenticated peer sends reaches the supervisor: no input, no slave in its table;
//  - a closed session hands nothing more to the supervisor, and reports its end exactly once;
//  - the supervisor's table stays sane: every shard it names an owner for is held by a slave it knows.
#include "session_harness.hpp"

#include <cstdio>
#include <cstdlib>
#include <set>

using namespace meshmaster::master;
using namespace meshmaster::master::test;

namespace {

[[noreturn]] void violated(const char* what) {
    std::fprintf(stderr, "property violated: %s\n", what);
    std::abort();
}

void check_table(const session_harness& h) {
    const auto st = h.core.status(h.now);
    std::set<std::string> slaves;
    for (const auto& s : st.slaves) slaves.insert(s.id);
    for (const auto& sh : st.shards) {
        if (!sh.owner.empty() && !slaves.contains(sh.owner)) violated("a shard is owned by a slave the supervisor does not know");
    }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const std::uint8_t* data, std::size_t size) {
    if (size < 2) return 0;
    const bool authenticate = (data[0] & 1) != 0;
    const std::size_t piece = (data[1] % 64) + 1;
    const std::span<const std::byte> stream(reinterpret_cast<const std::byte*>(data + 2), size - 2);

    session_harness h;
    if (authenticate) {
        h.feed(h.handshake_reply("fuzz-slave", h.settings.secret));
        if (!h.session->authenticated()) violated("a correct handshake was refused");
    }
    // The stream in pieces, with time passing between them so that deadlines fire too.
    for (std::size_t at = 0; at < stream.size() && !h.session->closing(); at += piece) {
        h.feed(stream.subspan(at, std::min(piece, stream.size() - at)));
        h.tick(std::chrono::milliseconds(37));
    }
    if (!authenticate) {
        if (h.session->authenticated()) violated("a peer without the secret was authenticated");
        if (h.inputs_before_authentication) violated("an unauthenticated peer reached the supervisor");
        if (!h.core.status(h.now).slaves.empty()) violated("an unauthenticated peer became a slave");
    }
    check_table(h);

    const bool was_authenticated = h.session->authenticated();
    h.session->closed();
    const std::size_t after_close = h.core_inputs;
    h.session->closed();
    if (h.core_inputs != after_close) violated("the end of a session was reported twice");
    h.feed(stream.subspan(0, std::min<std::size_t>(stream.size(), 16)));
    if (h.core_inputs != after_close) violated("a closed session still hands frames to the supervisor");
    if (was_authenticated) {
        for (const auto& s : h.core.status(h.now).slaves) {
            if (s.id == "fuzz-slave" && s.connected) violated("the supervisor still thinks the closed session is connected");
        }
    }
    check_table(h);
    return 0;
}
