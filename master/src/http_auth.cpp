#include "http_auth.hpp"

#include <fmt/format.h>
#include <openssl/crypto.h>
#include <openssl/sha.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

namespace meshmaster::master::http {

std::variant<std::string, std::string> read_token_file(std::string_view key, const std::string& path) {
    using result = std::variant<std::string, std::string>;
    auto problem = [&](std::string what) { return result(std::in_place_index<1>, fmt::format("{}: {}", key, what)); };
    // The mode is taken from the descriptor that is read, not from a second look at the path.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return problem(fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } close_on_return{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) return problem(fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
    if (!S_ISREG(st.st_mode)) return problem(fmt::format("'{}' is not a regular file", path));
    if ((st.st_mode & 077) != 0) {
        return problem(fmt::format("the token file '{}' is accessible by other users (mode {:04o}): make it private "
                                   "with `chmod 600 {}`",
                                   path, st.st_mode & 07777, path));
    }
    std::string content;
    char buffer[4096];
    while (true) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n < 0 && errno == EINTR) continue;
        if (n < 0) return problem(fmt::format("cannot read '{}': {}", path, std::strerror(errno)));
        if (n == 0) break;
        content.append(buffer, static_cast<std::size_t>(n));
        if (content.size() > 4096) return problem(fmt::format("'{}' is larger than 4 KiB: not a token", path));
    }
    while (!content.empty() && (content.back() == '\n' || content.back() == '\r')) content.pop_back();
    if (content.size() < min_token_size) {
        return problem(fmt::format("'{}' holds {} bytes (after trailing newlines); a token needs at least {}", path,
                                   content.size(), min_token_size));
    }
    for (const char c : content) {
        // A header value cannot carry these: such a token could never be presented.
        if (static_cast<unsigned char>(c) <= ' ' || c == 0x7f) {
            return problem(fmt::format("'{}' has whitespace or a control character inside the token", path));
        }
    }
    return result(std::in_place_index<0>, std::move(content));
}

std::variant<tokens, std::string> load_tokens(const token_files& files) {
    tokens t;
    std::string problems;
    auto one = [&](std::string_view key, const std::string& path, std::string& into) {
        if (path.empty()) return;
        auto r = read_token_file(key, path);
        if (auto* token = std::get_if<0>(&r)) into = std::move(*token);
        else problems += (problems.empty() ? "" : "; ") + std::get<1>(r);
    };
    one("http.read_token_file", files.read_token_file, t.read);
    one("http.admin_token_file", files.admin_token_file, t.admin);
    if (!problems.empty()) return problems;
    if (!t.read.empty() && t.read == t.admin) {
        return std::string("http.read_token_file and http.admin_token_file hold the same token: the read token "
                           "would act");
    }
    return t;
}

namespace {

// Equal in constant time whatever the lengths: both sides are hashed first, so neither the
// position of the first difference nor the length of the expected token shows in the timing.
bool same_token(std::string_view presented, std::string_view expected) {
    if (expected.empty()) return false;
    std::array<unsigned char, SHA256_DIGEST_LENGTH> a{}, b{};
    ::SHA256(reinterpret_cast<const unsigned char*>(presented.data()), presented.size(), a.data());
    ::SHA256(reinterpret_cast<const unsigned char*>(expected.data()), expected.size(), b.data());
    return CRYPTO_memcmp(a.data(), b.data(), a.size()) == 0;
}

}  // namespace

auth_result authorize(std::string_view authorization, access needs, const tokens& in_force) {
    if (needs == access::none) return {.allowed = true, .granted = access::none};
    if (!in_force.any()) {
        return {.status = 401,
                .error = "no token is configured: set [http] read_token_file or admin_token_file to use /v1"};
    }
    if (authorization.empty()) return {.status = 401, .error = "missing Authorization: Bearer <token>"};
    constexpr std::string_view scheme = "Bearer ";
    // The scheme is case-insensitive (RFC 7235); the token is not.
    if (authorization.size() <= scheme.size() ||
        !std::equal(scheme.begin(), scheme.end(), authorization.begin(),
                    [](char a, char b) { return std::tolower(static_cast<unsigned char>(a)) == std::tolower(static_cast<unsigned char>(b)); })) {
        return {.status = 401, .error = "the Authorization header is not 'Bearer <token>'"};
    }
    std::string_view token = authorization.substr(scheme.size());
    while (!token.empty() && (token.back() == ' ' || token.back() == '\t')) token.remove_suffix(1);
    // Both comparisons always run: which token matched must not show in the timing either.
    const bool admin = same_token(token, in_force.admin);
    const bool read = same_token(token, in_force.read);
    if (!admin && !read) return {.status = 401, .error = "the token is not valid"};
    const access granted = admin ? access::admin : access::read;
    if (needs == access::admin && granted != access::admin) {
        return {.status = 403, .error = "the read token may not act: this needs the admin token", .granted = granted};
    }
    return {.allowed = true, .granted = granted};
}

}  // namespace meshmaster::master::http
