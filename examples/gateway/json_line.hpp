// Builds one JSON object on one line, for logs and reports: `json_line{}.field("shard", 3).str()`.
//
// Small on purpose: flat or nested objects of strings, integers, doubles and booleans are all the
// gateway prints. Strings are escaped per RFC 8259 (bot names come off the wire); doubles are
// printed with a fixed number of decimals, so "1.5" and not "1.5E0".
//
// Thread safety: none; a plain value.
#pragma once

#include <fmt/format.h>

#include <concepts>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>

namespace meshmaster::gateway {

/// Appends `text` to `out` as a JSON string literal, quotes included.
inline void append_json_string(std::string& out, std::string_view text) {
    out += '"';
    for (const char ch : text) {
        const auto byte = static_cast<unsigned char>(ch);
        switch (ch) {
            case '"': out += "\\\""; break;
            case '\\': out += "\\\\"; break;
            case '\n': out += "\\n"; break;
            case '\r': out += "\\r"; break;
            case '\t': out += "\\t"; break;
            default:
                if (byte < 0x20 || byte >= 0x7f) {
                    // Control characters must be escaped; bytes above ASCII are escaped too, since
                    // a name off the wire need not be valid UTF-8.
                    fmt::format_to(std::back_inserter(out), "\\u{:04x}", static_cast<unsigned>(byte));
                } else {
                    out += ch;
                }
        }
    }
    out += '"';
}

class json_line {
public:
    json_line() { text_ += '{'; }

    json_line& field(std::string_view key, std::string_view value) {
        append_key(key);
        append_json_string(text_, value);
        return *this;
    }
    json_line& field(std::string_view key, const char* value) { return field(key, std::string_view{value}); }
    json_line& field(std::string_view key, bool value) {
        append_key(key);
        text_ += value ? "true" : "false";
        return *this;
    }
    template <std::integral T>
        requires(!std::same_as<T, bool> && !std::same_as<T, char>)
    json_line& field(std::string_view key, T value) {
        append_key(key);
        fmt::format_to(std::back_inserter(text_), "{}", value);
        return *this;
    }
    /// Milliseconds and the like: three decimals are plenty and keep lines short.
    json_line& field(std::string_view key, double value) {
        append_key(key);
        fmt::format_to(std::back_inserter(text_), "{:.3f}", value);
        return *this;
    }
    /// A nested object built by another json_line.
    json_line& object(std::string_view key, const json_line& nested) {
        append_key(key);
        text_ += nested.str();
        return *this;
    }

    /// The object so far, closed.
    [[nodiscard]] std::string str() const { return text_ + '}'; }

private:
    void append_key(std::string_view key) {
        if (text_.size() > 1) text_ += ',';
        append_json_string(text_, key);
        text_ += ':';
    }

    std::string text_;
};

}  // namespace meshmaster::gateway
