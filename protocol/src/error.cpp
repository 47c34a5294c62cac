#include <meshmaster/protocol/error.hpp>

#include <boost/throw_exception.hpp>

#include <stdexcept>

namespace meshmaster::protocol {

std::string_view to_string(errc code) noexcept {
    switch (code) {
        case errc::ok: return "ok";
        case errc::frame_too_large: return "frame_too_large";
        case errc::truncated: return "truncated";
        case errc::bad_body: return "bad_body";
        case errc::trailing_bytes: return "trailing_bytes";
        case errc::unknown_event: return "unknown_event";
        case errc::missing_field: return "missing_field";
        case errc::wrong_type: return "wrong_type";
        case errc::out_of_range: return "out_of_range";
        case errc::duplicate_field: return "duplicate_field";
        case errc::unsupported_version: return "unsupported_version";
    }
    return "unknown_error";
}

namespace {

class category final : public boost::system::error_category {
public:
    const char* name() const noexcept override { return "meshmaster.protocol"; }
    std::string message(int value) const override {
        return std::string(to_string(static_cast<errc>(value)));
    }
};

}  // namespace

const boost::system::error_category& protocol_category() noexcept {
    static const category instance;
    return instance;
}

std::string error::to_string() const {
    std::string text(protocol::to_string(code));
    if (!field.empty()) {
        text += ':';
        text += field;
    }
    return text;
}

void throw_exception_from_error(const error& e, const boost::source_location& where) {
    boost::throw_exception(std::runtime_error("meshmaster protocol error: " + e.to_string()), where);
}

}  // namespace meshmaster::protocol
