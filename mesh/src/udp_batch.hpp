// The node's datagram batching on its socket: outgoing datagrams are built in slots and leave in
// one sendmmsg(2) per flush (or per full batch), a run of same-sized datagrams to one peer going as
// one UDP GSO send where the kernel has it; incoming ones are read by recvmmsg(2), a GRO read cut
// back into its datagrams. Plain system calls on a non-blocking descriptor, no Asio: the driver
// (node.cpp) waits for readability and decides when to flush.
//
// Thread safety: none; used on the node's executor only.
#pragma once

#include "peer_table.hpp"

#include <meshmaster/mesh/node_types.hpp>
#include <meshmaster/mesh/wire.hpp>

#include <netinet/udp.h>
#include <sys/socket.h>

#include <array>
#include <cstddef>
#include <functional>
#include <span>
#include <string_view>
#include <vector>

namespace meshmaster::mesh {

class udp_batch {
public:
    using logger = std::function<void(std::string_view level, std::string_view message)>;
    using receiver = std::function<void(std::span<const std::byte> datagram, const peer_address& from)>;

    udp_batch(node_counters& counters, logger log) : counters_(counters), log_(std::move(log)) {}

    /// The socket (non-blocking) and whether UDP GSO / GRO are on for it.
    void attach(int fd, bool gso, bool gro) noexcept { fd_ = fd, gso_ = gso, gro_ = gro; }
    /// The largest datagram sent or taken (the configured size or the loopback one).
    void set_slot_size(std::size_t slot) noexcept { slot_ = slot; }
    /// Tests only: every n-th datagram queued is dropped (node_options::test_drop_every); 0: none.
    void set_drop_every(std::size_t n) noexcept { drop_every_ = n; }
    [[nodiscard]] bool gso() const noexcept { return gso_; }
    [[nodiscard]] bool gro() const noexcept { return gro_; }
    /// Whether datagrams of this size to one peer can go as one GSO send.
    [[nodiscard]] bool gso_worth(std::size_t datagram) const noexcept { return gso_ && datagram * 2 <= gso_max_bytes; }

    /// The next free slot, `size` bytes of it, for a datagram to build.
    std::span<std::byte> slot(std::size_t size);
    /// Queues the datagram built in the current slot for `to` (`p`: its peer, for the counters);
    /// a full batch is sent at once.
    void queue(std::span<const std::byte> datagram, const peer_address& to, peer* p);
    /// Sends what is queued. A full socket buffer drops the rest like the network would.
    void send();

    /// Reads one batch, handing each datagram to `on`; how many reads held something.
    std::size_t receive(const receiver& on, const bool& closed);

    static constexpr std::size_t batch_max = 64;
    static constexpr std::size_t in_batch = 32;

private:
    static constexpr std::size_t gso_max_segments = 64;  // UDP_MAX_SEGMENTS
    static constexpr std::size_t gso_max_bytes = 65000;  // one IP packet's worth
    std::size_t build_groups(std::size_t from);

    node_counters& counters_;
    logger log_;
    int fd_ = -1;
    bool gso_ = false;  // UDP_SEGMENT works here (probed at start; off after a refusal)
    bool gro_ = false;  // UDP_GRO is on: a read may hold several datagrams of one size
    std::size_t slot_ = 2048;
    std::size_t drop_every_ = 0, queued_ = 0;

    std::vector<std::byte> out_storage_;
    std::array<mmsghdr, batch_max> out_msgs_{};
    std::array<iovec, batch_max> out_iov_{};
    std::array<sockaddr_storage, batch_max> out_addr_{};
    std::array<socklen_t, batch_max> out_addr_size_{};
    std::array<peer*, batch_max> out_peer_{};
    std::array<std::size_t, batch_max> group_first_{}, group_size_{};  // datagrams per mmsghdr
    std::array<std::array<char, CMSG_SPACE(sizeof(std::uint16_t))>, batch_max> out_cmsg_{};
    std::size_t out_count_ = 0;

    std::vector<std::byte> in_storage_;
    std::array<mmsghdr, in_batch> in_msgs_{};
    std::array<iovec, in_batch> in_iov_{};
    std::array<sockaddr_storage, in_batch> in_addr_{};
    std::array<std::array<char, CMSG_SPACE(sizeof(int))>, in_batch> in_cmsg_{};
};

}  // namespace meshmaster::mesh
