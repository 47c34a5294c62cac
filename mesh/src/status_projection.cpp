#include "status_projection.hpp"

#include <meshmaster/protocol/json_text.hpp>

#include <boost/json/value.hpp>

namespace meshmaster::mesh {

namespace json = boost::json;
using std::chrono::milliseconds;

peer_status status_of(const peer& p, mono_time now) {
    const auto& st = p.ch->stats();
    const double sent = static_cast<double>(st.segments_sent + st.segments_retransmitted);
    return {.record = p.rec,
            .member = !p.visitor,
            .online = p.online,
            .rtt = p.ch->srtt(),
            .loss = sent > 0 ? static_cast<double>(st.segments_retransmitted) / sent : 0.0,
            .packets_in = p.packets_in,
            .packets_out = p.packets_out,
            .bytes_in = p.bytes_in,
            .bytes_out = p.bytes_out,
            .messages_in = st.messages_received,
            .messages_out = st.messages_sent,
            .retransmitted = st.segments_retransmitted,
            .timeouts = st.rto_expirations,
            .duplicates_dropped = st.duplicates_dropped,
            .beyond_window_dropped = st.beyond_window_dropped,
            .last_heard = p.last_heard == mono_time{} ? milliseconds(-1)
                                                      : std::chrono::duration_cast<milliseconds>(now - p.last_heard)};
}

std::vector<peer_status> status_list(const peer_table& table, mono_time now) {
    std::vector<peer_status> v;
    for (const auto& [id, p] : table.all()) v.push_back(status_of(*p, now));
    return v;
}

namespace {

json::object record_json(const peer_record& r) {
    json::object o{{"id", r.id}, {"type", r.type}, {"host", r.host}, {"port", r.port},
                   {"incarnation", std::to_string(r.incarnation)}};
    json::object values;
    for (const auto& [k, v] : r.values) values[k] = v;
    o["values"] = std::move(values);
    return o;
}

}  // namespace

std::string status_json(const self_status& self, const std::vector<peer_status>& list, const node_counters& c) {
    json::array peers;
    std::uint64_t visitors = 0;
    for (const auto& st : list) {
        // Visitors (tools such as the CLI asking for this very list) are no part of the mesh.
        if (!st.member) {
            ++visitors;
            continue;
        }
        json::object o = record_json(st.record);
        o["member"] = st.member;
        o["online"] = st.online;
        o["rtt_us"] = st.rtt ? json::value(std::chrono::duration<double, std::micro>(*st.rtt).count()) : json::value(nullptr);
        o["loss"] = st.loss;
        o["packets_in"] = st.packets_in;
        o["packets_out"] = st.packets_out;
        o["bytes_in"] = st.bytes_in;
        o["bytes_out"] = st.bytes_out;
        o["messages_in"] = st.messages_in;
        o["messages_out"] = st.messages_out;
        o["last_heard_ms"] = st.last_heard.count();
        o["retransmitted"] = st.retransmitted;
        o["timeouts"] = st.timeouts;
        o["duplicates_dropped"] = st.duplicates_dropped;
        o["beyond_window_dropped"] = st.beyond_window_dropped;
        peers.push_back(std::move(o));
    }
    json::object dropped{{"truncated", c.truncated}, {"bad_magic", c.bad_magic}, {"bad_frame", c.bad_frame},
                         {"bad_tag", c.bad_tag}, {"replayed", c.replayed}, {"wrong_receiver", c.wrong_receiver},
                         {"unknown_sender", c.unknown_sender}, {"send_errors", c.send_errors}};
    json::object me = record_json(self.record);
    me["online"] = self.online;
    me["authenticated"] = self.authenticated;
    me["offload"] = json::object{{"gso", self.gso}, {"gro", self.gro}, {"gso_sends", c.gso_sends}, {"gro_reads", c.gro_reads}};
    return protocol::json_text(json::object{
        {"self", std::move(me)}, {"peers", std::move(peers)}, {"visitors", visitors}, {"dropped", std::move(dropped)}});
}

}  // namespace meshmaster::mesh
