// The dashboard's files as the binary serves them (dashboard_assets.hpp): every path the page uses is
// found with the type a browser needs under `X-Content-Type-Options: nosniff` (a stylesheet or script
// with another type is refused), each body is byte for byte the file in master/dashboard/ (so the
// build embedded the current page, not a stale or truncated one), and nothing else is served.
#include "dashboard_assets.hpp"
#include "http_route.hpp"

#include <doctest/doctest.h>

#include <fstream>
#include <iterator>
#include <regex>
#include <string>
#include <vector>

using namespace meshmaster::master;

namespace {

std::string source_file(const std::string& name) {
    const std::string path = std::string(MESHMASTER_DASHBOARD_DIR) + "/" + name;
    std::ifstream in(path, std::ios::binary);
    REQUIRE_MESSAGE(in.good(), "cannot open " << path);
    return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

}  // namespace

TEST_CASE("each of the dashboard's paths is served with its content type and the source file's exact bytes") {
    struct expected {
        const char* path;
        const char* file;
        const char* type;
    };
    for (const expected& e : {expected{"/", "index.html", "text/html; charset=utf-8"},
                              expected{"/index.html", "index.html", "text/html; charset=utf-8"},
                              expected{"/dashboard.css", "dashboard.css", "text/css; charset=utf-8"},
                              expected{"/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8"},
                              expected{"/favicon.svg", "favicon.svg", "image/svg+xml"}}) {
        CAPTURE(e.path);
        const auto asset = find_dashboard_asset(e.path);
        REQUIRE(asset.has_value());
        CHECK(asset->content_type == e.type);
        CHECK_FALSE(asset->body.empty());
        CHECK(asset->body == source_file(e.file));
    }
}

TEST_CASE("the page refers to its stylesheet and script by the paths that serve them, and inlines neither") {
    // The daemon sends `Content-Security-Policy: default-src 'self'`: an inline <script> or style=""
    // would be blocked and the page would show nothing.
    const auto page = find_dashboard_asset("/");
    REQUIRE(page.has_value());
    CHECK(page->body.find("<link rel=\"stylesheet\" href=\"/dashboard.css\">") != std::string_view::npos);
    CHECK(page->body.find("<script src=\"/dashboard.js\" defer></script>") != std::string_view::npos);
    CHECK(page->body.find("<link rel=\"icon\" href=\"/favicon.svg\" type=\"image/svg+xml\">") != std::string_view::npos);
    CHECK(page->body.find("style=") == std::string_view::npos);
    CHECK(page->body.find("<style") == std::string_view::npos);
    CHECK(page->body.find("<script>") == std::string_view::npos);
    const std::string body(page->body);
    CHECK_FALSE(std::regex_search(body, std::regex(R"(\son[a-z]+\s*=)")));  // no onclick= and the like
}

TEST_CASE("a path that is not one of the page's files is not found") {
    for (const char* path : {"", "/favicon.ico", "/index.htm", "/dashboard.css/", "//", "/DASHBOARD.JS",
                             "/dashboard.js?v=1", "/../dashboard.js", "/dashboard/dashboard.js", "dashboard.js",
                             "/v1/status", "/metrics"}) {
        CAPTURE(path);
        CHECK_FALSE(find_dashboard_asset(path).has_value());
    }
}

TEST_CASE("the build embedded exactly the four files of master/dashboard/") {
    std::vector<std::string> names;
    for (const auto& f : dashboard_files::all()) names.emplace_back(f.name);
    CHECK(names == std::vector<std::string>{"index.html", "dashboard.css", "dashboard.js", "favicon.svg"});
}

TEST_CASE("the HTTP router sends the page's paths to the dashboard, without a token") {
    // The page must load before anyone typed a token: it is the page that asks for one.
    for (const char* target : {"/", "/index.html", "/dashboard.css", "/dashboard.js", "/favicon.svg", "/?from=bookmark"}) {
        CAPTURE(target);
        const auto m = http::route("GET", target);
        CHECK(m.route == http::route_id::dashboard);
        CHECK(m.needs == http::access::none);
    }
    CHECK(http::route("POST", "/").status == 405);
    CHECK(http::route("GET", "/dashboard.js/").status == 404);
    CHECK(http::route("GET", "/dashboard.map").status == 404);
}
