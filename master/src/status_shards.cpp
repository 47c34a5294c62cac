// `meshmaster status --shards`: see status_shards.hpp.
#include "status_shards.hpp"

#include "json_fields.hpp"

#include <boost/json/array.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <charconv>
#include <optional>

namespace meshmaster::master {

namespace json = boost::json;
using namespace json_fields;

namespace {

std::string_view trimmed(std::string_view s) {
    while (!s.empty() && s.front() == ' ') s.remove_prefix(1);
    while (!s.empty() && s.back() == ' ') s.remove_suffix(1);
    return s;
}

// A whole decimal number, nothing before or after it.
std::optional<std::uint32_t> shard_number(std::string_view s) {
    std::uint32_t n = 0;
    const auto [end, ec] = std::from_chars(s.data(), s.data() + s.size(), n);
    if (s.empty() || ec != std::errc() || end != s.data() + s.size()) return std::nullopt;
    return n;
}

std::string range_text(const std::pair<std::uint32_t, std::uint32_t>& r) {
    return r.first == r.second ? fmt::format("shard {}", r.first) : fmt::format("{}-{}", r.first, r.second);
}

bool selected_state(const json::object& sh, const std::vector<std::string>& states) {
    if (states.empty()) return true;
    const std::string phase = text(field(sh, "phase"));
    const bool moving = flag(field(sh, "moving"));
    return std::any_of(states.begin(), states.end(), [&](const std::string& s) {
        if (s == "moving") return moving;
        if (s == "not-running") return phase != "running" && !moving;
        return s == phase;
    });
}

}  // namespace

std::variant<shard_selection, std::string> parse_shard_selection(std::string_view shards,
                                                                 const std::vector<std::string>& states) {
    shard_selection sel;
    const std::string_view all = shards;
    shards = trimmed(shards);
    while (!shards.empty()) {
        const std::size_t comma = shards.find(',');
        const std::string_view item = trimmed(shards.substr(0, comma));
        shards = comma == std::string_view::npos ? std::string_view() : shards.substr(comma + 1);
        if (item.empty()) return fmt::format("--shards: '{}' has an empty item between commas", all);
        std::size_t dash = item.find("..");
        std::size_t width = 2;
        if (dash == std::string_view::npos) {
            dash = item.find('-');
            width = 1;
        }
        const auto first = shard_number(trimmed(item.substr(0, dash)));
        const auto last = dash == std::string_view::npos ? first : shard_number(trimmed(item.substr(dash + width)));
        if (!first || !last) {
            return fmt::format("--shards: '{}' is neither a shard number nor a range (write them like 0-99,512)", item);
        }
        if (*first > *last) return fmt::format("--shards: '{}' runs backwards: {} is after {}", item, *first, *last);
        sel.ranges.emplace_back(*first, *last);
        if (comma != std::string_view::npos && shards.empty()) {
            return fmt::format("--shards: '{}' ends with a comma", all);
        }
    }
    for (const std::string& s : states) {
        if (std::find(std::begin(selectable_states), std::end(selectable_states), s) == std::end(selectable_states)) {
            std::string names;
            for (const auto n : selectable_states) names += (names.empty() ? "" : ", ") + std::string(n);
            return fmt::format("--state: '{}' is not a state; the states are {}", s, names);
        }
        sel.states.push_back(s);
    }
    return sel;
}

shard_rows shard_rows_text(const json::object& status, const shard_selection& sel) {
    shard_rows out;
    const std::uint64_t fleet = count(field(status, "shard_count"));
    for (const auto& r : sel.ranges) {
        if (r.second >= fleet) {
            out.error = fmt::format("--shards: {} is past the fleet's last shard: it has {} shards ({})", range_text(r),
                                    fleet, fleet ? fmt::format("0..{}", fleet - 1) : "none");
            return out;
        }
    }
    const json::value& shards = field(status, "shards");
    if (!shards.is_array()) {
        out.error = "the daemon's answer has no shard table";
        return out;
    }
    out.text = fmt::format("{:>6}  {:<9} {:<14} {:>6}  {}\n", "SHARD", "STATE", "OWNER", "EPOCH", "HANDOFF");
    for (const auto& v : shards.as_array()) {
        const json::object& sh = object(v);
        const std::uint64_t n = count(field(sh, "shard"));
        if (!sel.ranges.empty() &&
            std::none_of(sel.ranges.begin(), sel.ranges.end(), [&](const auto& r) { return n >= r.first && n <= r.second; })) {
            continue;
        }
        if (!selected_state(sh, sel.states)) continue;
        const std::string owner = text(field(sh, "owner"));
        const std::string phase = text(field(sh, "phase"));
        // stopping or resuming: a planned move between live slaves, or the recovery of a dead one's shard.
        const std::string_view handoff = flag(field(sh, "moving")) ? "planned"
                                          : phase == "stopping" || phase == "resuming" ? "recovery" : "-";
        out.text += fmt::format("{:>6}  {:<9} {:<14} {:>6}  {}\n", n, phase, owner.empty() ? "-" : owner,
                                text(field(sh, "epoch")), handoff);
        ++out.rows;
    }
    return out;
}

}  // namespace meshmaster::master
