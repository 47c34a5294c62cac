// Generic encode/decode over the field lists in messages.hpp, instantiated here for every message
// so that neither msgpack-c nor the reader leaks into the public headers.

#include <meshmaster/protocol/codec.hpp>

#include "msgpack_reader.hpp"

#include <msgpack/pack.hpp>

#include <arpa/inet.h>

#include <algorithm>
#include <array>
#include <cstring>
#include <limits>
#include <tuple>
#include <type_traits>
#include <utility>

namespace meshmaster::protocol {

namespace {

// --- encoding ---------------------------------------------------------------------------------

// msgpack-c's packer writes into any type with write(const char*, size_t). With `gather` set (and
// `out` its bytes), the one write of exactly `external` (a bin field's body: msgpack-c writes it
// in one call) is not copied but recorded as a piece of `gather`.
struct vector_sink {
    std::vector<std::byte>& out;
    gathered_frames* gather = nullptr;
    bytes_view external{};
    std::size_t left_out = 0;  // bytes of the body that went to a piece instead of `out`
    void write(const char* data, std::size_t size) {
        const auto* p = reinterpret_cast<const std::byte*>(data);
        if (gather && size != 0 && left_out == 0 && p == external.data() && size == external.size()) {
            gather->pieces.push_back({.at = out.size(), .data = external});
            left_out = size;
            return;
        }
        out.insert(out.end(), p, p + size);
    }
};
using packer = msgpack::packer<vector_sink>;

void pack_value(packer& pk, std::uint16_t v) { pk.pack_uint16(v); }
void pack_value(packer& pk, std::uint32_t v) { pk.pack_uint32(v); }
void pack_value(packer& pk, std::uint64_t v) { pk.pack_uint64(v); }
void pack_value(packer& pk, bool v) { v ? pk.pack_true() : pk.pack_false(); }
void pack_value(packer& pk, std::string_view v) {
    pk.pack_str(static_cast<std::uint32_t>(v.size()));
    pk.pack_str_body(v.data(), static_cast<std::uint32_t>(v.size()));
}
void pack_value(packer& pk, bytes_view v) {
    pk.pack_bin(static_cast<std::uint32_t>(v.size()));
    pk.pack_bin_body(reinterpret_cast<const char*>(v.data()), static_cast<std::uint32_t>(v.size()));
}
void pack_value(packer& pk, migration_role v) {
    pack_value(pk, std::string_view(v == migration_role::source ? "source" : "target"));
}
void pack_value(packer& pk, const std::vector<shard_epoch>& v) {
    pk.pack_array(static_cast<std::uint32_t>(v.size()));
    for (const shard_epoch& s : v) {
        pk.pack_array(2);
        pack_value(pk, s.shard);
        pack_value(pk, s.epoch);
    }
}
void pack_value(packer& pk, const string_map& v) {
    pk.pack_map(static_cast<std::uint32_t>(v.size()));
    for (const auto& [key, value] : v) {
        pack_value(pk, key);
        pack_value(pk, value);
    }
}
void pack_value(packer& pk, const std::vector<mesh_member>& v) {
    pk.pack_array(static_cast<std::uint32_t>(v.size()));
    for (const mesh_member& m : v) {
        pk.pack_array(6);
        pack_value(pk, m.id);
        pack_value(pk, m.type);
        pack_value(pk, m.host);
        pack_value(pk, m.port);
        pack_value(pk, m.incarnation);
        pack_value(pk, m.values);
    }
}
template <class T>
void pack_value(packer& pk, const std::optional<T>& v) {
    if (v) pack_value(pk, *v);  // absent optionals are not written at all (see field_present)
}

template <class T>
bool field_present(const T&) { return true; }
template <class T>
bool field_present(const std::optional<T>& v) { return v.has_value(); }

template <class Message>
void pack_body(packer& pk, const Message& m) {
    std::apply(
        [&](const auto&... f) {
            const std::uint32_t present = (0u + ... + (field_present(m.*(f.member)) ? 1u : 0u));
            pk.pack_map(present);
            [[maybe_unused]] auto one = [&](const auto& field) {
                if (!field_present(m.*(field.member))) return;
                pack_value(pk, field.name);
                pack_value(pk, m.*(field.member));
            };
            (one(f), ...);
        },
        Message::fields());
}

// Appends header + body, the body produced by `write_body(packer&)`; patches the length in after.
template <class WriteBody>
result<void> encode_frame(std::uint32_t event, vector_sink sink, std::size_t max_body_size, WriteBody&& write_body) {
    std::vector<std::byte>& out = sink.out;
    const std::size_t start = out.size();
    const std::size_t pieces = sink.gather ? sink.gather->pieces.size() : 0;
    out.resize(start + frame_header_size);
    packer pk(sink);
    write_body(pk);
    const std::size_t body_size = out.size() - start - frame_header_size + sink.left_out;
    if (body_size > max_body_size || body_size > std::numeric_limits<std::uint32_t>::max()) {
        out.resize(start);
        if (sink.gather) sink.gather->pieces.resize(pieces);
        return fail(errc::frame_too_large);
    }
    write_frame_header(out.data() + start, {event, static_cast<std::uint32_t>(body_size)});
    return {};
}

// --- decoding ---------------------------------------------------------------------------------

using detail::msgpack_reader;

// An IPv4 address in dotted-quad form or an IPv6 address in text form (no zone suffix).
bool is_ip_address(std::string_view text) noexcept {
    std::array<char, 64> buffer{};
    if (text.empty() || text.size() >= buffer.size() || text.find('\0') != std::string_view::npos) return false;
    std::memcpy(buffer.data(), text.data(), text.size());
    std::array<unsigned char, 16> address{};
    return ::inet_pton(AF_INET, buffer.data(), address.data()) == 1 ||
           ::inet_pton(AF_INET6, buffer.data(), address.data()) == 1;
}

errc read_value(msgpack_reader& r, std::uint64_t& out) { return r.read_uint(out); }
errc read_value(msgpack_reader& r, std::uint32_t& out) {
    std::uint64_t wide = 0;
    msgpack_reader probe = r;
    if (const errc e = probe.read_uint(wide); e != errc::ok) return e;
    if (wide > std::numeric_limits<std::uint32_t>::max()) return errc::out_of_range;
    r = probe;
    out = static_cast<std::uint32_t>(wide);
    return errc::ok;
}
errc read_value(msgpack_reader& r, std::uint16_t& out) {
    std::uint64_t wide = 0;
    msgpack_reader probe = r;
    if (const errc e = probe.read_uint(wide); e != errc::ok) return e;
    if (wide > std::numeric_limits<std::uint16_t>::max()) return errc::out_of_range;
    r = probe;
    out = static_cast<std::uint16_t>(wide);
    return errc::ok;
}
errc read_value(msgpack_reader& r, bool& out) { return r.read_bool(out); }
errc read_value(msgpack_reader& r, std::string_view& out) { return r.read_str(out); }
errc read_value(msgpack_reader& r, bytes_view& out) { return r.read_bin(out); }
errc read_value(msgpack_reader& r, migration_role& out) {
    std::string_view text;
    msgpack_reader probe = r;
    if (const errc e = probe.read_str(text); e != errc::ok) return e;
    if (text == "source") out = migration_role::source;
    else if (text == "target") out = migration_role::target;
    else return errc::out_of_range;
    r = probe;
    return errc::ok;
}
errc read_value(msgpack_reader& r, std::vector<shard_epoch>& out) {
    std::uint32_t count = 0;
    msgpack_reader probe = r;
    if (const errc e = probe.read_array_header(count); e != errc::ok) return e;
    // Each [shard, epoch] pair takes at least 3 bytes: refuse impossible counts before reserving.
    if (count > probe.remaining() / 3) return errc::truncated;
    out.clear();
    out.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
        std::uint32_t arity = 0;
        if (const errc e = probe.read_array_header(arity); e != errc::ok) return e;
        if (arity != 2) return errc::wrong_type;
        shard_epoch item;
        if (const errc e = read_value(probe, item.shard); e != errc::ok) return e;
        if (const errc e = read_value(probe, item.epoch); e != errc::ok) return e;
        out.push_back(item);
    }
    r = probe;
    return errc::ok;
}
// Whether two items share a key: quadratic (and allocation-free) for the short lists of real
// traffic, sorted copies of the keys for long ones so a hostile body cannot make it quadratic.
template <class Item, class Key>
bool has_duplicate_keys(const std::vector<Item>& items, Key key_of) {
    constexpr std::size_t quadratic_limit = 16;
    if (items.size() <= quadratic_limit) {
        for (std::size_t i = 0; i < items.size(); ++i) {
            for (std::size_t j = i + 1; j < items.size(); ++j) {
                if (key_of(items[i]) == key_of(items[j])) return true;
            }
        }
        return false;
    }
    std::vector<std::string_view> keys;
    keys.reserve(items.size());
    for (const Item& item : items) keys.push_back(key_of(item));
    std::sort(keys.begin(), keys.end());
    return std::adjacent_find(keys.begin(), keys.end()) != keys.end();
}

errc read_value(msgpack_reader& r, string_map& out) {
    std::uint32_t count = 0;
    msgpack_reader probe = r;
    if (const errc e = probe.read_map_header(count); e != errc::ok) return e;
    // Each entry (two strs) takes at least 2 bytes: refuse impossible counts before reserving.
    if (count > probe.remaining() / 2) return errc::truncated;
    out.clear();
    out.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
        std::string_view key;
        std::string_view value;
        if (const errc e = probe.read_str(key); e != errc::ok) return e;
        if (const errc e = probe.read_str(value); e != errc::ok) return e;
        out.emplace_back(key, value);
    }
    if (has_duplicate_keys(out, [](const auto& entry) { return entry.first; })) return errc::duplicate_field;
    r = probe;
    return errc::ok;
}
errc read_value(msgpack_reader& r, std::vector<mesh_member>& out) {
    constexpr std::uint32_t member_arity = 6;  // [id, type, host, port, incarnation, values]
    // The smallest member: fixarray, three fixstrs, two fixints, an empty fixmap.
    constexpr std::size_t min_member_size = 8;
    std::uint32_t count = 0;
    msgpack_reader probe = r;
    if (const errc e = probe.read_array_header(count); e != errc::ok) return e;
    if (count > probe.remaining() / min_member_size) return errc::truncated;
    out.clear();
    out.reserve(count);
    for (std::uint32_t i = 0; i < count; ++i) {
        std::uint32_t arity = 0;
        if (const errc e = probe.read_array_header(arity); e != errc::ok) return e;
        if (arity < member_arity) return errc::wrong_type;
        mesh_member item;
        if (const errc e = probe.read_str(item.id); e != errc::ok) return e;
        if (const errc e = probe.read_str(item.type); e != errc::ok) return e;
        if (const errc e = probe.read_str(item.host); e != errc::ok) return e;
        if (!is_ip_address(item.host)) return errc::out_of_range;
        if (const errc e = read_value(probe, item.port); e != errc::ok) return e;
        if (item.port == 0) return errc::out_of_range;
        if (const errc e = probe.read_uint(item.incarnation); e != errc::ok) return e;
        if (item.incarnation == 0) return errc::out_of_range;
        if (const errc e = read_value(probe, item.values); e != errc::ok) return e;
        // Elements a later minor version appends are skipped, as unknown keys are in maps.
        for (std::uint32_t extra = member_arity; extra < arity; ++extra) {
            if (const errc e = probe.skip(); e != errc::ok) return e;
        }
        out.push_back(std::move(item));
    }
    if (has_duplicate_keys(out, [](const mesh_member& m) { return m.id; })) return errc::duplicate_field;
    r = probe;
    return errc::ok;
}
template <class T>
errc read_value(msgpack_reader& r, std::optional<T>& out) {
    if (r.next_is_nil()) {
        out.reset();
        return r.read_nil();
    }
    T value{};
    if (const errc e = read_value(r, value); e != errc::ok) return e;
    out = std::move(value);
    return errc::ok;
}

template <class Message>
result<Message> decode_map(bytes_view body) {
    Message m{};
    constexpr auto fields = Message::fields();
    constexpr std::size_t field_count = std::tuple_size_v<std::remove_const_t<decltype(fields)>>;
    static_assert(field_count <= 32, "the seen-field mask is 32 bits wide");

    // A zero-length body stands for an empty map (YAGPDB sends bodiless events).
    std::uint32_t entries = 0;
    msgpack_reader r(body);
    if (!body.empty()) {
        if (const errc e = r.read_map_header(entries); e != errc::ok) {
            return fail(e == errc::truncated ? errc::truncated : errc::bad_body);
        }
    }

    std::uint32_t seen = 0;
    for (std::uint32_t i = 0; i < entries; ++i) {
        std::string_view key;
        if (const errc e = r.read_str(key); e != errc::ok) {
            return fail(e == errc::truncated ? errc::truncated : errc::bad_body);  // keys are strings
        }
        error failure{};
        bool matched = false;
        std::size_t index = 0;
        [[maybe_unused]] auto try_field = [&](const auto& f) {
            const std::size_t my_index = index++;
            if (matched || f.name != key) return;
            matched = true;
            if (seen & (1u << my_index)) {
                failure = {errc::duplicate_field, f.name};
                return;
            }
            seen |= 1u << my_index;
            if (const errc e = read_value(r, m.*(f.member)); e != errc::ok) failure = {e, f.name};
        };
        std::apply([&](const auto&... f) { (try_field(f), ...); }, fields);
        if (failure.code != errc::ok) return failure;
        if (!matched) {
            // Unknown keys are skipped: newer peers may send fields this build does not know.
            if (const errc e = r.skip(); e != errc::ok) return fail(e);
        }
    }
    if (!r.at_end()) return fail(errc::trailing_bytes);

    error missing{};
    std::size_t index = 0;
    [[maybe_unused]] auto check_required = [&](const auto& f) {
        const std::size_t my_index = index++;
        if (missing.code == errc::ok && f.required && !(seen & (1u << my_index))) {
            missing = {errc::missing_field, f.name};
        }
    };
    std::apply([&](const auto&... f) { (check_required(f), ...); }, fields);
    if (missing.code != errc::ok) return missing;
    // Rules across fields, for the messages that have any.
    if constexpr (requires { m.validate(); }) {
        if (const error invalid = m.validate(); invalid.code != errc::ok) return invalid;
    }
    return m;
}

template <class T>
struct is_control_message : std::true_type {};
template <>
struct is_control_message<application_frame> : std::false_type {};

// Decodes `frame` as the message alternative whose id matches; recursion over the variant's types.
template <std::size_t I = 0>
result<message> decode_as_known(event_id id, bytes_view body) {
    if constexpr (I == std::variant_size_v<message>) {
        return fail(errc::unknown_event);
    } else {
        using alternative = std::variant_alternative_t<I, message>;
        if constexpr (is_control_message<alternative>::value) {
            if (alternative::id == id) {
                auto decoded = decode_map<alternative>(body);
                if (!decoded) return decoded.error();
                return message{std::in_place_index<I>, std::move(*decoded)};
            }
        }
        return decode_as_known<I + 1>(id, body);
    }
}

}  // namespace

error slave_hello::validate() const noexcept {
    if (!mesh_host && !mesh_port && !mesh_incarnation && !mesh_type && !mesh_values) return {};  // no mesh node
    if (!mesh_host) return {errc::missing_field, "mesh_host"};
    if (!mesh_port) return {errc::missing_field, "mesh_port"};
    if (!mesh_incarnation) return {errc::missing_field, "mesh_incarnation"};
    if (!is_ip_address(*mesh_host)) return {errc::out_of_range, "mesh_host"};
    if (*mesh_port == 0) return {errc::out_of_range, "mesh_port"};
    if (*mesh_incarnation == 0) return {errc::out_of_range, "mesh_incarnation"};
    return {};
}

template <class Message>
result<void> encode(const Message& m, std::vector<std::byte>& out, std::size_t max_body_size) {
    return encode_frame(static_cast<std::uint32_t>(Message::id), vector_sink{out}, max_body_size,
                        [&](packer& pk) { pack_body(pk, m); });
}

template <class Message>
result<void> encode_gathered(const Message& m, bytes_view external, gathered_frames& out, std::size_t max_body_size) {
    return encode_frame(static_cast<std::uint32_t>(Message::id),
                        vector_sink{.out = out.bytes, .gather = &out, .external = external}, max_body_size,
                        [&](packer& pk) { pack_body(pk, m); });
}

std::size_t gathered_frames::size() const noexcept {
    std::size_t n = bytes.size();
    for (const piece& p : pieces) n += p.data.size();
    return n;
}

std::vector<std::span<const std::byte>> gathered_frames::spans() const {
    std::vector<std::span<const std::byte>> out;
    out.reserve(2 * pieces.size() + 1);
    std::size_t from = 0;
    for (const piece& p : pieces) {
        if (p.at > from) out.emplace_back(bytes.data() + from, p.at - from);
        if (!p.data.empty()) out.emplace_back(p.data);
        from = p.at;
    }
    if (bytes.size() > from) out.emplace_back(bytes.data() + from, bytes.size() - from);
    return out;
}

std::vector<std::byte> gathered_frames::flatten() const {
    std::vector<std::byte> out;
    out.reserve(size());
    for (const auto s : spans()) out.insert(out.end(), s.begin(), s.end());
    return out;
}

template <class Message>
result<Message> decode_body(bytes_view body) {
    return decode_map<Message>(body);
}

result<void> encode(const message& m, std::vector<std::byte>& out, std::size_t max_body_size) {
    return std::visit(
        [&](const auto& alternative) -> result<void> {
            using type = std::decay_t<decltype(alternative)>;
            if constexpr (std::is_same_v<type, application_frame>) {
                return encode_frame(alternative.event, vector_sink{out}, max_body_size, [&](packer&) {
                    vector_sink{out}.write(reinterpret_cast<const char*>(alternative.body.data()),
                                           alternative.body.size());
                });
            } else {
                return encode(alternative, out, max_body_size);
            }
        },
        m);
}

result<message> decode(const frame_view& frame) {
    if (is_application_event(frame.event)) return message{application_frame{frame.event, frame.body}};
    const std::optional<event_id> id = known_event(frame.event);
    if (!id) return fail(errc::unknown_event);
    return decode_as_known(*id, frame.body);
}

std::uint32_t event_of(const message& m) noexcept {
    return std::visit(
        [](const auto& alternative) -> std::uint32_t {
            using type = std::decay_t<decltype(alternative)>;
            if constexpr (std::is_same_v<type, application_frame>) return alternative.event;
            else return static_cast<std::uint32_t>(type::id);
        },
        m);
}

// Explicit instantiations: every control message can be encoded and decoded on its own.
#define MESHMASTER_PROTOCOL_INSTANTIATE(type)                                                       \
    template result<void> encode<type>(const type&, std::vector<std::byte>&, std::size_t);           \
    template result<type> decode_body<type>(bytes_view);
MESHMASTER_PROTOCOL_INSTANTIATE(soft_start)
MESHMASTER_PROTOCOL_INSTANTIATE(full_start)
MESHMASTER_PROTOCOL_INSTANTIATE(shard_migration_start)
MESHMASTER_PROTOCOL_INSTANTIATE(stop_shard)
MESHMASTER_PROTOCOL_INSTANTIATE(resume)
MESHMASTER_PROTOCOL_INSTANTIATE(shutdown)
MESHMASTER_PROTOCOL_INSTANTIATE(state_chunk)
MESHMASTER_PROTOCOL_INSTANTIATE(slave_hello)
MESHMASTER_PROTOCOL_INSTANTIATE(soft_start_complete)
MESHMASTER_PROTOCOL_INSTANTIATE(shard_stopped)
MESHMASTER_PROTOCOL_INSTANTIATE(auth_challenge)
MESHMASTER_PROTOCOL_INSTANTIATE(auth_proof)
MESHMASTER_PROTOCOL_INSTANTIATE(welcome)
MESHMASTER_PROTOCOL_INSTANTIATE(start_shard)
MESHMASTER_PROTOCOL_INSTANTIATE(shard_started)
MESHMASTER_PROTOCOL_INSTANTIATE(resumed)
MESHMASTER_PROTOCOL_INSTANTIATE(shutdown_complete)
MESHMASTER_PROTOCOL_INSTANTIATE(heartbeat)
MESHMASTER_PROTOCOL_INSTANTIATE(error_message)
MESHMASTER_PROTOCOL_INSTANTIATE(checkpoint)
MESHMASTER_PROTOCOL_INSTANTIATE(handoff_complete)
MESHMASTER_PROTOCOL_INSTANTIATE(mesh_members)
MESHMASTER_PROTOCOL_INSTANTIATE(mesh_update)
#undef MESHMASTER_PROTOCOL_INSTANTIATE

// The frames that carry a state (state_transfer.cpp).
template result<void> encode_gathered<resume>(const resume&, bytes_view, gathered_frames&, std::size_t);
template result<void> encode_gathered<shard_stopped>(const shard_stopped&, bytes_view, gathered_frames&, std::size_t);
template result<void> encode_gathered<checkpoint>(const checkpoint&, bytes_view, gathered_frames&, std::size_t);
template result<void> encode_gathered<state_chunk>(const state_chunk&, bytes_view, gathered_frames&, std::size_t);

}  // namespace meshmaster::protocol
