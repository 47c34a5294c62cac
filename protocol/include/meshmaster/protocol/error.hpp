// Errors of the wire protocol, as values.
//
// Every failure of the frame decoder and the body codec is reported as a `protocol::error`: a code
// from `errc` plus, where the failure concerns one field of a message, that field's name. Its text
// form is what logs and Error frames carry, e.g. "wrong_type:shard" or "frame_too_large".
//
// Thread safety: plain values; safe to copy between threads.
#pragma once

#include <boost/system/error_code.hpp>

#include <cstdint>
#include <string>
#include <string_view>

namespace meshmaster::protocol {

enum class errc : std::uint8_t {
    ok = 0,
    frame_too_large,      ///< the header announces a body larger than the configured maximum
    truncated,            ///< the stream or the body ended in the middle of a frame or value
    bad_body,             ///< the body is not valid msgpack, or not a map, or nests too deeply
    trailing_bytes,       ///< bytes follow the body's single msgpack value
    unknown_event,        ///< an event id this peer does not know (outside the application range)
    missing_field,        ///< a required field is absent
    wrong_type,           ///< a field holds a msgpack type the schema does not allow
    out_of_range,         ///< an integer field does not fit its declared width or is negative
    duplicate_field,      ///< a known field appears twice in one map (ambiguous, so refused)
    unsupported_version,  ///< the peer speaks a protocol major version this build does not
};

/// The short, stable name of a code ("frame_too_large"), as used in logs and Error frames.
std::string_view to_string(errc code) noexcept;

/// The Boost.System category of `errc`, so protocol failures travel as `error_code` too.
const boost::system::error_category& protocol_category() noexcept;

inline boost::system::error_code make_error_code(errc code) noexcept {
    return {static_cast<int>(code), protocol_category()};
}

/// One protocol failure: what went wrong and, when it concerns a field, which one.
struct error {
    errc code = errc::ok;
    /// Name of the offending field; empty when the failure is not about one field. Always points
    /// at a string literal of the message schema (static storage), so an `error` never dangles.
    std::string_view field;

    /// "code" or "code:field", e.g. "wrong_type:shard".
    [[nodiscard]] std::string to_string() const;
    [[nodiscard]] boost::system::error_code error_code() const noexcept { return make_error_code(code); }

    friend bool operator==(const error&, const error&) = default;
};

/// Lets `boost::system::result<T, error>::value()` throw when misused (a programmer error).
[[noreturn]] void throw_exception_from_error(const error& e, const boost::source_location& where);

}  // namespace meshmaster::protocol

template <>
struct boost::system::is_error_code_enum<meshmaster::protocol::errc> : std::true_type {};
