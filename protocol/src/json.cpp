// Boost.JSON's implementation, compiled once for every program of the project (logs, the event
// log, the control socket and the gateway's reports are JSON lines), and json_text.hpp.
#include <boost/json/src.hpp>

#include <meshmaster/protocol/json_text.hpp>

#include <charconv>
#include <cmath>

namespace meshmaster::protocol {

void append_json_text(std::string& out, const boost::json::value& v) {
    namespace json = boost::json;
    switch (v.kind()) {
        case json::kind::object: {
            out += '{';
            bool first = true;
            for (const auto& [key, member] : v.get_object()) {
                if (!first) out += ',';
                first = false;
                out += json::serialize(key);
                out += ':';
                append_json_text(out, member);
            }
            out += '}';
            return;
        }
        case json::kind::array: {
            out += '[';
            bool first = true;
            for (const auto& element : v.get_array()) {
                if (!first) out += ',';
                first = false;
                append_json_text(out, element);
            }
            out += ']';
            return;
        }
        case json::kind::double_: {
            const double d = v.get_double();
            if (!std::isfinite(d)) {
                out += "null";
                return;
            }
            // The shortest text that reads back as the same double, in fixed notation (a finite
            // double needs at most 309 digits before the point and 1074 after it).
            char buffer[1100];
            const auto [end, ec] = std::to_chars(buffer, buffer + sizeof buffer, d, std::chars_format::fixed);
            if (ec == std::errc{}) {
                out.append(buffer, end);
            } else {
                out += json::serialize(v);
            }
            return;
        }
        default: out += json::serialize(v); return;
    }
}

std::string json_text(const boost::json::value& v) {
    std::string out;
    append_json_text(out, v);
    return out;
}

}  // namespace meshmaster::protocol
