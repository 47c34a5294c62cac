// One example of every message, by event name: the values behind the test vectors in
// docs/protocol.md. Tests encode these and compare with the document, byte for byte.
#pragma once

#include <meshmaster/protocol/messages.hpp>

#include <string_view>
#include <utility>
#include <vector>

namespace meshmaster::protocol::test {

/// The fleet secret of the document's handshake example ("Authentication" in docs/protocol.md):
/// the auth_proof and welcome vectors carry the MACs computed with it.
inline constexpr std::string_view example_secret = "correct horse battery staple";

/// (name as in docs/protocol.md, message) for every event, in id order, plus one application frame.
/// An event may have further examples named `<event>_<variant>` (e.g. slave_hello_mesh), each with
/// its own vector in the event's section of the document.
const std::vector<std::pair<std::string_view, message>>& examples();

}  // namespace meshmaster::protocol::test
