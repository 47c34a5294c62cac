// `result<T>`: a value or a protocol::error. The return type of every fallible protocol function.
#pragma once

#include <meshmaster/protocol/error.hpp>

#include <boost/system/result.hpp>

namespace meshmaster::protocol {

template <class T>
using result = boost::system::result<T, error>;

/// Shorthand for returning a failure: `return fail(errc::truncated);`
inline error fail(errc code, std::string_view field = {}) noexcept { return error{code, field}; }

}  // namespace meshmaster::protocol
