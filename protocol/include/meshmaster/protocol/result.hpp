// `result<T>`: a value or a protocol::error. The return type of every fallible protocol function.
//
// The protocol library's one error convention: whatever comes from outside (bytes from a peer, a
// secret from a file or the environment) is checked, and a failure is a value — `result<T>` with an
// `error` naming the code and the field (secret.hpp's check_secret uses the same shape with its own
// message-carrying error). Nothing in it throws on input. Only `.value()` on a failed result throws
// (a caller's mistake), and so does the rare failure of the machine itself — OpenSSL unable to
// produce random bytes or an HMAC — which no input can cause and no caller could handle.
#pragma once

#include <meshmaster/protocol/error.hpp>

#include <boost/system/result.hpp>

namespace meshmaster::protocol {

template <class T>
using result = boost::system::result<T, error>;

/// Shorthand for returning a failure: `return fail(errc::truncated);`
inline error fail(errc code, std::string_view field = {}) noexcept { return error{code, field}; }

}  // namespace meshmaster::protocol
