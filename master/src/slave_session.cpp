#include <meshmaster/master/slave_session.hpp>

#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/version.hpp>

#include <fmt/format.h>

#include <memory>
#include <type_traits>

namespace meshmaster::master {

namespace p = meshmaster::protocol;

slave_session::slave_session(connection_id id, std::string peer, const session_settings& settings, session_host& host)
    : id_(id),
      peer_(std::move(peer)),
      settings_(settings),
      host_(host),
      decoder_(settings.max_frame_size),
      assembler_(settings.max_state_size) {}

template <class Message>
void slave_session::send(const Message& m) {
    std::vector<std::byte> bytes;
    if (p::encode(m, bytes)) host_.write(id_, bytes);
}

void slave_session::start() {
    master_nonce_ = p::random_nonce();
    send(p::auth_challenge{.version_major = p::current_version.major,
                           .version_minor = p::current_version.minor,
                           .master_id = settings_.master_id,
                           .nonce = p::bytes_view(master_nonce_)});
}

std::span<std::byte> slave_session::read_buffer() {
    const std::size_t wanted = authenticated_ ? read_size : pre_auth_read_size;
    return decoder_.prepare(wanted).first(wanted);
}

void slave_session::received(std::size_t n) {
    decoder_.commit(n);
    while (!closing_) {
        auto next = decoder_.next();
        if (!next) {
            refuse(next.error().to_string(), authenticated_ ? "broken frame stream" : "broken frame stream during the handshake",
                   true);
            return;
        }
        if (!*next) return;
        host_.frame_received((**next).event);
        if (authenticated_) {
            handle(**next);
        } else {
            handle_handshake(**next);
        }
    }
}

void slave_session::close(std::string_view code, std::string_view message) {
    if (closing_) return;
    send(p::error_message{.code = code, .message = message, .fatal = true});
    closing_ = true;
    host_.close_after_write(id_);
}

void slave_session::closed() {
    // The peer ended the stream (this side did not close it) in the middle of a frame: say how far
    // the frame got, the one trace a cut connection or a peer that gave up leaves.
    if (!closing_) {
        if (const auto partial = decoder_.partial()) {
            const std::string size = partial->size ? fmt::format("{}-byte frame (event {})", *partial->size, *partial->event)
                                                   : fmt::format("{}-byte frame header", p::frame_header_size);
            event_record r{.event = event_kind::frame_truncated,
                           .slave = name(),
                           .reason = fmt::format("truncated: the connection ended {} bytes into a {}", partial->received, size),
                           .address = peer_,
                           .bytes_received = partial->received};
            if (partial->size) r.bytes_expected = *partial->size;
            host_.log(std::move(r));
        }
    }
    closing_ = true;
    assembler_.clear();
    if (authenticated_ && !told_core_closed_) {
        told_core_closed_ = true;
        host_.to_core(id_, [id = id_](supervisor& core, mono_time now) { core.on_disconnected(id, now); });
    }
}

void slave_session::refuse(std::string_view code, std::string_view why, bool fatal) {
    host_.log({.event = event_kind::frame_refused, .slave = name(), .reason = fmt::format("{}: {}", code, why), .address = peer_});
    if (fatal) {
        close(code, why);
    } else {
        send(p::error_message{.code = code, .message = why});
    }
}

// Challenge (sent), hello, proof, welcome.
void slave_session::handle_handshake(const p::frame_view& frame) {
    auto m = p::decode(frame);
    if (!m) return refuse(m.error().to_string(), "during the handshake", true);
    if (!hello_) {
        auto* h = std::get_if<p::slave_hello>(&*m);
        if (!h) return refuse("not_authenticated", fmt::format("event {} before slave_hello", frame.event), true);
        slave_ = std::string(h->slave_id);
        if (auto ok = p::check_compatible({h->version_major, h->version_minor}); !ok) {
            return refuse(ok.error().to_string(),
                          fmt::format("the slave speaks protocol {}.{}, this master {}.{}", h->version_major,
                                      h->version_minor, p::current_version.major, p::current_version.minor),
                          true);
        }
        hello_ = slave_hello_info{.id = slave_, .pid = h->pid, .generation = h->generation, .shards = h->shards,
                                  .soft_started = h->soft_started, .stopped = h->stopped,
                                  .version_minor = h->version_minor, .address = peer_};
        if (h->has_mesh_node()) {
            mesh_node_info node{.id = slave_, .type = std::string(h->mesh_type.value_or("")), .host = std::string(*h->mesh_host),
                                .port = *h->mesh_port, .incarnation = *h->mesh_incarnation, .values = {}};
            if (h->mesh_values) {
                for (const auto& [k, v] : *h->mesh_values) node.values.emplace(k, v);
            }
            hello_->mesh = std::move(node);
        }
        slave_nonce_.assign(h->nonce.begin(), h->nonce.end());
        return;
    }
    auto* proof = std::get_if<p::auth_proof>(&*m);
    if (!proof) return refuse("not_authenticated", fmt::format("event {} before auth_proof", frame.event), true);
    const p::proof expected =
        p::slave_proof(settings_.secret, p::bytes_view(master_nonce_), p::bytes_view(slave_nonce_), hello_->id);
    if (slave_nonce_.size() != p::nonce_size || !p::proofs_equal(expected, proof->mac)) {
        host_.log({.event = event_kind::auth_failed, .slave = hello_->id, .reason = fmt::format("wrong proof from {}", peer_),
                   .address = peer_});
        return close("auth_failed", "authentication failed");
    }
    const p::proof mine =
        p::master_proof(settings_.secret, p::bytes_view(master_nonce_), p::bytes_view(slave_nonce_), hello_->id);
    send(p::welcome{.mac = p::bytes_view(mine),
                    .heartbeat_interval_ms = static_cast<std::uint32_t>(host_.core_config().heartbeat_interval.count())});
    authenticated_ = true;
    const slave_hello_info hello = std::move(*hello_);
    hello_.reset();
    host_.to_core(id_, [&](supervisor& core, mono_time now) { core.on_slave_connected(id_, hello, now); });
}

void slave_session::handle(const p::frame_view& frame) {
    const std::uint32_t event = frame.event;
    auto m = p::decode(frame);
    if (!m) return refuse(m.error().to_string(), fmt::format("event {}", event), false);
    const connection_id id = id_;
    std::visit(
        [&](auto& msg) {
            using T = std::decay_t<decltype(msg)>;
            if constexpr (std::is_same_v<T, p::soft_start_complete>) {
                host_.to_core(id, [&](supervisor& core, mono_time now) { core.on_soft_start_complete(id, now); });
            } else if constexpr (std::is_same_v<T, p::shard_started>) {
                host_.to_core(id, [&](supervisor& core, mono_time now) { core.on_shard_started(id, msg.shard, msg.epoch, now); });
            } else if constexpr (std::is_same_v<T, p::state_chunk>) {
                if (auto r = assembler_.add(msg); !r) return refuse(r.error().to_string(), "state_chunk", false);
                host_.to_core(id, [&](supervisor& core, mono_time now) { core.on_state_received(id, now); });
            } else if constexpr (std::is_same_v<T, p::shard_stopped> || std::is_same_v<T, p::checkpoint>) {
                constexpr bool stopped = std::is_same_v<T, p::shard_stopped>;
                std::uint64_t migration = 0;  // checkpoints' chunks carry migration 0
                if constexpr (stopped) migration = msg.migration_id;
                auto whole = assembler_.finish(migration, msg.shard, msg.state, msg.state_size);
                if (!whole) return refuse(whole.error().to_string(), stopped ? "shard_stopped state" : "checkpoint state", false);
                auto state = std::make_shared<const std::vector<std::byte>>(std::move(*whole));
                host_.to_core(id, [&](supervisor& core, mono_time now) {
                    core.on_state_received(id, now);
                    if constexpr (stopped) {
                        core.on_shard_stopped(id, msg.shard, msg.epoch, msg.migration_id, state, now, msg.stopped_at_us);
                    } else {
                        core.on_checkpoint(id, msg.shard, msg.epoch, state, now);
                    }
                });
            } else if constexpr (std::is_same_v<T, p::resumed>) {
                host_.to_core(id, [&](supervisor& core, mono_time now) {
                    core.on_resumed(id, msg.shard, msg.epoch, msg.migration_id, now, msg.pause_us);
                });
            } else if constexpr (std::is_same_v<T, p::shutdown_complete>) {
                host_.to_core(id, [&](supervisor& core, mono_time now) { core.on_shutdown_complete(id, now); });
            } else if constexpr (std::is_same_v<T, p::heartbeat>) {
                const heartbeat_info info{.seq = msg.seq, .echo_seq = msg.echo_seq, .echo_delay_us = msg.echo_delay_us};
                host_.to_core(id, [&](supervisor& core, mono_time now) { core.on_heartbeat(id, msg.progress, now, info); });
            } else if constexpr (std::is_same_v<T, p::error_message>) {
                host_.to_core(id, [&](supervisor& core, mono_time now) {
                    core.on_slave_error(id, std::string(msg.code), std::string(msg.message), now);
                });
            } else if constexpr (std::is_same_v<T, p::mesh_update>) {
                std::optional<std::string> type;
                if (msg.mesh_type) type = std::string(*msg.mesh_type);
                std::vector<std::pair<std::string, std::string>> values;
                for (const auto& [k, v] : msg.mesh_values) values.emplace_back(k, v);
                host_.to_core(id, [&](supervisor& core, mono_time now) {
                    core.on_mesh_update(id, std::move(type), std::move(values), now);
                });
            } else if constexpr (std::is_same_v<T, p::application_frame>) {
                refuse("unsupported", fmt::format("application event {} has no route yet", msg.event), false);
            } else {
                refuse("unexpected_event", fmt::format("{} is not sent by slaves", p::to_string(T::id)), false);
            }
        },
        *m);
}

}  // namespace meshmaster::master
