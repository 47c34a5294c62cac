#include "checkpoint_store.hpp"

#include <boost/endian/conversion.hpp>

#include <fmt/format.h>

#include <algorithm>
#include <array>
#include <cerrno>
#include <charconv>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <stdexcept>
#include <sys/stat.h>
#include <sys/uio.h>
#include <unistd.h>
#include <zlib.h>

namespace meshmaster::master {

namespace {

constexpr char log_magic[4] = {'M', 'M', 'C', 'L'};
constexpr std::uint32_t log_version = 1;
constexpr std::size_t header_size = 4 + 4 + 4 + 4 + 8 + 8 + 4;  // with the header's own CRC
constexpr std::size_t trailer_size = 4;                         // the state's CRC
constexpr std::uint64_t record_overhead = header_size + trailer_size;
constexpr std::uint32_t tombstone_flag = 1;
constexpr std::size_t max_iovecs = 1024;  // IOV_MAX on Linux
constexpr std::size_t copy_buffer_size = std::size_t{1} << 20;

// The previous version's per-shard files, read once on upgrade.
constexpr char legacy_magic[4] = {'M', 'M', 'C', 'K'};
constexpr std::uint32_t legacy_version = 1;
constexpr std::size_t legacy_header_size = 4 + 4 + 8 + 8;

template <class T>
void store_le(std::byte* p, T value) {
    boost::endian::native_to_little_inplace(value);
    std::memcpy(p, &value, sizeof value);
}

template <class T>
T get_le(const std::byte* p) {
    T value;
    std::memcpy(&value, p, sizeof value);
    return boost::endian::little_to_native(value);
}

// CRC-32 (the ISO-HDLC one: zlib's, PNG's, Boost.CRC's crc_32_type), continued from `crc`.
// zlib's crc32 takes a uInt length: feed it at most 1 GiB at a time.
std::uint32_t crc_continue(std::uint32_t crc, const std::byte* p, std::size_t n) {
    uLong value = crc;
    while (n > 0) {
        const std::size_t step = std::min<std::size_t>(n, std::size_t{1} << 30);
        value = ::crc32(value, reinterpret_cast<const Bytef*>(p), static_cast<uInt>(step));
        p += step;
        n -= step;
    }
    return static_cast<std::uint32_t>(value);
}

std::uint32_t crc_of(const std::byte* p, std::size_t n) { return crc_continue(0, p, n); }

struct record_header {
    std::uint32_t shard = 0;
    std::uint32_t flags = 0;
    std::uint64_t epoch = 0;
    std::uint64_t size = 0;
};

std::array<std::byte, header_size> encode(const record_header& h) {
    std::array<std::byte, header_size> out{};
    std::memcpy(out.data(), log_magic, 4);
    store_le<std::uint32_t>(out.data() + 4, log_version);
    store_le<std::uint32_t>(out.data() + 8, h.shard);
    store_le<std::uint32_t>(out.data() + 12, h.flags);
    store_le<std::uint64_t>(out.data() + 16, h.epoch);
    store_le<std::uint64_t>(out.data() + 24, h.size);
    store_le<std::uint32_t>(out.data() + 32, crc_of(out.data(), 32));
    return out;
}

// nullopt: not a header this version wrote whole (its size cannot be trusted).
std::optional<record_header> decode(const std::byte* p) {
    if (std::memcmp(p, log_magic, 4) != 0 || get_le<std::uint32_t>(p + 4) != log_version ||
        get_le<std::uint32_t>(p + 32) != crc_of(p, 32)) {
        return std::nullopt;
    }
    record_header h{get_le<std::uint32_t>(p + 8), get_le<std::uint32_t>(p + 12), get_le<std::uint64_t>(p + 16),
                    get_le<std::uint64_t>(p + 24)};
    if ((h.flags & ~tombstone_flag) != 0 || ((h.flags & tombstone_flag) && h.size != 0)) return std::nullopt;
    return h;
}

// errno is set when this returns false (ENODATA: the file ended first).
bool read_exact(int fd, std::byte* p, std::size_t n, std::uint64_t offset) {
    while (n > 0) {
        const ssize_t r = ::pread(fd, p, n, static_cast<off_t>(offset));
        if (r < 0 && errno == EINTR) continue;
        if (r <= 0) {
            if (r == 0) errno = ENODATA;
            return false;
        }
        p += r;
        n -= static_cast<std::size_t>(r);
        offset += static_cast<std::uint64_t>(r);
    }
    return true;
}

bool write_all(int fd, const std::byte* p, std::size_t n) {
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            if (w == 0) errno = EIO;
            return false;
        }
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

// The CRC of `n` bytes of `fd` from `offset`, read through `buffer`; nullopt (errno set) if they
// cannot be read.
std::optional<std::uint32_t> crc_at(int fd, std::uint64_t offset, std::uint64_t n, std::vector<std::byte>& buffer) {
    std::uint32_t crc = 0;
    while (n > 0) {
        const std::size_t chunk = static_cast<std::size_t>(std::min<std::uint64_t>(n, buffer.size()));
        if (!read_exact(fd, buffer.data(), chunk, offset)) return std::nullopt;
        crc = crc_continue(crc, buffer.data(), chunk);
        offset += chunk;
        n -= chunk;
    }
    return crc;
}

// "shard-<n>.state" (tmp = false) or "shard-<n>.state.tmp" (a write the previous version never
// finished); nullopt for any other name.
std::optional<std::pair<std::uint32_t, bool>> legacy_file(std::string_view name) {
    constexpr std::string_view prefix = "shard-";
    if (!name.starts_with(prefix)) return std::nullopt;
    name.remove_prefix(prefix.size());
    bool tmp = false;
    if (name.ends_with(".state.tmp")) {
        tmp = true;
        name.remove_suffix(4);
    }
    if (!name.ends_with(".state")) return std::nullopt;
    name.remove_suffix(6);
    std::uint32_t shard = 0;
    const auto [end, ec] = std::from_chars(name.data(), name.data() + name.size(), shard);
    if (name.empty() || ec != std::errc{} || end != name.data() + name.size()) return std::nullopt;
    return std::pair{shard, tmp};
}

// A per-shard file of the previous version, if it is whole and intact.
std::optional<std::pair<std::uint64_t, shared_bytes>> read_legacy(const std::string& path) {
    const int fd = ::open(path.c_str(), O_RDONLY | O_CLOEXEC);
    if (fd < 0) return std::nullopt;
    struct stat st {};
    std::vector<std::byte> bytes;
    bool ok = ::fstat(fd, &st) == 0 && st.st_size >= static_cast<off_t>(legacy_header_size + 4);
    if (ok) {
        bytes.resize(static_cast<std::size_t>(st.st_size));
        ok = read_exact(fd, bytes.data(), bytes.size(), 0);
    }
    ::close(fd);
    if (!ok || std::memcmp(bytes.data(), legacy_magic, 4) != 0 || get_le<std::uint32_t>(bytes.data() + 4) != legacy_version ||
        get_le<std::uint64_t>(bytes.data() + 16) != bytes.size() - legacy_header_size - 4 ||
        get_le<std::uint32_t>(bytes.data() + bytes.size() - 4) != crc_of(bytes.data(), bytes.size() - 4)) {
        return std::nullopt;
    }
    return std::pair{get_le<std::uint64_t>(bytes.data() + 8),
                     std::make_shared<const std::vector<std::byte>>(bytes.begin() + legacy_header_size, bytes.end() - 4)};
}

}  // namespace

std::optional<checkpoint_sync_mode> parse_checkpoint_sync(std::string_view text) {
    if (text == "none") return checkpoint_sync_mode::none;
    if (text == "batch") return checkpoint_sync_mode::batch;
    return std::nullopt;
}

checkpoint_store::checkpoint_store(std::string directory, std::function<void(const std::string&)> on_error, settings config)
    : directory_(std::move(directory)), log_path_(directory_ + "/checkpoints.log"), on_error_(std::move(on_error)),
      config_(config) {
    std::error_code ec;
    std::filesystem::create_directories(directory_, ec);
    if (ec || !std::filesystem::is_directory(directory_)) {
        throw std::runtime_error(fmt::format("cannot create the checkpoint directory {}: {}", directory_,
                                             ec ? ec.message() : "not a directory"));
    }
    // What a compaction a crash interrupted left: the log it was replacing is intact.
    ::unlink((log_path_ + ".compact").c_str());
    fd_ = ::open(log_path_.c_str(), O_RDWR | O_CREAT | O_APPEND | O_CLOEXEC, 0600);
    if (fd_ < 0) throw std::runtime_error(fmt::format("cannot open the checkpoint log {}: {}", log_path_, std::strerror(errno)));
    try {
        carry_legacy_files(recover());
        if (config_.sync == checkpoint_sync_mode::batch) sync_directory();  // the log's own name, if it was just created
    } catch (...) {
        ::close(fd_);
        throw;
    }
    writer_ = std::thread([this] { run(); });
}

checkpoint_store::~checkpoint_store() {
    {
        std::lock_guard lock(mutex_);
        stopping_ = true;
    }
    wake_.notify_one();
    writer_.join();
    ::close(fd_);
}

void checkpoint_store::report(const std::string& problem) const {
    if (on_error_) on_error_(problem);
}

std::unordered_set<std::uint32_t> checkpoint_store::recover() {
    struct stat st {};
    if (::fstat(fd_, &st) != 0) throw std::runtime_error(fmt::format("cannot read the checkpoint log {}: {}", log_path_, std::strerror(errno)));
    const auto size = static_cast<std::uint64_t>(st.st_size);
    std::unordered_set<std::uint32_t> seen;
    std::vector<std::byte> buffer(copy_buffer_size);
    std::uint64_t at = 0;
    auto cannot_read = [&] {
        return std::runtime_error(fmt::format("cannot read the checkpoint log {}: {}", log_path_, std::strerror(errno)));
    };
    while (size - at >= record_overhead) {
        std::array<std::byte, header_size> raw;
        if (!read_exact(fd_, raw.data(), raw.size(), at)) throw cannot_read();
        const auto h = decode(raw.data());
        // A header that does not check, or a state longer than what is left: a write cut short
        // (or damage) — the rest cannot be parsed, since no length in it can be trusted.
        if (!h || h->size > size - at - record_overhead) break;
        const auto crc = crc_at(fd_, at + header_size, h->size, buffer);
        std::array<std::byte, trailer_size> trailer;
        if (!crc || !read_exact(fd_, trailer.data(), trailer.size(), at + header_size + h->size)) throw cannot_read();
        if (auto old = live_.find(h->shard); old != live_.end()) {
            counters_.live_bytes -= old->second.size + record_overhead;
            live_.erase(old);
        }
        seen.insert(h->shard);
        if (get_le<std::uint32_t>(trailer.data()) != *crc) {
            damaged_.insert(h->shard);  // its newest state is unknown: none, as for a damaged file
        } else {
            damaged_.erase(h->shard);
            if (!(h->flags & tombstone_flag)) {
                live_[h->shard] = {at, h->size};
                counters_.live_bytes += h->size + record_overhead;
            }
        }
        at += h->size + record_overhead;
    }
    if (at < size) {
        tail_cut_ = true;
        if (::ftruncate(fd_, static_cast<off_t>(at)) != 0) {
            throw std::runtime_error(fmt::format("cannot cut the unreadable end off the checkpoint log {}: {}", log_path_, std::strerror(errno)));
        }
    }
    counters_.log_bytes = at;
    return seen;
}

void checkpoint_store::carry_legacy_files(const std::unordered_set<std::uint32_t>& in_log) {
    std::vector<std::string> files;
    std::vector<batch_entry> carried;
    std::error_code ec;
    for (std::filesystem::directory_iterator it(directory_, ec), end; !ec && it != end; it.increment(ec)) {
        const auto legacy = legacy_file(it->path().filename().native());
        if (!legacy) continue;
        files.push_back(it->path().native());
        const auto [shard, tmp] = *legacy;
        // The log is newer than any per-shard file: a shard it has a record of keeps that.
        if (tmp || in_log.contains(shard)) continue;
        if (auto state = read_legacy(files.back())) {
            carried.push_back({shard, {state->first, std::move(state->second)}});
        } else {
            damaged_.insert(shard);
        }
    }
    if (ec) throw std::runtime_error(fmt::format("cannot list the checkpoint directory {}: {}", directory_, ec.message()));
    if (files.empty()) return;
    if (!append(carried)) {
        throw std::runtime_error(fmt::format("cannot carry the per-shard checkpoint files of {} into {}", directory_, log_path_));
    }
    // An upgrade happens once: whatever `sync` says, the log is on disk before the only other copy
    // of these states goes. If that fails the files stay; the log, being newer, wins over them.
    if (!sync_file(fd_, log_path_) || !sync_directory()) return;
    for (const auto& file : files) {
        if (::unlink(file.c_str()) != 0 && errno != ENOENT) report(fmt::format("cannot remove {}: {}", file, std::strerror(errno)));
    }
}

checkpoint_store::loaded checkpoint_store::load(std::uint32_t shard_count) const {
    std::lock_guard lock(file_mutex_);
    loaded result;
    result.states.resize(shard_count);
    for (const auto& [shard, place] : live_) {
        if (shard >= shard_count) continue;
        std::vector<std::byte> bytes(static_cast<std::size_t>(place.size) + trailer_size);
        const bool read = read_exact(fd_, bytes.data(), bytes.size(), place.offset + header_size);
        if (!read || get_le<std::uint32_t>(bytes.data() + place.size) != crc_of(bytes.data(), static_cast<std::size_t>(place.size))) {
            report(fmt::format("the checkpoint of shard {} in {} (at byte {}) no longer reads back: {}", shard, log_path_,
                               place.offset, read ? "its CRC does not match" : std::strerror(errno)));
            ++result.unreadable;
            continue;
        }
        bytes.resize(static_cast<std::size_t>(place.size));
        result.states[shard] = std::make_shared<const std::vector<std::byte>>(std::move(bytes));
        ++result.found;
    }
    for (std::uint32_t shard : damaged_) {
        if (shard < shard_count) ++result.unreadable;
    }
    if (tail_cut_) ++result.unreadable;
    return result;
}

checkpoint_store::counters checkpoint_store::statistics() const {
    std::lock_guard lock(file_mutex_);
    return counters_;
}

void checkpoint_store::put(std::uint32_t shard, std::uint64_t epoch, shared_bytes state) {
    {
        std::lock_guard lock(mutex_);
        // The first state of an epoch (a shard just granted, resumed or recovered) is the one
        // that matters after a crash: without it the shard would start over. It goes at once;
        // only rewrites within an epoch wait for the interval.
        auto known = epochs_.find(shard);
        if (!state || known == epochs_.end() || known->second != epoch) urgent_ = true;
        if (state) {
            epochs_[shard] = epoch;
        } else if (known != epochs_.end()) {
            epochs_.erase(known);
        }
        pending_[shard] = {epoch, std::move(state)};
        ++queued_;
    }
    wake_.notify_one();
}

void checkpoint_store::flush() {
    std::unique_lock lock(mutex_);
    const std::uint64_t target = queued_;
    flush_target_ = std::max(flush_target_, target);
    wake_.notify_one();
    written_.wait(lock, [&] { return done_ >= target; });
}

void checkpoint_store::run() {
    std::unique_lock lock(mutex_);
    while (true) {
        wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
        if (pending_.empty() && stopping_) return;
        // Everything queued goes in one batch: the urgent state and whatever piled up with it.
        std::vector<batch_entry> batch;
        batch.reserve(pending_.size());
        for (auto& [shard, p] : pending_) batch.push_back({shard, std::move(p)});
        pending_.clear();
        urgent_ = false;
        const std::uint64_t taking = queued_;
        const bool last = stopping_;
        lock.unlock();
        bool ok = false;
        {
            std::lock_guard file(file_mutex_);
            ok = append(batch);
            const auto& c = counters_;
            if (ok && c.log_bytes > config_.compact_floor && c.log_bytes > 2 * c.live_bytes && c.log_bytes >= compact_blocked_until_) {
                compact();
            }
        }
        lock.lock();
        if (!ok && last) {
            report(fmt::format("{} checkpoint states could not be written to {} before the store closed: lost", batch.size(), log_path_));
        } else if (!ok) {
            // Retried with the next batch, unless a newer state of the same shard came meanwhile.
            // (Counted as handed over again, so that a later flush() waits for the retry.)
            for (auto& e : batch) {
                if (pending_.try_emplace(e.shard, std::move(e.p)).second) ++queued_;
            }
        }
        done_ = taking;
        written_.notify_all();
        if (!ok && last) return;
        // Let newer states pile up (only the newest of each is kept) before the next batch; after
        // a failure wait at least a second, so a full disk is not retried in a loop.
        const auto pause = ok ? config_.min_interval : std::max(config_.min_interval, std::chrono::milliseconds(1000));
        if (pause.count() > 0) wake_.wait_for(lock, pause, [&] { return stopping_ || urgent_ || done_ < flush_target_; });
    }
}

bool checkpoint_store::append(const std::vector<batch_entry>& batch) {
    if (needs_truncate_) {
        if (::ftruncate(fd_, static_cast<off_t>(counters_.log_bytes)) != 0) {
            report(fmt::format("cannot cut a failed write off {}: {}", log_path_, std::strerror(errno)));
            return false;
        }
        needs_truncate_ = false;
    }
    std::vector<std::array<std::byte, header_size>> headers;
    std::vector<std::array<std::byte, trailer_size>> trailers;
    std::vector<const batch_entry*> written;
    headers.reserve(batch.size());  // (iovecs point into these: no reallocation)
    trailers.reserve(batch.size());
    written.reserve(batch.size());
    std::vector<iovec> iov;
    iov.reserve(batch.size() * 3);
    std::uint64_t total = 0;
    for (const auto& e : batch) {
        const auto& state = e.p.state;
        // Removing a state the log does not hold needs no record.
        if (!state && !live_.contains(e.shard) && !damaged_.contains(e.shard)) continue;
        const std::uint64_t size = state ? state->size() : 0;
        headers.push_back(encode({e.shard, state ? 0 : tombstone_flag, e.p.epoch, size}));
        trailers.emplace_back();
        store_le<std::uint32_t>(trailers.back().data(), state ? crc_of(state->data(), state->size()) : crc_of(nullptr, 0));
        iov.push_back({headers.back().data(), header_size});
        if (size > 0) iov.push_back({const_cast<std::byte*>(state->data()), static_cast<std::size_t>(size)});
        iov.push_back({trailers.back().data(), trailer_size});
        written.push_back(&e);
        total += size + record_overhead;
    }
    if (written.empty()) return true;
    for (std::size_t next = 0; next < iov.size();) {
        const std::size_t count = std::min(max_iovecs, iov.size() - next);
        ssize_t w = ::writev(fd_, &iov[next], static_cast<int>(count));
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) {
            const int error = w == 0 ? EIO : errno;
            // Part of the batch may be in the file: cut it off, so the next batch follows whole records.
            needs_truncate_ = ::ftruncate(fd_, static_cast<off_t>(counters_.log_bytes)) != 0;
            report(fmt::format("cannot append {} checkpoint records to {}: {} (retried with the next batch)", written.size(),
                               log_path_, std::strerror(error)));
            return false;
        }
        // A short write: skip what went out, go on from the middle of an iovec if need be.
        while (w > 0) {
            iovec& v = iov[next];
            const auto taken = std::min<std::size_t>(static_cast<std::size_t>(w), v.iov_len);
            v.iov_base = static_cast<std::byte*>(v.iov_base) + taken;
            v.iov_len -= taken;
            w -= static_cast<ssize_t>(taken);
            if (v.iov_len == 0) ++next;
        }
        while (next < iov.size() && iov[next].iov_len == 0) ++next;
    }
    std::uint64_t at = counters_.log_bytes;
    for (const batch_entry* e : written) {
        if (auto old = live_.find(e->shard); old != live_.end()) {
            counters_.live_bytes -= old->second.size + record_overhead;
            live_.erase(old);
        }
        damaged_.erase(e->shard);
        const std::uint64_t size = e->p.state ? e->p.state->size() : 0;
        if (e->p.state) {
            live_[e->shard] = {at, size};
            counters_.live_bytes += size + record_overhead;
        }
        at += size + record_overhead;
    }
    counters_.log_bytes += total;
    ++counters_.batches;
    // A failed fdatasync is reported, not retried: the pages it could not write are marked clean
    // by the kernel, so a second call would succeed without writing them.
    if (config_.sync == checkpoint_sync_mode::batch) sync_file(fd_, log_path_);
    return true;
}

void checkpoint_store::compact() {
    const std::string temporary = log_path_ + ".compact";
    const int out = ::open(temporary.c_str(), O_RDWR | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0600);
    auto fail = [&](const std::string& what) {
        report(fmt::format("cannot compact {}: {}: {} (the log is kept as it is)", log_path_, what, std::strerror(errno)));
        if (out >= 0) ::close(out);
        ::unlink(temporary.c_str());
        // Not tried again before the log has grown as much again.
        compact_blocked_until_ = counters_.log_bytes + std::max(config_.compact_floor, counters_.live_bytes);
    };
    if (out < 0) return fail(fmt::format("cannot create {}", temporary));
    // In log order, so the old log is read front to back; small records gather in the buffer.
    std::vector<std::pair<std::uint32_t, record_place>> order(live_.begin(), live_.end());
    std::sort(order.begin(), order.end(), [](const auto& a, const auto& b) { return a.second.offset < b.second.offset; });
    std::vector<std::byte> buffer(copy_buffer_size);
    std::size_t used = 0;
    std::uint64_t written = 0;
    std::vector<std::uint64_t> offsets;
    offsets.reserve(order.size());
    for (const auto& [shard, place] : order) {
        offsets.push_back(written);
        std::uint64_t from = place.offset;
        for (std::uint64_t left = place.size + record_overhead; left > 0;) {
            if (used == buffer.size()) {
                if (!write_all(out, buffer.data(), used)) return fail(fmt::format("cannot write {}", temporary));
                used = 0;
            }
            const auto chunk = static_cast<std::size_t>(std::min<std::uint64_t>(left, buffer.size() - used));
            if (!read_exact(fd_, buffer.data() + used, chunk, from)) return fail("cannot read it");
            used += chunk;
            from += chunk;
            left -= chunk;
        }
        written += place.size + record_overhead;
    }
    if (used > 0 && !write_all(out, buffer.data(), used)) return fail(fmt::format("cannot write {}", temporary));
    // With `batch` the copy is on disk before its name replaces the log's.
    if (config_.sync == checkpoint_sync_mode::batch && ::fdatasync(out) != 0) return fail(fmt::format("cannot fdatasync {}", temporary));
    if (config_.sync == checkpoint_sync_mode::batch) ++counters_.syncs;
    if (::rename(temporary.c_str(), log_path_.c_str()) != 0) return fail(fmt::format("cannot rename {} over it", temporary));
    ::close(fd_);
    fd_ = out;
    for (std::size_t i = 0; i < order.size(); ++i) live_[order[i].first].offset = offsets[i];
    counters_.log_bytes = written;
    ++counters_.compactions;
    if (config_.sync == checkpoint_sync_mode::batch) sync_directory();
}

bool checkpoint_store::sync_file(int fd, const std::string& path) {
    if (::fdatasync(fd) != 0) {
        report(fmt::format("cannot fdatasync {}: {}", path, std::strerror(errno)));
        return false;
    }
    ++counters_.syncs;
    return true;
}

bool checkpoint_store::sync_directory() {
    const int fd = ::open(directory_.c_str(), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    const bool ok = fd >= 0 && ::fsync(fd) == 0;
    const int error = errno;
    if (fd >= 0) ::close(fd);
    if (!ok) {
        report(fmt::format("cannot fsync the directory {}: {}", directory_, std::strerror(error)));
        return false;
    }
    ++counters_.syncs;
    return true;
}

}  // namespace meshmaster::master
