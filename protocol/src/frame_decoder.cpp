#include <meshmaster/protocol/frame_decoder.hpp>

#include <algorithm>
#include <cstring>

namespace meshmaster::protocol {

namespace {
// The first buffer is sized for typical control frames; it grows with the largest frame seen. Small,
// so a thousand idle connections cost little.
constexpr std::size_t initial_capacity = 4 * 1024;
}  // namespace

frame_decoder::frame_decoder(std::size_t max_body_size) : max_body_size_(max_body_size) {}

void frame_decoder::reserve_tail(std::size_t n) {
    if (capacity_ - end_ >= n) return;
    const std::size_t live = end_ - begin_;
    if (capacity_ - live >= n) {
        // Enough room overall: slide the unconsumed bytes to the front instead of growing.
        std::memmove(storage_.get(), storage_.get() + begin_, live);
    } else {
        std::size_t grown = std::max(initial_capacity, capacity_);
        while (grown - live < n) grown *= 2;
        auto bigger = std::make_unique_for_overwrite<std::byte[]>(grown);
        if (live != 0) std::memcpy(bigger.get(), storage_.get() + begin_, live);
        storage_ = std::move(bigger);
        capacity_ = grown;
    }
    begin_ = 0;
    end_ = live;
}

std::span<std::byte> frame_decoder::prepare(std::size_t min_size) {
    reserve_tail(std::max<std::size_t>(min_size, 1));
    return {storage_.get() + end_, capacity_ - end_};
}

void frame_decoder::commit(std::size_t n) noexcept { end_ += std::min(n, capacity_ - end_); }

void frame_decoder::feed(std::span<const std::byte> bytes) {
    if (bytes.empty()) return;
    reserve_tail(bytes.size());
    std::memcpy(storage_.get() + end_, bytes.data(), bytes.size());
    end_ += bytes.size();
}

result<std::optional<frame_view>> frame_decoder::next() {
    if (failed_ != errc::ok) return fail(failed_);
    if (end_ - begin_ < frame_header_size) return std::optional<frame_view>{};
    const frame_header header = read_frame_header(storage_.get() + begin_);
    if (header.body_size > max_body_size_) {
        failed_ = errc::frame_too_large;
        return fail(failed_);
    }
    const std::size_t whole = frame_header_size + header.body_size;
    if (end_ - begin_ < whole) {
        // Make room for the rest of this frame now (its size is checked above), so that the next
        // prepare() can read it in one go and the frame ends up contiguous.
        if (capacity_ - begin_ < whole) reserve_tail(whole - (end_ - begin_));
        return std::optional<frame_view>{};
    }
    frame_view frame{header.event, {storage_.get() + begin_ + frame_header_size, header.body_size}};
    begin_ += whole;
    if (begin_ == end_) begin_ = end_ = 0;  // the frame's bytes stay in place until the next call
    return std::optional<frame_view>{frame};
}

std::optional<frame_decoder::partial_frame> frame_decoder::partial() const noexcept {
    const std::size_t live = end_ - begin_;
    if (live == 0) return std::nullopt;
    if (live < frame_header_size) return partial_frame{.received = live};
    const frame_header header = read_frame_header(storage_.get() + begin_);
    const std::size_t whole = frame_header_size + std::size_t{header.body_size};
    if (live >= whole) return std::nullopt;  // a whole frame: next() returns it
    return partial_frame{.received = live, .size = whole, .event = header.event};
}

result<void> frame_decoder::finish() const {
    if (failed_ != errc::ok) return fail(failed_);
    if (end_ != begin_) return fail(errc::truncated);
    return {};
}

}  // namespace meshmaster::protocol
