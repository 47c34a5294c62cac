// The HTTP API's tokens, sans-I/O: reading the token files ([http] read_token_file,
// admin_token_file) and checking a request's `Authorization: Bearer` header against them in
// constant time. A token never appears in a message this file builds (nor should it anywhere).
// Errors are values: the reader returns the problem naming the setting and the file.
#pragma once

#include "http_route.hpp"

#include <optional>
#include <string>
#include <string_view>
#include <variant>

namespace meshmaster::master::http {

/// The tokens in force; empty: that level has no token (nobody gets it).
struct tokens {
    std::string read;
    std::string admin;
    [[nodiscard]] bool any() const { return !read.empty() || !admin.empty(); }
};

/// Shortest token accepted: a guessable token is no token.
inline constexpr std::size_t min_token_size = 16;

/// Reads a token file as the secret file is read: a regular file that group and others may not
/// access (else refused, with the chmod that fixes it), trailing newlines dropped, at least
/// min_token_size bytes, no whitespace or control characters inside. `key` names the setting
/// ("http.admin_token_file") in the problem.
std::variant<std::string, std::string> read_token_file(std::string_view key, const std::string& path);

/// Both token files of a configuration ("" paths: no token of that kind): the tokens, or every problem.
struct token_files {
    std::string read_token_file;
    std::string admin_token_file;
};
std::variant<tokens, std::string> load_tokens(const token_files& files);

struct auth_result {
    bool allowed = false;
    unsigned status = 200;  ///< 401 (no or wrong token, or none configured) or 403 (read token on an action)
    std::string error;      ///< why, never quoting the token
    access granted = access::none;
};

/// Checks `authorization` (the header's value, empty when absent) for a route that `needs` access.
/// The admin token grants read too. Comparison in constant time (CRYPTO_memcmp over equal lengths).
auth_result authorize(std::string_view authorization, access needs, const tokens& in_force);

}  // namespace meshmaster::master::http
