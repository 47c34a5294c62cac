// A slave_session driven without sockets, with a real supervisor behind it: the unit tests and the
// session fuzz target both use it. It feeds bytes the way the daemon does (into read_buffer, in
// pieces no larger than the session asks for) and carries out the supervisor's actions that
// concern this one connection.
#pragma once

#include <meshmaster/master/slave_session.hpp>
#include <meshmaster/master/supervisor.hpp>
#include <meshmaster/protocol/auth.hpp>
#include <meshmaster/protocol/codec.hpp>
#include <meshmaster/protocol/frame_decoder.hpp>
#include <meshmaster/protocol/version.hpp>

#include <algorithm>
#include <cstring>
#include <memory>
#include <optional>
#include <string>
#include <vector>

namespace meshmaster::master::test {

class session_harness final : public session_host {
public:
    static constexpr connection_id connection = 7;

    explicit session_harness(supervisor_config config = default_config()) : core(config) {
        core.start(now);
        (void)core.take_actions();
        session = std::make_unique<slave_session>(connection, "192.0.2.1:4000", settings, *this);
        session->start();
    }

    static supervisor_config default_config() {
        supervisor_config c;
        c.shard_count = 4;
        c.slave_count = 2;
        c.spawn_slaves = false;  // external slaves: a hello may claim any id
        return c;
    }

    /// Feeds `bytes` as reads of at most `piece` bytes (0: as much as the session takes at once).
    void feed(std::span<const std::byte> bytes, std::size_t piece = 0) {
        while (!bytes.empty() && !session->closing()) {
            auto space = session->read_buffer();
            std::size_t n = std::min(space.size(), bytes.size());
            if (piece != 0) n = std::min(n, piece);
            std::memcpy(space.data(), bytes.data(), n);
            bytes = bytes.subspan(n);
            session->received(n);
        }
    }

    /// Calls `f` with every frame the session wrote so far, decoded (views into a buffer that
    /// lives only during the call: copy what must outlive it).
    template <class F>
    void each_written(F&& f) const {
        protocol::frame_decoder decoder;
        decoder.feed(written);
        while (true) {
            auto next = decoder.next();
            if (!next || !*next) return;
            if (auto m = protocol::decode(**next)) f(*m);
        }
    }

    /// The codes of the error frames written, in order.
    std::vector<std::string> error_codes() const {
        std::vector<std::string> codes;
        each_written([&](const protocol::message& m) {
            if (const auto* e = std::get_if<protocol::error_message>(&m)) codes.emplace_back(e->code);
        });
        return codes;
    }

    /// The hello and proof a slave that knows `secret` sends in answer to the challenge.
    std::vector<std::byte> handshake_reply(const std::string& slave_id, const std::string& secret,
                                           std::uint32_t major = protocol::current_version.major) const {
        std::optional<protocol::nonce> master_nonce;
        each_written([&](const protocol::message& m) {
            if (const auto* c = std::get_if<protocol::auth_challenge>(&m); c && c->nonce.size() == protocol::nonce_size) {
                master_nonce.emplace();
                std::copy(c->nonce.begin(), c->nonce.end(), master_nonce->begin());
            }
        });
        protocol::nonce slave_nonce{};
        slave_nonce.fill(std::byte{0x5a});
        std::vector<std::byte> out;
        (void)protocol::encode(protocol::slave_hello{.version_major = major,
                                                     .version_minor = protocol::current_version.minor,
                                                     .slave_id = slave_id,
                                                     .pid = 4242,
                                                     .nonce = protocol::bytes_view(slave_nonce)},
                               out);
        const protocol::proof mac = protocol::slave_proof(
            secret, master_nonce ? protocol::bytes_view(*master_nonce) : protocol::bytes_view{},
            protocol::bytes_view(slave_nonce), slave_id);
        (void)protocol::encode(protocol::auth_proof{.mac = protocol::bytes_view(mac)}, out);
        return out;
    }

    std::size_t logged(std::string_view event) const {
        return static_cast<std::size_t>(
            std::count_if(log_records.begin(), log_records.end(), [&](const event_record& r) { return r.event == event; }));
    }

    // --- session_host ---
    void to_core(connection_id, const std::function<void(supervisor&, mono_time)>& input) override {
        ++core_inputs;
        if (!session->authenticated()) inputs_before_authentication = true;
        input(core, now);
        carry_out_core_actions();
    }
    /// Time passes: the supervisor's deadlines fire (not an input from the peer).
    void tick(std::chrono::milliseconds dt) {
        now += dt;
        core.on_tick(now);
        carry_out_core_actions();
    }
    void carry_out_core_actions() {
        for (action& a : core.take_actions()) {
            if (auto* log = std::get_if<actions::log_event>(&a)) {
                log_records.push_back(log->record);
            } else if (auto* send = std::get_if<actions::send_frame>(&a); send && send->connection == connection) {
                written.insert(written.end(), send->frames.begin(), send->frames.end());
            } else if (auto* close = std::get_if<actions::close_connection>(&a); close && close->connection == connection) {
                session->close(close->code, close->message);
            }
        }
    }
    const supervisor_config& core_config() const override { return core.config(); }
    void log(event_record record) override { log_records.push_back(std::move(record)); }
    void write(connection_id id, std::span<const std::byte> bytes) override {
        if (id == connection) written.insert(written.end(), bytes.begin(), bytes.end());
    }
    void close_after_write(connection_id id) override { close_requests += id == connection ? 1 : 0; }

    supervisor core;
    mono_time now{std::chrono::seconds(1)};
    session_settings settings{.master_id = "master-under-test",
                              .secret = "session-secret-0123456789",
                              .max_frame_size = 64 * 1024,
                              .max_state_size = 1 << 20};
    std::unique_ptr<slave_session> session;
    std::vector<std::byte> written;
    std::vector<event_record> log_records;
    std::size_t core_inputs = 0;
    bool inputs_before_authentication = false;
    std::size_t close_requests = 0;
};

}  // namespace meshmaster::master::test
