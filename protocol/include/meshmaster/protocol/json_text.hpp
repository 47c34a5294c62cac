// JSON text for people and for any JSON reader: what boost::json::serialize writes, except that a
// number with a fraction is written as a plain decimal ("7800", "1.25", "0.000123"), never in the
// exponent form Boost.JSON uses for every double ("7.8E3", "1.25E0"). The event log, the control
// socket's replies and the CLI's --json output all go through it. Implemented in meshmaster::json.
//
// Thread safety: plain functions.
#pragma once

#include <boost/json/value.hpp>

#include <string>

namespace meshmaster::protocol {

/// `v` as JSON text; a double that is not finite (JSON has no such number) is written as null.
std::string json_text(const boost::json::value& v);
/// The same, appended to `out`.
void append_json_text(std::string& out, const boost::json::value& v);

}  // namespace meshmaster::protocol
