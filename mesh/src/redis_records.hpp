// Redis discovery's records (private to mesh/src): the JSON codec of a node's record, and reading
// every record under the prefix (SCAN + MGET), shared by the node's coroutines (redis_discovery.cpp)
// and the one-shot listing (redis_records.cpp). Apart from redis_discovery.cpp for compile time.
//
// Thread safety: free functions; scan_records runs on the connection's executor.
#pragma once

#include "resp_connection.hpp"

#include <meshmaster/mesh/redis_discovery.hpp>

#include <boost/asio/awaitable.hpp>
#include <boost/json/object.hpp>
#include <boost/json/value.hpp>

#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>

namespace meshmaster::mesh::detail {

boost::json::object record_object(const peer_record& r);
const boost::json::string* string_field(const boost::json::object& o, std::string_view name);
std::optional<peer_record> record_of(const boost::json::value& v);
/// `s` with the glob characters of Redis's MATCH escaped.
std::string escape_glob(std::string_view s);

/// Every record under the prefix: SCAN + MGET page by page. `abort` is asked between pages;
/// `bad` hears keys whose value is not a record of the id the key names.
boost::asio::awaitable<boost::system::error_code> scan_records(resp_connection& c, const redis_options& opts,
                                                               std::map<std::string, peer_record>& out,
                                                               const std::function<bool()>& abort,
                                                               const std::function<void(std::string_view key)>& bad);

}  // namespace meshmaster::mesh::detail
