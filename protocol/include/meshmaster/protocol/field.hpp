// Field descriptors: how a message struct names its members on the wire.
//
// Each message struct lists its fields once, in `static constexpr auto fields()`, as a tuple of
// `required_field(...)` / `optional_field(...)`. The codec walks that list to encode (in declaration
// order, so encoding is canonical) and to decode (by key, in any order; unknown keys are skipped).
// A required field that is absent is `missing_field:<name>`; an optional one keeps the struct's
// default. A `std::optional<T>` member is omitted from the wire when empty, and nil decodes to empty.
#pragma once

#include <string_view>

namespace meshmaster::protocol {

template <class Message, class T>
struct field {
    std::string_view name;
    T Message::*member;
    bool required;
};

template <class Message, class T>
constexpr field<Message, T> required_field(std::string_view name, T Message::*member) noexcept {
    return {name, member, true};
}

template <class Message, class T>
constexpr field<Message, T> optional_field(std::string_view name, T Message::*member) noexcept {
    return {name, member, false};
}

}  // namespace meshmaster::protocol
