// The secret file's rules (docs/protocol.md, "The secret"): what becomes the key, and what is
// refused with which message. Files in a private temporary directory; no sockets, no clock.
#include <meshmaster/protocol/secret.hpp>

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <string>
#include <sys/stat.h>

using namespace meshmaster::protocol;

namespace {

struct temp_dir {
    std::filesystem::path path;
    temp_dir() {
        std::string pattern = (std::filesystem::temp_directory_path() / "meshmaster-secret-XXXXXX").string();
        REQUIRE(::mkdtemp(pattern.data()) != nullptr);
        path = pattern;
    }
    ~temp_dir() { std::filesystem::remove_all(path); }

    std::string write(const std::string& name, const std::string& content, mode_t mode) const {
        const std::string file = (path / name).string();
        std::ofstream(file, std::ios::binary) << content;
        REQUIRE(::chmod(file.c_str(), mode) == 0);
        return file;
    }
};

}  // namespace

TEST_CASE("the key is the file's bytes less trailing CR and LF, and nothing else is trimmed") {
    temp_dir dir;
    CHECK(read_secret_file(dir.write("lf", "0123456789abcdef\n", 0600)).value() == "0123456789abcdef");
    CHECK(read_secret_file(dir.write("crlf", "0123456789abcdef\r\n\n", 0400)).value() == "0123456789abcdef");
    CHECK(read_secret_file(dir.write("spaces", "  0123456789abcdef \n", 0600)).value() == "  0123456789abcdef ");
    const std::string binary("\x00\xff\x01\x80secret-bytes-123", 20);
    CHECK(read_secret_file(dir.write("binary", binary, 0600)).value() == binary);
}

TEST_CASE("a secret file that group or others may access is refused, naming the path and the mode") {
    temp_dir dir;
    for (const mode_t mode : {0644, 0640, 0604, 0660, 0601, 0610}) {
        CAPTURE(mode);
        const std::string file = dir.write("open", "0123456789abcdef\n", mode);
        auto secret = read_secret_file(file);
        REQUIRE_FALSE(secret.has_value());
        char octal[8];
        std::snprintf(octal, sizeof octal, "%04o", static_cast<unsigned>(mode));
        CHECK(secret.error().message == "the secret file " + file + " is accessible by other users (mode " + octal +
                                            "): make it private with `chmod 600 " + file + "`");
    }
}

TEST_CASE("a short, missing or non-regular secret file is refused with the reason") {
    temp_dir dir;
    const std::string short_file = dir.write("short", "fifteen-bytes!!\n", 0600);
    auto too_short = read_secret_file(short_file);
    REQUIRE_FALSE(too_short.has_value());
    CHECK(too_short.error().message ==
          "the secret file " + short_file + " holds 15 bytes (after trailing newlines); a secret needs at least 16");
    CHECK(read_secret_file(dir.write("sixteen", "sixteen-bytes!!!", 0600)).has_value());

    const std::string missing = (dir.path / "missing").string();
    auto gone = read_secret_file(missing);
    REQUIRE_FALSE(gone.has_value());
    CHECK(gone.error().message == "cannot read the secret file " + missing + ": No such file or directory");

    ::chmod(dir.path.c_str(), 0700);
    auto directory = read_secret_file(dir.path.string());
    REQUIRE_FALSE(directory.has_value());
    CHECK(directory.error().message == "the secret file " + dir.path.string() + " is not a regular file");
}

TEST_CASE("a secret from the environment follows the same length rule") {
    CHECK(check_secret("0123456789abcdef\r\n", "MESHMASTER_SECRET").value() == "0123456789abcdef");
    auto refused = check_secret("short\n", "MESHMASTER_SECRET");
    REQUIRE_FALSE(refused.has_value());
    CHECK(refused.error().message == "MESHMASTER_SECRET holds 5 bytes (after trailing newlines); a secret needs at least 16");
    CHECK_THROWS_WITH_AS(check_secret("", "MESHMASTER_SECRET").value(),
                         "MESHMASTER_SECRET holds 0 bytes (after trailing newlines); a secret needs at least 16",
                         std::runtime_error);
}
