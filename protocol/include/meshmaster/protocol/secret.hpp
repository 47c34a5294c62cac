// The fleet's shared secret: how it is read from a file, and which secrets are refused.
//
// The secret is the HMAC-SHA256 key of the handshake (auth.hpp). It comes from a file (the master's
// `secret_file`, a slave's MESHMASTER_SECRET_FILE, the CLI's --secret-file) or from an environment
// variable. docs/protocol.md ("The secret") is the contract; in short:
//  - the key is the file's bytes, any encoding, less every trailing '\n' and '\r' (so `echo` and
//    editors that add a final newline give the same key as `printf`); nothing else is trimmed;
//  - it must be at least `min_secret_size` bytes after that;
//  - a file that group or other users may access in any way (mode & 077) is refused, as ssh refuses
//    a private key others can read: the secret proves membership of the fleet.
//
// Thread safety: free functions, safe from any thread.
#pragma once

#include <boost/system/result.hpp>

#include <cstddef>
#include <string>
#include <string_view>

namespace meshmaster::protocol {

inline constexpr std::size_t min_secret_size = 16;

/// Why a secret was refused: one sentence naming the source (the file's path, or the variable).
struct secret_error {
    std::string message;
};
/// `result<T, secret_error>::value()` on a failure throws std::runtime_error(message).
[[noreturn]] void throw_exception_from_error(const secret_error& e, const boost::source_location& where);

/// The secret held by the file at `path`, or why it is refused (unreadable, accessible by group or
/// others, shorter than min_secret_size).
[[nodiscard]] boost::system::result<std::string, secret_error> read_secret_file(const std::string& path);

/// The secret read from `fd` to its end (a pipe a spawning master wrote it into), checked as
/// check_secret does; `source` names it in messages. The descriptor stays open.
[[nodiscard]] boost::system::result<std::string, secret_error> read_secret_fd(int fd, std::string_view source);

/// `secret` less its trailing CR/LF, or why it is refused (shorter than min_secret_size);
/// `source` names where it came from in the message ("MESHMASTER_SECRET").
[[nodiscard]] boost::system::result<std::string, secret_error> check_secret(std::string secret, std::string_view source);

}  // namespace meshmaster::protocol
