// The HTTP API's error answers and request bodies, sans-I/O: the JSON error body every 4xx/5xx
// carries, the refusal reason each status is counted under (meshmaster_refusals_total{reason}), and
// reading a JSON request body (UTF-8 checked first, so a bad byte is named by its offset). Errors
// are values: a body that does not read is the message for a 400.
#pragma once

#include <boost/json/object.hpp>

#include <cstddef>
#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace meshmaster::master::http {

/// `{"error": "<message>"}`; a message longer than 1 KiB is cut (it may quote client input).
std::string error_body(std::string_view message);

/// The reason a refused request is counted and logged under: http_unauthorized (401),
/// http_forbidden (403), http_not_found (404), http_method_not_allowed (405), http_timeout (408),
/// http_body_too_large (413), http_headers_too_large (431), http_too_many_connections (503 at
/// accept), http_bad_request (any other 4xx). Empty for a status that is no refusal (2xx, 409,
/// 422, 5xx answered by the daemon: those are answers, not refusals).
std::string_view refusal_reason(unsigned status);

/// Offset of the first byte that breaks UTF-8 (overlongs, surrogates and code points past
/// U+10FFFF included), or nullopt when `text` is valid UTF-8.
std::optional<std::size_t> invalid_utf8_at(std::string_view text);

/// An optional JSON object body: empty (or only whitespace) is `{}`; otherwise it must be valid
/// UTF-8 and one JSON object. The object, or the message saying what is wrong and where.
std::variant<boost::json::object, std::string> parse_json_body(std::string_view body);

}  // namespace meshmaster::master::http
