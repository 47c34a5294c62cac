// The slave library's network shell, its I/O half (slave_shell.hpp): the coroutines that write the
// core's frames, read the master's, and send heartbeats. slave_shell.cpp holds the rest (the
// connection's life: connect, handshake deadline, reconnect). Split from it for compile time: each
// Asio coroutine costs seconds of code generation, and one unit with all of them passed 15 s.
#include "slave_shell.hpp"
#include "shell_vocabulary.hpp"

#include <meshmaster/protocol/event_id.hpp>
#include <meshmaster/protocol/failpoint.hpp>
#include <meshmaster/protocol/frame.hpp>

#include <fmt/format.h>

namespace meshmaster::slave {

// Writes writing_batch (whole frames) in one gathered write: each state goes out from the buffer the
// worker handed over, between its frame's header and fields and the rest. With failpoints armed,
// every state_chunk frame goes out after slave.state_chunk.before_write: delay:<ms> makes a slave
// that crawls through its states (the frames queued behind them, heartbeats included, wait as long).
awaitable<boost::system::error_code> slave::impl::write_frames(std::shared_ptr<impl> self, shell::byte_stream& to) {
    const std::vector<std::span<const std::byte>> spans = self->writing_batch.frames.spans();
    if (!p::failpoints_armed()) {
        const shell::io_result r = co_await to.write_gathered(spans);
        co_return r.ec;
    }
    // Frame by frame. A header never straddles two spans: a state piece only ever sits inside a
    // frame's body, after its header.
    std::vector<std::span<const std::byte>> group;
    std::size_t frame_left = 0;  // bytes of the current frame not yet in `group`
    for (std::span<const std::byte> s : spans) {
        while (!s.empty()) {
            if (frame_left == 0 && s.size() >= p::frame_header_size) {
                const p::frame_header header = p::read_frame_header(s.data());
                if (header.event == static_cast<std::uint32_t>(p::event_id::state_chunk)) {
                    if (!group.empty()) {
                        const shell::io_result r = co_await to.write_gathered(group);
                        if (r.ec) co_return r.ec;
                        group.clear();
                    }
                    p::failpoint("slave.state_chunk.before_write");
                }
                frame_left = p::frame_header_size + header.body_size;
            }
            const std::size_t n = frame_left == 0 ? s.size() : std::min(frame_left, s.size());
            group.push_back(s.first(n));
            s = s.subspan(n);
            frame_left -= std::min(frame_left, n);
        }
    }
    if (group.empty()) co_return boost::system::error_code{};
    const shell::io_result r = co_await to.write_gathered(group);
    co_return r.ec;
}

awaitable<void> slave::impl::write_all(std::shared_ptr<impl> self) {
    // The connection this loop writes to, kept alive while a write is in flight on it.
    const std::shared_ptr<shell::byte_stream> to = self->link;
    while (self->core.has_output() && to->is_open()) {
        const auto failpoints = self->core.take_after_write();
        self->writing_batch = self->core.take_batch();
        const boost::system::error_code ec = co_await write_frames(self, *to);
        if (ec) {
            self->log("warn", fmt::format("write to the master failed: {}", ec.message()));
            to->close();
            break;
        }
        for (const auto name : failpoints) p::failpoint(name);
    }
    self->writing_batch = {};  // the states written are the worker's or the core's again alone
    self->writing = false;
    self->written.cancel();  // wakes read_frames() waiting for a goodbye to leave
    if (self->core.finished() && !self->core.has_output()) {
        // Over TLS too, a TCP shutdown and no close_notify: the goodbye is a protocol frame of its
        // own, so a cut cannot pass for the end of the conversation, and a TLS shutdown would
        // have to wait on the master beside the pending read.
        to->shutdown();
    }
}

awaitable<void> slave::impl::read_frames(shell::byte_stream& from) {
    while (true) {
        auto space = decoder.prepare(64 * 1024);
        const shell::io_result r = co_await from.read_some(space);
        if (r.ec) {
            log("warn", fmt::format("connection to the master lost: {}", r.ec.message()));
            co_return;
        }
        decoder.commit(r.bytes);
        while (true) {
            auto next = decoder.next();
            if (!next) {
                core.on_stream_error(next.error());
                break;
            }
            if (!*next) break;
            core.on_frame(**next);
            after_core();  // handlers see resume states while the frame is still in the buffer
        }
        after_core();
        if (core.close_reason()) {
            log("warn", fmt::format("closing the connection: {}", *core.close_reason()));
            // Give a goodbye error frame a moment (500 ms) to leave before closing: await the end
            // of the write loop, or the limit.
            asio::steady_timer limit(strand);
            limit.expires_after(std::chrono::milliseconds(500));
            while (writing && limit.expiry() > clock::now()) {
                co_await (written.async_wait(tuple_awaitable) || limit.async_wait(tuple_awaitable));
            }
            co_return;
        }
        if (core.finished() && !writing) co_return;
    }
}

// Until the handshake is done (or its deadline passes: then the connection is given up), then a
// heartbeat every interval the master's welcome set.
awaitable<void> slave::impl::heartbeats(clock::time_point handshake_deadline) {
    asio::steady_timer deadline(strand);
    deadline.expires_at(handshake_deadline);
    while (!core.authenticated()) {
        if (deadline.expiry() <= clock::now()) {
            log("warn", "the master did not complete the handshake in time");
            co_return;
        }
        co_await (authenticated.async_wait(tuple_awaitable) || deadline.async_wait(tuple_awaitable));
    }
    while (true) {
        asio::steady_timer timer(strand);
        timer.expires_after(core.heartbeat_interval());
        co_await timer.async_wait(use_awaitable);
        ++progress;
        core.tick(opts.progress ? opts.progress() : progress);
        flush();
    }
}

}  // namespace meshmaster::slave
