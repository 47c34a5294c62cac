// The dashboard page (master/dashboard/: index.html, dashboard.css, dashboard.js, favicon.svg),
// built into the binary so that `GET /` needs no file on disk and no network: cmake/EmbedFiles.cmake
// turns the files into byte arrays at build time, and the HTTP router asks find_dashboard_asset for
// the request's path. No Asio, no allocation: the bodies are views of static storage that live as long
// as the program.
//
// Errors: a path that is not one of the page's files is not an error here, just not found
// (std::nullopt); the router answers 404.
#pragma once

#include <optional>
#include <span>
#include <string_view>

namespace meshmaster::master {

struct dashboard_asset {
    std::string_view content_type;  ///< with its charset, ready for a Content-Type header
    std::string_view body;          ///< the file's exact bytes
};

/// The asset served at `path` ("/", "/index.html", "/dashboard.css", "/dashboard.js"), or nullopt.
/// The path is the request target's path alone (no query string).
std::optional<dashboard_asset> find_dashboard_asset(std::string_view path);

namespace dashboard_files {
/// One embedded file: its name in master/dashboard/ and its bytes.
struct embedded_file {
    std::string_view name;
    std::string_view bytes;
};
/// Every file of master/dashboard/ the build embedded (generated: dashboard_files.cpp).
std::span<const embedded_file> all();
}  // namespace dashboard_files

}  // namespace meshmaster::master
