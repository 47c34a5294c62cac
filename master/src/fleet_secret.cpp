#include "fleet_secret.hpp"

#include <meshmaster/protocol/auth.hpp>

#include <cstdlib>

namespace meshmaster::master {

boost::system::result<fleet_secret, protocol::secret_error> load_fleet_secret(const std::string& secret_file) {
    if (!secret_file.empty()) {
        auto secret = protocol::read_secret_file(secret_file);
        if (!secret) return secret.error();
        return fleet_secret{.value = std::move(*secret)};
    }
    if (const char* env = std::getenv("MESHMASTER_SECRET"); env && *env) {
        auto secret = protocol::check_secret(env, "MESHMASTER_SECRET");
        if (!secret) return secret.error();
        return fleet_secret{.value = std::move(*secret)};
    }
    // 64 hex digits: printable, so it travels to spawned slaves like any configured secret.
    static constexpr char digits[] = "0123456789abcdef";
    std::string generated;
    for (const std::byte b : protocol::random_nonce()) {
        generated += digits[std::to_integer<unsigned>(b) >> 4];
        generated += digits[std::to_integer<unsigned>(b) & 0xf];
    }
    return fleet_secret{.value = std::move(generated), .generated = true};
}

}  // namespace meshmaster::master
