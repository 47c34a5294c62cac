#include <meshmaster/protocol/secret.hpp>

#include <cerrno>
#include <cstdio>
#include <cstring>
#include <fcntl.h>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace meshmaster::protocol {

namespace {

secret_error unreadable(const std::string& path) {
    return secret_error{"cannot read the secret file " + path + ": " + std::strerror(errno)};
}

// Everything up to end of file; false (errno set) on a read error.
bool read_to_end(int fd, std::string& out) {
    char buffer[4096];
    while (true) {
        const ssize_t n = ::read(fd, buffer, sizeof buffer);
        if (n > 0) {
            out.append(buffer, static_cast<std::size_t>(n));
        } else if (n == 0) {
            return true;
        } else if (errno != EINTR) {
            return false;
        }
    }
}

}  // namespace

void throw_exception_from_error(const secret_error& e, const boost::source_location&) {
    throw std::runtime_error(e.message);
}

boost::system::result<std::string, secret_error> check_secret(std::string secret, std::string_view source) {
    while (!secret.empty() && (secret.back() == '\n' || secret.back() == '\r')) secret.pop_back();
    if (secret.size() < min_secret_size) {
        return secret_error{std::string(source) + " holds " + std::to_string(secret.size()) +
                            " bytes (after trailing newlines); a secret needs at least " +
                            std::to_string(min_secret_size)};
    }
    return {boost::system::in_place_value, std::move(secret)};
}

boost::system::result<std::string, secret_error> read_secret_file(const std::string& path) {
    // The mode is taken from the descriptor that is read, not from a second look at the path.
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return unreadable(path);
    struct closer {
        int fd;
        ~closer() { ::close(fd); }
    } close_on_return{fd};
    struct stat st {};
    if (::fstat(fd, &st) != 0) {
        return unreadable(path);
    }
    if (!S_ISREG(st.st_mode)) return secret_error{"the secret file " + path + " is not a regular file"};
    if ((st.st_mode & 077) != 0) {
        char mode[8];
        std::snprintf(mode, sizeof mode, "%04o", static_cast<unsigned>(st.st_mode & 07777));
        return secret_error{"the secret file " + path + " is accessible by other users (mode " + mode +
                            "): make it private with `chmod 600 " + path + "`"};
    }
    std::string content;
    if (!read_to_end(fd, content)) return unreadable(path);
    return check_secret(std::move(content), "the secret file " + path);
}

boost::system::result<std::string, secret_error> read_secret_fd(int fd, std::string_view source) {
    std::string content;
    if (!read_to_end(fd, content)) {
        return secret_error{"cannot read " + std::string(source) + ": " + std::strerror(errno)};
    }
    return check_secret(std::move(content), source);
}

}  // namespace meshmaster::protocol
