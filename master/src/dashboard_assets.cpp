// The dashboard's paths and types over the embedded files: see dashboard_assets.hpp.
#include "dashboard_assets.hpp"

#include <array>

namespace meshmaster::master {

namespace {

struct route {
    std::string_view path;
    std::string_view file;
    std::string_view content_type;
};

// Every path the page uses. "/" is the page itself; "/index.html" too, for a browser or proxy that
// asks for it by name.
constexpr std::array routes{
    route{"/", "index.html", "text/html; charset=utf-8"},
    route{"/index.html", "index.html", "text/html; charset=utf-8"},
    route{"/dashboard.css", "dashboard.css", "text/css; charset=utf-8"},
    route{"/dashboard.js", "dashboard.js", "text/javascript; charset=utf-8"},
    route{"/favicon.svg", "favicon.svg", "image/svg+xml"},  // the tab's icon (else the browser asks for /favicon.ico: a 404)
};

}  // namespace

std::optional<dashboard_asset> find_dashboard_asset(std::string_view path) {
    for (const route& r : routes) {
        if (r.path != path) continue;
        for (const auto& f : dashboard_files::all()) {
            if (f.name == r.file) return dashboard_asset{r.content_type, f.bytes};
        }
    }
    return std::nullopt;
}

}  // namespace meshmaster::master
