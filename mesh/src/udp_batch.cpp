#include "udp_batch.hpp"

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <string>

namespace meshmaster::mesh {

std::span<std::byte> udp_batch::slot(std::size_t size) {
    if (out_storage_.size() < batch_max * slot_) out_storage_.resize(batch_max * slot_);
    return std::span<std::byte>(out_storage_).subspan(out_count_ * slot_, size);
}

void udp_batch::queue(std::span<const std::byte> d, const peer_address& to, peer* p) {
    if (drop_every_ > 0 && ++queued_ % drop_every_ == 0) return;  // lost on the way (tests); its slot is reused
    const std::size_t i = out_count_++;
    out_iov_[i] = {const_cast<std::byte*>(d.data()), d.size()};
    std::memcpy(&out_addr_[i], &to.raw, to.size);
    out_addr_size_[i] = to.size;
    out_peer_[i] = p;
    if (out_count_ == batch_max) send();
}

// Groups datagrams from `from` on into mmsghdrs: a run to one address, each of the run's first size
// but the last, within the GSO limits, is one; anything else goes alone. With UDP GSO such a run
// goes down the stack as one: the kernel cuts it, or the NIC does, or on loopback and veth a
// receiver with GRO takes it whole.
std::size_t udp_batch::build_groups(std::size_t from) {
    std::size_t m = 0;
    for (std::size_t i = from; i < out_count_; ++m) {
        const std::size_t size = out_iov_[i].iov_len;
        std::size_t n = 1, total = size;
        if (out_peer_[i] && gso_worth(size)) {
            while (i + n < out_count_ && n < gso_max_segments && out_peer_[i + n] == out_peer_[i] &&
                   out_iov_[i + n - 1].iov_len == size && out_iov_[i + n].iov_len <= size &&
                   total + out_iov_[i + n].iov_len <= gso_max_bytes && out_addr_size_[i + n] == out_addr_size_[i] &&
                   std::memcmp(&out_addr_[i + n], &out_addr_[i], out_addr_size_[i]) == 0) {
                total += out_iov_[i + n].iov_len;
                ++n;
            }
        }
        msghdr& h = out_msgs_[m].msg_hdr;
        h = {};
        h.msg_name = &out_addr_[i];
        h.msg_namelen = out_addr_size_[i];
        h.msg_iov = &out_iov_[i];
        h.msg_iovlen = n;
        if (n > 1) {
            h.msg_control = out_cmsg_[m].data();
            h.msg_controllen = out_cmsg_[m].size();
            cmsghdr* c = CMSG_FIRSTHDR(&h);
            c->cmsg_level = SOL_UDP;
            c->cmsg_type = UDP_SEGMENT;
            c->cmsg_len = CMSG_LEN(sizeof(std::uint16_t));
            const auto segment = static_cast<std::uint16_t>(size);
            std::memcpy(CMSG_DATA(c), &segment, sizeof segment);
        }
        group_first_[m] = i;
        group_size_[m] = n;
        i += n;
    }
    return m;
}

void udp_batch::send() {
    std::size_t groups = build_groups(0), done = 0;
    while (done < groups) {
        const int r = ::sendmmsg(fd_, out_msgs_.data() + done, static_cast<unsigned>(groups - done), 0);
        if (r < 0) {
            if (errno == EINTR) continue;
            // A full socket buffer drops the rest like the network would: the channels repair
            // reliable data, and unreliable data was allowed to be lost.
            if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) {
                for (std::size_t g = done; g < groups; ++g) counters_.send_errors += group_size_[g];
                break;
            }
            // A device without checksum offload, or a path MTU below the segment size, refuses
            // GSO: from here on every datagram goes alone.
            if (group_size_[done] > 1 && (errno == EIO || errno == EINVAL)) {
                gso_ = false;
                if (log_) log_("warn", "mesh: UDP GSO refused (" + std::string(std::strerror(errno)) + "); sending datagrams one by one");
                groups = build_groups(group_first_[done]);  // what is left, regrouped from the first mmsghdr
                done = 0;
                continue;
            }
            // Any other error is this message's own (a firewall's EPERM, an unreachable address):
            // it alone is dropped, and the batch goes on.
            counters_.send_errors += group_size_[done];
            ++done;
            continue;
        }
        for (std::size_t g = done; g < done + static_cast<std::size_t>(r); ++g) {
            if (group_size_[g] > 1) ++counters_.gso_sends;
            for (std::size_t i = group_first_[g]; i < group_first_[g] + group_size_[g]; ++i) {
                if (peer* p = out_peer_[i]) {
                    ++p->packets_out;
                    p->bytes_out += out_iov_[i].iov_len;
                }
            }
        }
        done += static_cast<std::size_t>(r);
    }
    out_count_ = 0;
}

std::size_t udp_batch::receive(const receiver& on, const bool& closed) {
    // With GRO a read may hold up to 64 KiB of datagrams of one size.
    const std::size_t slot = std::max<std::size_t>(slot_, gro_ ? 65536 : 2048);
    if (in_storage_.size() < in_batch * slot) in_storage_.resize(in_batch * slot);
    for (std::size_t i = 0; i < in_batch; ++i) {
        in_iov_[i] = {in_storage_.data() + i * slot, slot};
        in_msgs_[i].msg_hdr = {};
        in_msgs_[i].msg_hdr.msg_name = &in_addr_[i];
        in_msgs_[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
        in_msgs_[i].msg_hdr.msg_iov = &in_iov_[i];
        in_msgs_[i].msg_hdr.msg_iovlen = 1;
        if (gro_) {
            in_msgs_[i].msg_hdr.msg_control = in_cmsg_[i].data();
            in_msgs_[i].msg_hdr.msg_controllen = in_cmsg_[i].size();
        }
    }
    const int r = ::recvmmsg(fd_, in_msgs_.data(), in_batch, MSG_DONTWAIT, nullptr);
    if (r <= 0) return 0;
    for (int i = 0; i < r && !closed; ++i) {
        auto& h = in_msgs_[static_cast<std::size_t>(i)].msg_hdr;
        if (h.msg_flags & MSG_TRUNC) {  // larger than our datagram size: not from a peer of ours
            ++counters_.truncated;
            continue;
        }
        peer_address from;
        std::memcpy(&from.raw, h.msg_name, h.msg_namelen);
        from.size = h.msg_namelen;
        const std::span<const std::byte> read(static_cast<const std::byte*>(h.msg_iov->iov_base),
                                              in_msgs_[static_cast<std::size_t>(i)].msg_len);
        // Coalesced by GRO: the datagrams are `segment` bytes each, the last maybe fewer.
        std::size_t segment = read.size();
        for (cmsghdr* c = gro_ ? CMSG_FIRSTHDR(&h) : nullptr; c; c = CMSG_NXTHDR(&h, c)) {
            if (c->cmsg_level == SOL_UDP && c->cmsg_type == UDP_GRO) {
                int size = 0;
                std::memcpy(&size, CMSG_DATA(c), sizeof size);
                if (size > 0) segment = static_cast<std::size_t>(size);
            }
        }
        if (segment < read.size()) ++counters_.gro_reads;
        for (std::size_t at = 0; at < read.size() && !closed; at += segment) {
            on(read.subspan(at, std::min(segment, read.size() - at)), from);
        }
    }
    return static_cast<std::size_t>(r);
}

}  // namespace meshmaster::mesh
