// The HTTP API's sans-I/O parts: routing (with path traversal refused), query strings, bearer
// tokens and their files, error bodies and JSON request bodies.
#include "http_auth.hpp"
#include "http_errors.hpp"
#include "http_route.hpp"

#include <boost/json/parse.hpp>
#include <doctest/doctest.h>

#include <cstdio>
#include <filesystem>
#include <fstream>
#include <sys/stat.h>
#include <unistd.h>

using namespace meshmaster::master::http;

TEST_CASE("routes: method and path select the endpoint, with its path parameters and its access") {
    auto m = route("GET", "/v1/status?detail=summary");
    CHECK(m.route == route_id::status);
    CHECK(m.needs == access::read);
    CHECK(query_value(m.query, "detail") == "summary");
    m = route("POST", "/v1/slaves/s-12%2Dx/drain");
    CHECK(m.route == route_id::drain);
    CHECK(m.needs == access::admin);
    REQUIRE(m.params.size() == 1);
    CHECK(m.params[0] == "s-12-x");
    m = route("GET", "/v1/restarts/1700000000000001");
    CHECK(m.route == route_id::restart_progress);
    CHECK(m.params == std::vector<std::string>{"1700000000000001"});
    CHECK(route("GET", "/healthz").needs == access::none);
    CHECK(route("GET", "/metrics").route == route_id::metrics);
    CHECK(route("POST", "/v1/stop").route == route_id::stop);
    // HEAD routes as GET, with the same access (the server leaves the body out).
    m = route("HEAD", "/v1/shards?state=running");
    CHECK(m.route == route_id::shards);
    CHECK(m.needs == access::read);
    CHECK(query_value(m.query, "state") == "running");
    CHECK(route("HEAD", "/healthz").route == route_id::healthz);
    CHECK(route("HEAD", "/").route == route_id::dashboard);
}

TEST_CASE("routes: unknown paths are 404, a known path with the wrong method 405 naming what it takes") {
    auto m = route("GET", "/v1/nothing");
    CHECK(m.route == route_id::none);
    CHECK(m.status == 404);
    CHECK(m.error.find("/v1/nothing") != std::string::npos);
    m = route("GET", "/v1/restart");
    CHECK(m.status == 405);
    CHECK(m.allow == "POST");
    m = route("DELETE", "/v1/status");
    CHECK(m.status == 405);
    CHECK(m.allow == "GET, HEAD");
    m = route("HEAD", "/v1/stop");  // HEAD is GET's; an action has none
    CHECK(m.status == 405);
    CHECK(m.allow == "POST");
    CHECK(route("GET", "/v1/status/").status == 404);  // not the same resource
    CHECK(route("POST", "/v1/slaves//drain").status == 404);  // an empty id is no id
    CHECK(route("GET", "http://example.com/healthz").status == 404);
    CHECK(route("GET", "").status == 404);
}

TEST_CASE("routes: path traversal, raw or percent-encoded, is 404 before any route is looked at") {
    for (const char* target : {"/../etc/passwd", "/v1/../healthz", "/v1/%2e%2e/healthz", "/v1/%2E%2e/status",
                               "/./healthz", "/v1/%2e/status", "/v1%2fstatus", "/healthz%00", "/v1/slaves/..%2f..%2fx/drain"}) {
        CAPTURE(target);
        const auto m = route("GET", target);
        CHECK(m.route == route_id::none);
        CHECK(m.status == 404);
    }
    // A malformed escape in the path is no path either.
    CHECK(route("GET", "/v1/st%zzatus").status == 404);
    CHECK(route("GET", "/v1/status%2").status == 404);
}

TEST_CASE("query strings: percent-decoding, '+' as space, empty parts, malformed escapes refused with 400") {
    auto q = parse_query("state=running&x=a%20b+c&&flag&e=");
    REQUIRE(q);
    REQUIRE(q->size() == 4);
    CHECK((*q)[0] == std::pair<std::string, std::string>{"state", "running"});
    CHECK((*q)[1].second == "a b c");
    CHECK((*q)[2] == std::pair<std::string, std::string>{"flag", ""});
    CHECK((*q)[3] == std::pair<std::string, std::string>{"e", ""});
    std::string error;
    CHECK_FALSE(parse_query("a=%4", &error));
    CHECK(error.find("a=%4") != std::string::npos);
    CHECK_FALSE(parse_query("a=%g0"));
    const auto m = route("GET", "/v1/shards?state=%zz");
    CHECK(m.status == 400);
    CHECK(percent_decode("%41%62c") == "Abc");
    CHECK(percent_decode("a+b") == "a+b");  // a path keeps its '+'
    CHECK_FALSE(percent_decode("%"));
}

namespace {
const tokens both{.read = "read-token-0123456789", .admin = "admin-token-0123456789"};
}

TEST_CASE("bearer tokens: none or wrong is 401, the read token on an action 403, the admin token may do both") {
    CHECK(authorize("", access::none, both).allowed);
    auto r = authorize("", access::read, both);
    CHECK(r.status == 401);
    CHECK(r.error.find("missing") != std::string::npos);
    r = authorize("Bearer wrong-token-0123456789", access::read, both);
    CHECK(r.status == 401);
    CHECK(r.error.find("wrong-token") == std::string::npos);  // never quoted
    CHECK(authorize("Basic cmVhZDpyZWFk", access::read, both).status == 401);
    CHECK(authorize("Bearer read-token-012345678", access::read, both).status == 401);  // a prefix is not the token
    CHECK(authorize("Bearer read-token-01234567890", access::read, both).status == 401);
    CHECK(authorize("Bearer read-token-0123456789", access::read, both).allowed);
    CHECK(authorize("bearer read-token-0123456789", access::read, both).allowed);  // the scheme's case does not matter
    r = authorize("Bearer read-token-0123456789", access::admin, both);
    CHECK(r.status == 403);
    CHECK(r.granted == access::read);
    CHECK(authorize("Bearer admin-token-0123456789", access::admin, both).allowed);
    CHECK(authorize("Bearer admin-token-0123456789", access::read, both).allowed);
}

TEST_CASE("bearer tokens: with no token configured /v1 answers 401 saying so; a missing level grants nothing") {
    const auto r = authorize("Bearer anything-at-all-here", access::read, tokens{});
    CHECK(r.status == 401);
    CHECK(r.error.find("no token is configured") != std::string::npos);
    const tokens admin_only{.admin = "admin-token-0123456789"};
    CHECK(authorize("Bearer ", access::read, admin_only).status == 401);
    CHECK(authorize("Bearer admin-token-0123456789", access::read, admin_only).allowed);
}

namespace {
struct temp_file {
    std::string path;
    temp_file(const std::string& content, mode_t mode) {
        char name[] = "/tmp/meshmaster-token-XXXXXX";
        const int fd = ::mkstemp(name);
        REQUIRE(fd >= 0);
        REQUIRE(::write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size()));
        ::close(fd);
        path = name;
        ::chmod(name, mode);
    }
    ~temp_file() { std::filesystem::remove(path); }
};
}  // namespace

TEST_CASE("token files: read like the secret file, refused when others may read them, too short or not one token") {
    temp_file good("admin-token-0123456789\n", 0600);
    auto r = read_token_file("http.admin_token_file", good.path);
    REQUIRE(r.index() == 0);
    CHECK(std::get<0>(r) == "admin-token-0123456789");
    temp_file open_to_group("admin-token-0123456789\n", 0640);
    r = read_token_file("http.admin_token_file", open_to_group.path);
    REQUIRE(r.index() == 1);
    CHECK(std::get<1>(r).find("http.admin_token_file") == 0);
    CHECK(std::get<1>(r).find("chmod 600") != std::string::npos);
    CHECK(std::get<1>(r).find("admin-token-0123456789") == std::string::npos);
    temp_file short_one("short\n", 0600);
    CHECK(read_token_file("k", short_one.path).index() == 1);
    temp_file two_words("admin-token 0123456789\n", 0600);
    CHECK(read_token_file("k", two_words.path).index() == 1);
    CHECK(read_token_file("k", "/nonexistent/token").index() == 1);
    temp_file same("admin-token-0123456789\n", 0600);
    const auto both_same = load_tokens({.read_token_file = same.path, .admin_token_file = good.path});
    REQUIRE(both_same.index() == 1);
    CHECK(std::get<1>(both_same).find("same token") != std::string::npos);
    const auto none = load_tokens({});
    REQUIRE(none.index() == 0);
    CHECK_FALSE(std::get<0>(none).any());
}

TEST_CASE("error bodies are JSON objects with one `error`; each refusal status has its counted reason") {
    const auto v = boost::json::parse(error_body("no such resource: /x\"y"));
    CHECK(v.at("error").as_string() == "no such resource: /x\"y");
    CHECK(boost::json::parse(error_body(std::string(5000, 'a'))).at("error").as_string().size() < 1100);
    CHECK(boost::json::parse(error_body("bad \xff byte")).at("error").as_string() == "bad ");
    CHECK(refusal_reason(401) == "http_unauthorized");
    CHECK(refusal_reason(403) == "http_forbidden");
    CHECK(refusal_reason(413) == "http_body_too_large");
    CHECK(refusal_reason(431) == "http_headers_too_large");
    CHECK(refusal_reason(408) == "http_timeout");
    CHECK(refusal_reason(400) == "http_bad_request");
    CHECK(refusal_reason(404) == "http_not_found");
    CHECK(refusal_reason(503) == "http_too_many_connections");
    CHECK(refusal_reason(409).empty());
    CHECK(refusal_reason(422).empty());
    CHECK(refusal_reason(200).empty());
}

TEST_CASE("JSON bodies: empty is {}, bad UTF-8 is named by its offset, anything but an object is refused") {
    CHECK(std::get<0>(parse_json_body("")).empty());
    CHECK(std::get<0>(parse_json_body(" \n")).empty());
    CHECK(std::get<0>(parse_json_body(R"({"leave_slaves": true})")).at("leave_slaves").as_bool());
    CHECK(std::get<0>(parse_json_body("{\"k\": \"\xc3\xa9\xf0\x9f\x98\x80\"}")).size() == 1);
    for (std::string bad : {std::string("{\"k\": \"\xff\"}"), std::string("{\"k\": \"\xc0\xaf\"}"),
                            std::string("{\"k\": \"\xed\xa0\x80\"}"), std::string("{\"k\": \"\xe2\x82\"}"),
                            std::string("{\"k\": \"\xf4\x90\x80\x80\"}")}) {
        const auto r = parse_json_body(bad);
        REQUIRE(r.index() == 1);
        CHECK(std::get<1>(r).find("not valid UTF-8 (byte 7)") != std::string::npos);
    }
    CHECK(std::get<1>(parse_json_body("[1]")).find("object") != std::string::npos);
    CHECK(std::get<1>(parse_json_body("{")).find("not JSON") != std::string::npos);
    CHECK(invalid_utf8_at("plain ascii") == std::nullopt);
}
