#include "hex.hpp"

#include <fmt/format.h>

namespace meshmaster::protocol::test {

std::optional<std::vector<std::byte>> parse_hex(std::string_view text) {
    std::vector<std::byte> out;
    int pending = -1;
    for (const char c : text) {
        int digit = -1;
        if (c >= '0' && c <= '9') digit = c - '0';
        else if (c >= 'a' && c <= 'f') digit = c - 'a' + 10;
        else if (c >= 'A' && c <= 'F') digit = c - 'A' + 10;
        else if (c == ' ' || c == '\n' || c == '\t' || c == '\r') continue;
        else return std::nullopt;
        if (pending < 0) {
            pending = digit;
        } else {
            out.push_back(static_cast<std::byte>(pending * 16 + digit));
            pending = -1;
        }
    }
    if (pending >= 0) return std::nullopt;
    return out;
}

std::string format_frame_hex(std::span<const std::byte> frame) {
    std::string text;
    for (std::size_t i = 0; i < frame.size(); ++i) {
        const bool line_start = i == 0 || i == 8 || (i > 8 && (i - 8) % 16 == 0);
        if (line_start && i != 0) text += '\n';
        else if (!line_start) text += ' ';
        text += fmt::format("{:02x}", static_cast<unsigned>(frame[i]));
    }
    return text;
}

}  // namespace meshmaster::protocol::test
