// Reading the fields of the daemon's JSON answers in the CLI, where a field may be missing (an
// older daemon) or of another type: each read falls back to a neutral value instead of throwing.
// Inline and pure; thread safety: plain functions.
#pragma once

#include <meshmaster/protocol/json_text.hpp>

#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace meshmaster::master::json_fields {

/// The field `key` of `o`, or null when it is missing.
inline const boost::json::value& field(const boost::json::object& o, std::string_view key) {
    static const boost::json::value null;
    const boost::json::value* v = o.if_contains(key);
    return v ? *v : null;
}

/// A value as people read it: a string without quotes, null as "-", anything else as JSON.
inline std::string text(const boost::json::value& v) {
    if (v.is_string()) return std::string(v.as_string());
    if (v.is_null()) return "-";
    return protocol::json_text(v);
}

/// A count: the number, or 0 when it is not a non-negative number.
inline std::uint64_t count(const boost::json::value& v) {
    if (v.is_uint64()) return v.as_uint64();
    if (v.is_int64()) return v.as_int64() < 0 ? 0 : static_cast<std::uint64_t>(v.as_int64());
    if (v.is_double()) return v.as_double() < 0 ? 0 : static_cast<std::uint64_t>(v.as_double());
    return 0;
}

/// A number as a double (0 when it is none).
inline double number(const boost::json::value& v) { return v.is_number() ? v.to_number<double>() : 0.0; }

/// True only for the JSON value true.
inline bool flag(const boost::json::value& v) { return v.is_bool() && v.as_bool(); }

/// The object at `v`, or an empty one.
inline const boost::json::object& object(const boost::json::value& v) {
    static const boost::json::object empty;
    return v.is_object() ? v.as_object() : empty;
}

}  // namespace meshmaster::master::json_fields
