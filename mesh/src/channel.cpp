#include <meshmaster/mesh/channel.hpp>

#include <algorithm>
#include <cstring>

namespace meshmaster::mesh {

using std::chrono::nanoseconds;

std::size_t channel_config::segment_payload() const noexcept {
    const std::size_t fixed = header_size + (keyed ? tag_size : 0) + ack_frame_size(4) + data_frame_overhead(true);
    return max_datagram > fixed + 64 ? std::min<std::size_t>(max_datagram - fixed, 0xFFFF) : 64;
}

channel::channel(channel_config config)
    : cfg_(config), payload_(cfg_.segment_payload()), peer_edge_(cfg_.receive_window), rto_(cfg_.initial_rto) {}

// --- sending ------------------------------------------------------------------------------------

send_status channel::send(std::span<const std::byte> message) { return send(message, {}); }

send_status channel::send(std::span<const std::byte> head, std::span<const std::byte> body) {
    if (broken_) return send_status::failed;
    const std::size_t size = head.size() + body.size();
    if (size > cfg_.max_message_size || size > 0xFFFF'FFFFu) return send_status::too_large;
    if (queued_bytes_ >= cfg_.send_buffer) return send_status::buffer_full;
    const std::size_t n = std::max<std::size_t>(1, (size + payload_ - 1) / payload_);
    std::byte* bytes = store(size, base_ + segs_.size() + n - 1);
    if (!head.empty()) std::memcpy(bytes, head.data(), head.size());
    if (!body.empty()) std::memcpy(bytes + head.size(), body.data(), body.size());
    for (std::size_t i = 0; i < n; ++i) {
        out_segment& s = segs_.emplace_back();
        s.bytes = bytes + i * payload_;
        s.message_size = static_cast<std::uint32_t>(size);
        s.length = static_cast<std::uint32_t>(std::min(payload_, size - i * payload_));
        s.first = i == 0;
        s.last = i + 1 == n;
    }
    queued_bytes_ += size;
    ++stats_.messages_sent;
    return send_status::queued;
}

std::byte* channel::store(std::size_t size, std::uint64_t last_seq) {
    if (blocks_.empty() || blocks_.back().capacity - blocks_.back().used < size) {
        block b;
        if (size <= block_size && !spare_blocks_.empty()) {
            b = std::move(spare_blocks_.back());
            spare_blocks_.pop_back();
        } else {
            b.capacity = std::max(size, block_size);
            b.bytes = std::make_unique_for_overwrite<std::byte[]>(b.capacity);
        }
        b.used = 0;
        blocks_.push_back(std::move(b));
    }
    block& b = blocks_.back();
    std::byte* at = b.bytes.get() + b.used;
    b.used += size;
    b.last_seq = last_seq;
    return at;
}

// After the cumulative point moved: blocks whose segments are all acknowledged go (the newest one
// stays, emptied, for the messages to come).
void channel::release_blocks() {
    while (!blocks_.empty() && blocks_.front().last_seq < base_) {
        if (blocks_.size() == 1) {
            blocks_.front().used = 0;
            return;
        }
        if (blocks_.front().capacity == block_size && spare_blocks_.size() * block_size < cfg_.max_in_flight_bytes + block_size) {
            spare_blocks_.push_back(std::move(blocks_.front()));
        }
        blocks_.pop_front();
    }
}

void channel::acked(std::uint64_t seq, mono_time now, mono_time& newest_sent, bool& progress) {
    out_segment* s = seg(seq);
    if (!s || s->acked || s->transmissions == 0) return;
    s->acked = true;
    progress = true;
    if (!s->lost) {
        --in_flight_;
        in_flight_bytes_ -= s->length;
    }
    // Karn: only a segment sent once says how long a round trip takes, and when it was sent. An
    // ack of a retransmitted one may be for the first copy, late in a queue; taking the
    // retransmission's time would declare everything sent before it lost (RFC 8985 allows it
    // past min_rtt, but queues here are milliseconds deep where min_rtt is microseconds). Unless
    // the copy before was found lost by packets sent after it being acknowledged: then it is
    // gone, the ack is for the retransmission, and it tells how far delivery got. Without that,
    // a lost retransmission behind a full window (nothing new sent after it) waited for the
    // timer: at 10 % loss, most of the time lost to loss was such stalls.
    bool trusted = s->transmissions == 1;
    if (!trusted && s->lost_for_sure) {
        // Acknowledged sooner after the retransmission than any round trip takes: the copy before
        // arrived after all, late (the path reorders, or delays some datagrams more than others).
        // Widen the reordering window, as RFC 8985 does on DSACKs (reo_wnd_mult: one step per such
        // ack, back to a quarter of min_rtt after 16 repairs that were needed).
        if (now - s->last_sent < min_rtt_) {
            reorder_mult_ = std::min<std::uint32_t>(reorder_mult_ + 1, 64);
            needed_repairs_ = 0;
        } else {
            trusted = true;
            if (++needed_repairs_ >= 16) reorder_mult_ = 1;
        }
    }
    if (trusted) {
        newest_sent = std::max(newest_sent, s->last_sent);
        rack_packet_ = std::max(rack_packet_, s->packet);
    }
}

void channel::on_ack(const ack_frame& ack, mono_time now) {
    // An acknowledgement of something never sent is from a confused or stale peer: ignore it.
    if (ack.cumulative > next_new_) return;
    mono_time newest_sent{};
    bool progress = false;
    while (base_ < ack.cumulative && !segs_.empty()) {
        acked(base_, now, newest_sent, progress);
        queued_bytes_ -= segs_.front().length;
        if (segs_.front().last) ++messages_acked_;
        segs_.pop_front();
        ++base_;
    }
    release_blocks();
    sacked_.erase_below(base_);
    // Every ack repeats the ranges the receiver holds: only what is new in them is news.
    for (const auto& r : ack.ranges) {
        const std::uint64_t from = std::max(r.first, base_);
        const std::uint64_t to = std::min(r.first + r.count, next_new_);
        if (from >= to) continue;
        sacked_.insert_reporting_new(from, to, [&](std::uint64_t a, std::uint64_t b) {
            for (std::uint64_t q = a; q < b; ++q) acked(q, now, newest_sent, progress);
        });
    }
    if (ack.cumulative >= base_) peer_edge_ = ack.cumulative + ack.window;
    if (newest_sent != mono_time{}) {
        rtt_sample(now - newest_sent);
        if (newest_sent >= rack_sent_) {
            rack_sent_ = newest_sent;
            rack_rtt_ = now - newest_sent;
        }
    }
    if (progress) {
        failed_ = false;  // it answers again (a partition healed)
        // The path delivers again: the timer need not stay backed off. (With only the oldest
        // segment resent per expiry, several tail losses would otherwise cost 2^n timeouts.)
        backoff_ = 0;
        detect_losses(now);
    }
    if (peer_edge_ > next_new_) probe_at_.reset();
}

void channel::rtt_sample(nanoseconds r) {
    r = std::max(r, nanoseconds(1));
    min_rtt_ = std::min(min_rtt_, r);
    if (!srtt_) {
        srtt_ = r;
        rttvar_ = r / 2;
    } else {
        const nanoseconds delta = *srtt_ > r ? *srtt_ - r : r - *srtt_;
        rttvar_ = (3 * rttvar_ + delta) / 4;
        srtt_ = (7 * *srtt_ + r) / 8;
    }
    rto_ = std::clamp(*srtt_ + std::max(4 * rttvar_, nanoseconds(std::chrono::microseconds(100))), cfg_.min_rto, cfg_.max_rto);
    backoff_ = 0;
}

void channel::mark_lost(std::uint64_t seq, bool for_sure) {
    out_segment* s = seg(seq);
    if (!s || s->acked || s->lost) return;
    s->lost = true;
    s->lost_for_sure = for_sure;
    --in_flight_;
    in_flight_bytes_ -= s->length;
    lost_.push_back(seq);
}

// A quarter of the minimum round trip, times what reordering seen so far asked for, but never
// past the smoothed round trip (RFC 8985, 6.2).
nanoseconds channel::reorder_window() const noexcept {
    if (min_rtt_ == nanoseconds::max()) return nanoseconds(0);
    const nanoseconds w = min_rtt_ / 4 * reorder_mult_;
    return srtt_ ? std::min(w, *srtt_) : w;
}

// A transmission sent before the newest one known delivered is lost once three packets after it
// were delivered, or once it is older than that one by the reordering window, or (RFC 8985's
// timer: nothing else may come to tell, behind a full window, say) once a round trip and the
// reordering window have passed since it was sent. Packets sent in one batch share a send time;
// their order is their packet number.
void channel::detect_losses(mono_time now) {
    const nanoseconds reorder = reorder_window();
    while (!sent_order_.empty()) {
        const auto [seq, t] = sent_order_.front();
        if (!outstanding(sent_order_.front())) {
            sent_order_.pop_front();  // delivered, or superseded by a later transmission
            continue;
        }
        const out_segment* s = seg(seq);
        const bool before_delivered = s->packet < rack_packet_;
        // Counting packets assumes the path keeps their order: only until it was seen not to.
        const bool by_count = s->packet + 3 <= rack_packet_;
        if (t + reorder < rack_sent_ || by_count || (before_delivered && now - t >= rack_rtt_ + reorder)) {
            mark_lost(seq, true);
            sent_order_.pop_front();
            continue;
        }
        break;
    }
}

// When the oldest outstanding transmission, sent before one already delivered, is due to be called
// lost by the time rule above.
std::optional<mono_time> channel::rack_deadline() const {
    const transmission* oldest = oldest_outstanding();
    if (!oldest || seg(oldest->first)->packet >= rack_packet_) return std::nullopt;
    return oldest->second + rack_rtt_ + reorder_window();
}

const channel::transmission* channel::oldest_outstanding() const {
    for (const transmission& x : sent_order_) {
        if (outstanding(x)) return &x;
    }
    return nullptr;
}

bool channel::can_send_new() const {
    if (next_new_ >= base_ + segs_.size() || next_new_ >= peer_edge_ || in_flight_ >= cfg_.send_window) return false;
    // Bytes in flight are bounded too: big datagrams (on loopback, say) must not outrun the
    // receiver's socket buffer, where the kernel would drop them.
    return in_flight_ == 0 || in_flight_bytes_ + segs_[next_new_ - base_].length <= cfg_.max_in_flight_bytes;
}

std::optional<mono_time> channel::rto_deadline() const {
    const transmission* oldest = in_flight_ > 0 ? oldest_outstanding() : nullptr;
    if (!oldest) return std::nullopt;
    return oldest->second + std::min(cfg_.max_rto, rto_ * (std::int64_t{1} << std::min<std::uint32_t>(backoff_, 20)));
}

bool channel::write_segment(packet_writer& packet, std::uint64_t seq, mono_time now) {
    out_segment& s = segs_[seq - base_];
    data_frame f{.first = s.first, .last = s.last, .sequence = seq,
                 .message_size = s.first ? s.message_size : 0,
                 .bytes = std::span<const std::byte>(s.bytes, s.length)};
    if (!packet.data(f)) return false;
    if (s.transmissions++ == 0) {
        ++stats_.segments_sent;
        stats_.bytes_sent += s.length;
    } else {
        ++stats_.segments_retransmitted;
    }
    if (s.transmissions > cfg_.max_transmissions) failed_ = true;
    s.lost = false;
    s.last_sent = now;
    s.packet = packets_written_ + 1;  // this write()'s packet (counted once it wrote something)
    ++in_flight_;
    in_flight_bytes_ += s.length;
    sent_order_.emplace_back(seq, now);
    return true;
}

// --- receiving ----------------------------------------------------------------------------------

std::uint32_t channel::advertised_window() const noexcept {
    return cfg_.receive_window > undelivered_segments_ ? cfg_.receive_window - undelivered_segments_ : 0;
}

void channel::need_ack(bool immediately, mono_time now) {
    if (!ack_pending_) {
        ack_pending_ = true;
        ack_deadline_ = now + cfg_.ack_delay;
    }
    if (immediately) ack_now_ = true;
}

bool channel::accept_in_order(bool first, bool last, std::uint32_t size, std::span<const std::byte> bytes) {
    if (first) {
        if (assembling_ || size > cfg_.max_message_size) return false;
        assembling_ = true;
        assembling_size_ = size;
        assembling_segments_ = 0;
        if (assembly_.capacity() == 0 && !spare_.empty()) {
            assembly_ = std::move(spare_.back());  // a buffer handed back by recycle(): no allocation
            spare_.pop_back();
            spare_bytes_ -= assembly_.capacity();
        }
        assembly_.clear();
        // Room for the whole message up to 1 MiB at once; beyond, it grows as bytes arrive rather
        // than as claimed.
        assembly_.reserve(std::min<std::size_t>(size, std::size_t{1} << 20));
    } else if (!assembling_) {
        return false;
    }
    if (assembly_.size() + bytes.size() > assembling_size_) return false;
    assembly_.insert(assembly_.end(), bytes.begin(), bytes.end());
    ++assembling_segments_;
    if (!last) return true;
    if (assembly_.size() != assembling_size_) return false;
    stats_.bytes_received += assembly_.size();
    ++stats_.messages_received;
    delivered_.emplace_back(std::move(assembly_), assembling_segments_);
    undelivered_segments_ += assembling_segments_;
    assembly_ = {};
    assembling_ = false;
    return true;
}

bool channel::on_data(const data_frame& d, mono_time now) {
    if (broken_) return false;
    ++stats_.segments_received;
    const std::uint64_t seq = d.sequence;
    if (seq < cum_ || (seq - cum_ < ooo_.size() && ooo_[seq - cum_].present)) {
        ++stats_.duplicates_dropped;  // its ack was lost, or it was sent twice: say so at once
        need_ack(true, now);
        return true;
    }
    if (seq >= cum_ + advertised_window()) {
        ++stats_.beyond_window_dropped;  // a window probe, or a sender that ignores the window
        need_ack(true, now);
        return true;
    }
    if (seq != cum_) {
        hold(seq, d);
        need_ack(true, now);  // a gap: tell the sender now, so it can repair it now
        return true;
    }
    const bool had_gap = ooo_held_ > 0;
    if (!accept_in_order(d.first, d.last, d.message_size, d.bytes)) return !(broken_ = true);
    return advance(had_gap, d, now);
}

channel::data_outcome channel::on_data_direct(const data_frame& d, mono_time now) {
    if (broken_ || !d.first || !d.last || d.sequence != cum_ || assembling_ || !delivered_.empty() ||
        d.message_size != d.bytes.size() || d.message_size > cfg_.max_message_size) {
        return {.ok = on_data(d, now)};
    }
    // In order and whole, and nothing waits before it (so the window is open): it is delivered
    // as it stands.
    ++stats_.segments_received;
    ++stats_.messages_received;
    stats_.bytes_received += d.bytes.size();
    const bool had_gap = ooo_held_ > 0;
    if (!advance(had_gap, d, now)) return {.ok = false};
    return {.ok = true, .message = d.bytes};
}

// Keeps a segment beyond the gap, in a reused buffer (at most 4 MiB of them kept).
void channel::hold(std::uint64_t seq, const data_frame& d) {
    const std::size_t i = seq - cum_;
    if (i >= ooo_.size()) ooo_.resize(i + 1);
    in_segment& s = ooo_[i];
    if (s.bytes.capacity() == 0 && !segment_spare_.empty()) {
        s.bytes = std::move(segment_spare_.back());
        segment_spare_.pop_back();
        segment_spare_bytes_ -= s.bytes.capacity();
    }
    s.bytes.assign(d.bytes.begin(), d.bytes.end());
    s.present = true;
    s.first = d.first;
    s.last = d.last;
    s.message_size = d.message_size;
    ++ooo_held_;
    ooo_ranges_.insert(seq, seq + 1);
}

bool channel::advance(bool had_gap, const data_frame& d, mono_time now) {
    ++cum_;
    if (!ooo_.empty()) ooo_.pop_front();  // the slot of the segment just taken
    while (!ooo_.empty() && ooo_.front().present) {
        in_segment& s = ooo_.front();
        if (!accept_in_order(s.first, s.last, s.message_size, s.bytes)) return !(broken_ = true);
        --ooo_held_;
        if (segment_spare_bytes_ + s.bytes.capacity() <= (std::size_t{4} << 20)) {
            segment_spare_bytes_ += s.bytes.capacity();
            segment_spare_.push_back(std::move(s.bytes));
        }
        ooo_.pop_front();
        ++cum_;
    }
    if (had_gap) ooo_ranges_.erase_below(cum_);
    unacked_bytes_ += d.bytes.size() + data_frame_overhead(d.first);
    need_ack(had_gap || unacked_bytes_ >= 2 * cfg_.max_datagram, now);
    return true;
}

// At most 64 buffers of at most 1 MiB, 4 MiB in all: enough to reuse the buffers of a stream
// of messages up to 1 MiB without holding much memory for a peer that went quiet.
void channel::recycle(std::vector<std::byte>&& message) {
    const std::size_t size = message.capacity();
    if (spare_.size() < 64 && size > 0 && size <= (std::size_t{1} << 20) && spare_bytes_ + size <= (std::size_t{4} << 20)) {
        spare_bytes_ += size;
        spare_.push_back(std::move(message));
    }
}

std::optional<std::vector<std::byte>> channel::take_message() {
    if (delivered_.empty()) return std::nullopt;
    auto [message, segments] = std::move(delivered_.front());
    delivered_.pop_front();
    const std::uint32_t before = advertised_window();
    undelivered_segments_ -= segments;
    // The sender may be waiting on a closed (or nearly closed) window: tell it it opened.
    if (before <= cfg_.receive_window / 4 && advertised_window() > cfg_.receive_window / 4) {
        ack_pending_ = true;
        ack_now_ = true;
    }
    return std::move(message);
}

// --- output -------------------------------------------------------------------------------------

void channel::write_ack(packet_writer& packet, bool data_follows) {
    // Ranges of out-of-order segments, lowest first: the gaps between them are the oldest losses.
    std::size_t room_ranges = packet.room() >= ack_frame_size(0) ? (packet.room() - ack_frame_size(0)) / 6 : 0;
    if (data_follows) room_ranges = std::min<std::size_t>(room_ranges, 4);
    room_ranges = std::min(room_ranges, max_sack_ranges);
    ranges_.clear();
    for (const auto& [from, last] : ooo_ranges_.ranges()) {
        std::uint64_t first = from;
        while (first < last && ranges_.size() < room_ranges) {  // a range's count is 16 bits on the wire
            const auto count = static_cast<std::uint32_t>(std::min<std::uint64_t>(last - first, 0xFFFF));
            ranges_.push_back({first, count});
            first += count;
        }
        if (ranges_.size() == room_ranges) break;
    }
    const std::uint32_t window = advertised_window();
    if (!packet.ack(cum_, window, ranges_)) return;
    ack_pending_ = false;
    ack_now_ = false;
    unacked_bytes_ = 0;
}

bool channel::has_lost() {
    while (!lost_.empty()) {
        const out_segment* s = seg(lost_.front());
        if (s && !s->acked && s->lost) return true;
        lost_.pop_front();
    }
    return false;
}

bool channel::wants_output(mono_time now) const {
    if (ack_pending_ && (ack_now_ || now >= ack_deadline_)) return true;
    for (std::uint64_t seq : lost_) {
        const out_segment* s = seg(seq);
        if (s && !s->acked && s->lost) return true;
    }
    return can_send_new();
}

bool channel::write(packet_writer& packet, mono_time now) {
    const std::size_t frames = packet.frames();
    const bool data = has_lost() || can_send_new();
    if (ack_pending_ && (ack_now_ || now >= ack_deadline_ || data)) write_ack(packet, data);
    while (has_lost()) {
        if (!write_segment(packet, lost_.front(), now)) {
            const bool wrote = packet.frames() > frames;
            if (wrote) ++packets_written_;
            return wrote;
        }
        lost_.pop_front();
    }
    while (can_send_new() && write_segment(packet, next_new_, now)) ++next_new_;
    // A closed window: probe it after an RTO with the next segment.
    if (next_new_ < base_ + segs_.size() && next_new_ >= peer_edge_ && in_flight_ == 0 && !probe_at_) {
        probe_at_ = now + rto_;
    }
    const bool wrote = packet.frames() > frames;
    if (wrote) ++packets_written_;
    return wrote;
}

std::optional<mono_time> channel::next_deadline() const {
    std::optional<mono_time> at;
    auto earliest = [&](mono_time t) { at = at ? std::min(*at, t) : t; };
    if (ack_pending_) earliest(ack_deadline_);
    if (auto r = rto_deadline()) earliest(*r);
    if (auto r = rack_deadline()) earliest(*r);
    if (probe_at_) earliest(*probe_at_);
    return at;
}

void channel::on_timer(mono_time now) {
    if (ack_pending_ && now >= ack_deadline_) ack_now_ = true;
    if (auto deadline = rack_deadline(); deadline && now >= *deadline) detect_losses(now);
    if (auto deadline = rto_deadline(); deadline && now >= *deadline) {
        // Only the oldest outstanding segment is sent again (as TCP does): a timer that fired
        // because the round trip grew under load must not resend the whole window. If it was
        // really lost with the rest, its acknowledgement lets RACK find the others.
        ++stats_.rto_expirations;
        while (!sent_order_.empty()) {
            const transmission x = sent_order_.front();
            sent_order_.pop_front();
            if (outstanding(x)) {
                mark_lost(x.first, false);
                break;
            }
        }
        ++backoff_;
    }
    if (probe_at_ && now >= *probe_at_) {
        probe_at_.reset();
        peer_edge_ = std::max(peer_edge_, next_new_ + 1);  // one segment past the window
    }
}

}  // namespace meshmaster::mesh
