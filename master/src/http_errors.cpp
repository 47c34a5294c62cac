#include "http_errors.hpp"

#include <meshmaster/protocol/json_text.hpp>

#include <boost/json/parse.hpp>

#include <fmt/format.h>

namespace meshmaster::master::http {

namespace json = boost::json;

std::string error_body(std::string_view message) {
    constexpr std::size_t longest = 1024;
    std::string text(message.substr(0, longest));
    if (message.size() > longest) text += "...";
    // Client input quoted in a message may be any bytes: JSON text must be UTF-8.
    if (auto bad = invalid_utf8_at(text)) text.resize(*bad);
    return meshmaster::protocol::json_text(json::object{{"error", text}});
}

std::string_view refusal_reason(unsigned status) {
    switch (status) {
        case 401: return "http_unauthorized";
        case 403: return "http_forbidden";
        case 404: return "http_not_found";
        case 405: return "http_method_not_allowed";
        case 408: return "http_timeout";
        case 413: return "http_body_too_large";
        case 431: return "http_headers_too_large";
        case 503: return "http_too_many_connections";
        default: break;
    }
    // 409 (a refused action) and 422 (a rejected configuration) are the daemon's answers to a
    // well-formed request, not refusals of the request.
    if (status >= 400 && status < 500 && status != 409 && status != 422) return "http_bad_request";
    return {};
}

std::optional<std::size_t> invalid_utf8_at(std::string_view text) {
    const auto* s = reinterpret_cast<const unsigned char*>(text.data());
    const std::size_t n = text.size();
    std::size_t i = 0;
    while (i < n) {
        const unsigned char c = s[i];
        if (c < 0x80) {
            ++i;
            continue;
        }
        std::size_t len = 0;
        std::uint32_t cp = 0;
        if (c >= 0xC2 && c <= 0xDF) len = 2, cp = c & 0x1F;
        else if (c >= 0xE0 && c <= 0xEF) len = 3, cp = c & 0x0F;
        else if (c >= 0xF0 && c <= 0xF4) len = 4, cp = c & 0x07;
        else return i;  // a continuation byte first, C0/C1 (overlong), or F5..FF
        if (i + len > n) return i;
        for (std::size_t k = 1; k < len; ++k) {
            if ((s[i + k] & 0xC0) != 0x80) return i;
            cp = (cp << 6) | (s[i + k] & 0x3F);
        }
        const bool overlong = (len == 3 && cp < 0x800) || (len == 4 && cp < 0x10000);
        if (overlong || (cp >= 0xD800 && cp <= 0xDFFF) || cp > 0x10FFFF) return i;
        i += len;
    }
    return std::nullopt;
}

std::variant<json::object, std::string> parse_json_body(std::string_view body) {
    if (body.find_first_not_of(" \t\r\n") == std::string_view::npos) return json::object{};
    if (auto bad = invalid_utf8_at(body)) return fmt::format("the request body is not valid UTF-8 (byte {})", *bad);
    boost::system::error_code ec;
    json::value v = json::parse(body, ec);
    if (ec) return fmt::format("the request body is not JSON: {}", ec.message());
    if (!v.is_object()) return std::string("the request body must be a JSON object");
    return std::move(v.as_object());
}

}  // namespace meshmaster::master::http
