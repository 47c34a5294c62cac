// The reliability core of the mesh: one channel per peer incarnation, sans-I/O. Messages handed
// to send() reach the peer's take_message() exactly once and in order, whatever the network
// loses, duplicates, reorders or delays — or the channel reports that the peer stopped answering.
//
// How (each piece after its RFC, on segments rather than bytes):
//  - messages are cut into segments with consecutive sequence numbers; the receiver keeps
//    out-of-order segments within its window and delivers complete messages in order, dropping
//    duplicates by sequence number (never by a time window);
//  - acknowledgements are cumulative plus selective (SACK ranges), ride on data and responses
//    when there are any, and go alone only after `ack_delay`, at once on a gap or a duplicate;
//  - loss is found as QUIC does (RFC 9002, after RACK, RFC 8985): a segment is lost once one sent
//    three packets after it, or a quarter of the minimum RTT after it, was acknowledged;
//    the retransmission timer follows RFC 6298 (SRTT, RTTVAR, Karn) with a small floor, resends
//    only the oldest segment and backs off exponentially;
//  - flow control: the receiver advertises how many segments beyond the cumulative point it takes,
//    counting complete messages the application has not taken yet, so a slow reader stops a fast
//    sender instead of growing; a closed window is probed after the RTO. There is deliberately no
//    loss-based congestion control: meshes run inside a data centre, and random loss must not
//    collapse the throughput (goodput at 10 % loss is a goal).
//
// Memory per channel: at most `receive_window` out-of-order or untaken segments, one message
// being assembled (≤ max_message_size) and the sender's queue (≤ send_buffer, refused beyond).
//
// Thread safety: none; one thread drives a channel. Time is passed in and never goes backwards.
#pragma once

#include <meshmaster/mesh/range_set.hpp>
#include <meshmaster/mesh/wire.hpp>

#include <chrono>
#include <cstdint>
#include <deque>
#include <memory>
#include <optional>
#include <span>
#include <utility>
#include <vector>

namespace meshmaster::mesh {

using mono_time = std::chrono::nanoseconds;

struct channel_config {
    std::size_t max_datagram = 1400;  ///< whole datagram, header and tag included
    bool keyed = true;                ///< datagrams carry a tag (less room for frames)
    std::uint32_t receive_window = 16384;  ///< segments held for the application at most
    std::uint32_t send_window = 16384;     ///< segments in flight at most
    std::uint64_t max_in_flight_bytes = std::uint64_t{2} << 20;  ///< and bytes (fits a receive buffer)
    std::uint64_t max_message_size = std::uint64_t{16} << 20;
    /// Bytes queued before send() refuses. Enough to keep max_in_flight_bytes going; more only
    /// lets a sender run further ahead, and bytes queued that far ahead are out of the CPU's
    /// caches when they go out (with 64 MiB, loopback throughput was 60 % of what 8 MiB gives:
    /// 64 B one-way 10.3M against 17.5M msgs/s, 64 KiB 2.15 against 3.37 GB/s; mesh_peer, pinned).
    std::uint64_t send_buffer = std::uint64_t{8} << 20;
    /// The RTO's floor: above the delayed-ack time plus a loaded round trip in a data centre. An
    /// early expiry costs one segment sent again (only the oldest is resent); a late one stalls
    /// a stream behind a lost tail (200k × 64 B at 10 % loss between namespaces: a median of
    /// ×0.59 of lossless goodput with a 5 ms floor, ×0.76 with 2 ms).
    std::chrono::nanoseconds min_rto = std::chrono::milliseconds(2);
    std::chrono::nanoseconds initial_rto = std::chrono::milliseconds(100);
    std::chrono::nanoseconds max_rto = std::chrono::seconds(1);
    std::chrono::nanoseconds ack_delay = std::chrono::milliseconds(1);
    std::uint32_t max_transmissions = 30;  ///< of one segment before the peer counts as gone

    /// Bytes of message in one full segment (datagram minus header, tag, a small ack, frame header).
    [[nodiscard]] std::size_t segment_payload() const noexcept;
};

enum class send_status : std::uint8_t { queued, too_large, buffer_full, failed };

struct channel_stats {
    std::uint64_t messages_sent = 0, messages_received = 0;
    std::uint64_t segments_sent = 0, segments_retransmitted = 0, segments_received = 0;
    std::uint64_t duplicates_dropped = 0, beyond_window_dropped = 0;
    std::uint64_t bytes_sent = 0, bytes_received = 0;  ///< message bytes, first transmissions
    std::uint64_t rto_expirations = 0;
};

class channel {
public:
    explicit channel(channel_config config);

    // --- sending --------------------------------------------------------------------------------
    /// Queues a message (copied). Refused when larger than max_message_size, when the queue is
    /// past send_buffer (the caller waits for queued_bytes() to fall), or after broken().
    send_status send(std::span<const std::byte> message);
    /// The same for a message in two parts (a header and a payload), copied once.
    send_status send(std::span<const std::byte> head, std::span<const std::byte> body);
    [[nodiscard]] std::uint64_t queued_bytes() const noexcept { return queued_bytes_; }
    /// Nothing waits to be sent or acknowledged.
    [[nodiscard]] bool idle() const noexcept { return segs_.empty(); }
    /// Messages queued so far, and how many of them the peer has acknowledged whole (in order):
    /// message n (counting from 1) is delivered once messages_acked() >= n.
    [[nodiscard]] std::uint64_t messages_queued() const noexcept { return stats_.messages_sent; }
    [[nodiscard]] std::uint64_t messages_acked() const noexcept { return messages_acked_; }

    // --- receiving ------------------------------------------------------------------------------
    void on_ack(const ack_frame& ack, mono_time now);
    /// False if the segment breaks the protocol (a message larger than allowed, a segment that
    /// does not fit the message it continues): the peer is broken and the channel with it.
    bool on_data(const data_frame& data, mono_time now);
    /// on_data() without a copy where it can: a segment that is a whole message, next in order
    /// with no message waiting before it, is returned (its bytes are the caller's, in the
    /// datagram) and counts as taken. Messages that segment completes beyond it (held out of
    /// order) wait for take_message() as usual. The receive path of most small messages.
    struct data_outcome {
        bool ok = true;  ///< false: as on_data() returning false
        std::optional<std::span<const std::byte>> message;
    };
    data_outcome on_data_direct(const data_frame& data, mono_time now);
    /// The next complete message, in order.
    std::optional<std::vector<std::byte>> take_message();
    [[nodiscard]] std::size_t messages_ready() const noexcept { return delivered_.size(); }
    /// Hands a taken message's buffer back, to hold a later message without an allocation.
    void recycle(std::vector<std::byte>&& message);

    // --- output ---------------------------------------------------------------------------------
    /// Whether write() would put something in a packet now.
    [[nodiscard]] bool wants_output(mono_time now) const;
    /// Appends frames to `packet` (acknowledgement first, then retransmissions, then new
    /// segments) while they fit; true if it wrote anything.
    bool write(packet_writer& packet, mono_time now);
    /// When on_timer() has work (a delayed ack, a retransmission, a window probe); nullopt: none.
    [[nodiscard]] std::optional<mono_time> next_deadline() const;
    void on_timer(mono_time now);

    // --- health ---------------------------------------------------------------------------------
    /// A segment went unacknowledged through max_transmissions: the peer is gone or cut off. The
    /// channel keeps retransmitting (at max_rto) and clears this when acknowledgements return, so
    /// a healed partition loses nothing; what to do meanwhile is the node's call.
    [[nodiscard]] bool failed() const noexcept { return failed_; }
    [[nodiscard]] bool broken() const noexcept { return broken_; }  ///< the peer broke the protocol
    [[nodiscard]] std::optional<std::chrono::nanoseconds> srtt() const noexcept { return srtt_; }
    [[nodiscard]] std::chrono::nanoseconds rto() const noexcept { return rto_; }
    [[nodiscard]] const channel_stats& stats() const noexcept { return stats_; }
    [[nodiscard]] std::uint64_t in_flight() const noexcept { return in_flight_; }
    /// The references frame_reader widens 32-bit sequence numbers against: data frames against
    /// the next sequence this side expects, ack frames against the oldest it has not seen acked.
    [[nodiscard]] std::uint64_t data_reference() const noexcept { return cum_; }
    [[nodiscard]] std::uint64_t ack_reference() const noexcept { return base_; }
    /// Segments held for the application (out of order, or complete but not taken): bounded by
    /// receive_window plus one message.
    [[nodiscard]] std::size_t held_segments() const noexcept { return ooo_held_ + undelivered_segments_; }

private:
    struct out_segment {
        const std::byte* bytes = nullptr;  // in a block of blocks_
        std::uint32_t message_size = 0;
        std::uint32_t length = 0;
        bool first = false, last = false;
        bool acked = false, lost = false;
        bool lost_for_sure = false;  // its last loss was found by later packets, not by the timer
        std::uint16_t transmissions = 0;
        mono_time last_sent{};
        std::uint64_t packet = 0;  // which write() carried its last transmission
    };
    struct in_segment {
        bool present = false;
        bool first = false, last = false;
        std::uint32_t message_size = 0;
        std::vector<std::byte> bytes;
    };

    out_segment* seg(std::uint64_t seq) { return seq >= base_ && seq < base_ + segs_.size() ? &segs_[seq - base_] : nullptr; }
    const out_segment* seg(std::uint64_t seq) const {
        return seq >= base_ && seq < base_ + segs_.size() ? &segs_[seq - base_] : nullptr;
    }
    using transmission = std::pair<std::uint64_t, mono_time>;  // (seq, when): an entry of sent_order_
    // The transmission is still waiting for its fate: not acknowledged, not declared lost, and not
    // superseded by a later transmission of the same segment.
    [[nodiscard]] bool outstanding(const transmission& x) const {
        const out_segment* s = seg(x.first);
        return s && !s->acked && !s->lost && s->last_sent == x.second;
    }
    [[nodiscard]] const transmission* oldest_outstanding() const;
    void acked(std::uint64_t seq, mono_time now, mono_time& newest_sent, bool& progress);
    void rtt_sample(std::chrono::nanoseconds r);
    void detect_losses(mono_time now);
    [[nodiscard]] std::chrono::nanoseconds reorder_window() const noexcept;
    [[nodiscard]] std::optional<mono_time> rack_deadline() const;
    void mark_lost(std::uint64_t seq, bool for_sure);  // for_sure: found by RACK, not by the timer
    [[nodiscard]] bool can_send_new() const;
    [[nodiscard]] std::optional<mono_time> rto_deadline() const;
    bool write_segment(packet_writer& packet, std::uint64_t seq, mono_time now);
    bool accept_in_order(bool first, bool last, std::uint32_t size, std::span<const std::byte> bytes);
    bool advance(bool had_gap, const data_frame& d, mono_time now);  // past an in-order segment
    [[nodiscard]] std::uint32_t advertised_window() const noexcept;
    void write_ack(packet_writer& packet, bool data_follows);
    bool has_lost();  // pops stale entries: true if a segment waits for retransmission
    void need_ack(bool now_, mono_time now);

    channel_config cfg_;
    std::size_t payload_;
    bool failed_ = false;
    bool broken_ = false;
    channel_stats stats_;

    // Message bytes until their segments are acknowledged. Segments leave strictly in sequence
    // order (cumulatively), so the bytes live in a FIFO of blocks: one copy per message and no
    // allocation per message; a block goes once its last segment is acknowledged.
    struct block {
        std::unique_ptr<std::byte[]> bytes;
        std::size_t capacity = 0, used = 0;
        std::uint64_t last_seq = 0;  // the newest segment in it
    };
    static constexpr std::size_t block_size = std::size_t{256} << 10;
    std::byte* store(std::size_t size, std::uint64_t last_seq);
    void release_blocks();
    std::deque<block> blocks_;
    // Emptied block_size blocks, kept for the next ones: a stream of large messages would
    // otherwise take fresh pages from the kernel for every block (page faults, not copies, were
    // the sender's cost). Enough for the bytes in flight.
    std::vector<block> spare_blocks_;

    // sender
    std::deque<out_segment> segs_;  // sequences base_ .. base_ + size - 1
    std::uint64_t base_ = 0;        // oldest not yet acknowledged cumulatively
    std::uint64_t next_new_ = 0;    // first never sent
    std::uint64_t peer_edge_;       // may send sequences below this (the peer's window)
    std::uint64_t queued_bytes_ = 0;
    std::uint64_t messages_acked_ = 0;
    std::uint64_t in_flight_ = 0;   // sent, not acknowledged, not declared lost
    std::uint64_t in_flight_bytes_ = 0;
    range_set sacked_;              // selectively acknowledged beyond base_
    std::deque<std::uint64_t> lost_;                                  // to retransmit, oldest first
    std::deque<transmission> sent_order_;  // by transmission; stale entries are skipped, popped lazily
    std::optional<std::chrono::nanoseconds> srtt_;
    std::chrono::nanoseconds rttvar_{};
    std::chrono::nanoseconds rto_;
    std::chrono::nanoseconds min_rtt_ = std::chrono::nanoseconds::max();
    std::uint32_t backoff_ = 0;
    mono_time rack_sent_{};          // newest transmission time known delivered
    std::chrono::nanoseconds rack_rtt_{};  // and the round trip it took
    std::uint32_t reorder_mult_ = 1;       // grows with each retransmission found needless
    std::uint32_t needed_repairs_ = 0;     // retransmissions found needed since the last needless one
    std::uint64_t packets_written_ = 0;  // write() calls that wrote something: a packet counter
    std::uint64_t rack_packet_ = 0;      // the newest packet known delivered (first transmissions)
    std::optional<mono_time> probe_at_;  // zero window: when to probe

    // receiver
    std::uint64_t cum_ = 0;  // next sequence expected
    // Out-of-order segments by position: ooo_[i] is sequence cum_ + i (ooo_[0], the gap, is
    // never present). Under loss nearly every segment passes through here, so it is a deque (no
    // tree, no node per segment) and segment buffers are reused.
    std::deque<in_segment> ooo_;
    std::size_t ooo_held_ = 0;  // present in ooo_
    range_set ooo_ranges_;      // the same sequences, as the SACK ranges to send
    std::vector<std::vector<std::byte>> segment_spare_;  // emptied segment buffers
    std::size_t segment_spare_bytes_ = 0;
    void hold(std::uint64_t seq, const data_frame& d);
    bool assembling_ = false;
    std::uint32_t assembling_size_ = 0;
    std::uint32_t assembling_segments_ = 0;
    std::vector<std::byte> assembly_;
    std::vector<std::vector<std::byte>> spare_;  // recycled message buffers (see recycle())
    std::size_t spare_bytes_ = 0;
    std::deque<std::pair<std::vector<std::byte>, std::uint32_t>> delivered_;  // message, its segments
    std::uint32_t undelivered_segments_ = 0;
    std::size_t unacked_bytes_ = 0;  // received since the last ack was sent
    bool ack_pending_ = false;
    bool ack_now_ = false;
    mono_time ack_deadline_{};
    std::vector<sack_range> ranges_;  // scratch for write_ack
};

}  // namespace meshmaster::mesh
