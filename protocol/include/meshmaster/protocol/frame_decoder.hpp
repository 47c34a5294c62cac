// Incremental frame decoder: bytes in, in any split, whole frames out.
//
// Two ways to give it bytes:
//   - zero-copy, for sockets: `prepare(n)` hands out writable space inside the decoder's buffer,
//     the socket reads into it, `commit(bytes_read)` makes them visible;
//   - `feed(bytes)`, which copies (tests, fuzzing, bytes that arrived elsewhere).
// Then call `next()` until it yields no frame. A frame's body is a view into the buffer — the
// single copy between the socket and the handler is the socket read itself.
//
// The maximum body size is enforced from the header, before the buffer grows for the body, so a
// hostile length (0xFFFFFFFF) costs nothing. Errors are sticky: once the stream is known to be
// bad (frame_too_large), every later `next()` repeats the error; close the connection.
//
// Memory: the buffer grows to the largest frame seen (header + body, at most max + 8 bytes) and
// is reused; in steady state decoding allocates nothing.
//
// Thread safety: none; one decoder per connection, used from one thread (the connection's strand).
#pragma once

#include <meshmaster/protocol/frame.hpp>
#include <meshmaster/protocol/result.hpp>

#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <span>

namespace meshmaster::protocol {

class frame_decoder {
public:
    explicit frame_decoder(std::size_t max_body_size = default_max_body_size);

    frame_decoder(frame_decoder&&) noexcept = default;
    frame_decoder& operator=(frame_decoder&&) noexcept = default;

    /// Writable space for at least `min_size` more bytes (more if the buffer has it). Invalidates
    /// earlier frame views. Follow with `commit`.
    [[nodiscard]] std::span<std::byte> prepare(std::size_t min_size);
    /// Makes `n` bytes written into the last `prepare` span part of the stream.
    void commit(std::size_t n) noexcept;

    /// Appends a copy of `bytes` to the stream. Invalidates earlier frame views.
    void feed(std::span<const std::byte> bytes);

    /// The next whole frame, or nothing when more bytes are needed. Invalidates earlier frame views.
    /// Fails with `frame_too_large` when a header announces more than the maximum.
    [[nodiscard]] result<std::optional<frame_view>> next();

    /// Call when the peer closed the stream: fails with `truncated` if a partial frame is buffered,
    /// or with the sticky error if the stream already failed.
    [[nodiscard]] result<void> finish() const;

    /// What is buffered of a frame that is not whole yet: the bytes received of it and, once its
    /// header is in, its whole size (header included) and event id.
    struct partial_frame {
        std::size_t received = 0;
        std::optional<std::size_t> size;
        std::optional<std::uint32_t> event;
    };
    /// The frame the stream stopped in the middle of, if any (say why a closed stream was cut).
    [[nodiscard]] std::optional<partial_frame> partial() const noexcept;

    /// Bytes received but not yet returned as frames.
    [[nodiscard]] std::size_t buffered() const noexcept { return end_ - begin_; }
    /// Bytes the buffer currently holds room for (for memory accounting and tests).
    [[nodiscard]] std::size_t capacity() const noexcept { return capacity_; }
    [[nodiscard]] std::size_t max_body_size() const noexcept { return max_body_size_; }

private:
    // Makes room for `n` bytes after end_, compacting or growing the buffer.
    void reserve_tail(std::size_t n);

    std::unique_ptr<std::byte[]> storage_;
    std::size_t capacity_ = 0;
    std::size_t begin_ = 0;  // first byte not yet returned as part of a frame
    std::size_t end_ = 0;    // one past the last received byte
    std::size_t max_body_size_;
    errc failed_ = errc::ok;
};

}  // namespace meshmaster::protocol
