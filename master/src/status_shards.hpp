// `meshmaster status --shards [LIST] [--state STATE,...]`: the shard table, one row per shard,
// selected by number (a list of numbers and ranges, "0-99,512") and by state. Parsing the
// selection and printing the rows are pure functions: text in, text out, the error as a sentence
// naming the option and what is wrong (the CLI prints it and exits 64).
//
// Thread safety: plain functions.
#pragma once

#include <boost/json/object.hpp>

#include <cstdint>
#include <string>
#include <string_view>
#include <utility>
#include <variant>
#include <vector>

namespace meshmaster::master {

struct shard_selection {
    std::vector<std::pair<std::uint32_t, std::uint32_t>> ranges;  ///< inclusive; empty: every shard
    std::vector<std::string> states;                              ///< empty: every state
};

/// The states `--state` takes: the shard phases, `moving` (a planned handoff), and `not-running`
/// (what the health verdict counts against: neither running nor moving).
inline constexpr std::string_view selectable_states[] = {"unowned",  "starting", "running",    "stopping",
                                                         "resuming", "moving",   "not-running"};

/// `--shards` (numbers and ranges, "0-99,512", "0..99"; "" is every shard) and `--state` read,
/// or the error.
std::variant<shard_selection, std::string> parse_shard_selection(std::string_view shards,
                                                                 const std::vector<std::string>& states);

struct shard_rows {
    std::string text;     ///< a header line, then one line per shard selected
    std::size_t rows = 0;
    std::string error;    ///< set (and text empty) when a range goes past the fleet's last shard
};

/// The rows of the shards in the full status answer's `shards` that `selection` selects.
shard_rows shard_rows_text(const boost::json::object& status, const shard_selection& selection);

}  // namespace meshmaster::master
