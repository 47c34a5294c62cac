#include "checkpoint_store.hpp"

#include <boost/crc.hpp>
#include <boost/endian/conversion.hpp>

#include <fmt/format.h>

#include <cerrno>
#include <cstring>
#include <fcntl.h>
#include <filesystem>
#include <stdexcept>
#include <sys/stat.h>
#include <unistd.h>

namespace meshmaster::master {

namespace {

constexpr char magic[4] = {'M', 'M', 'C', 'K'};
constexpr std::uint32_t format_version = 1;
constexpr std::size_t header_size = 4 + 4 + 8 + 8;

template <class T>
void put_le(std::vector<std::byte>& out, T value) {
    boost::endian::native_to_little_inplace(value);
    const auto* p = reinterpret_cast<const std::byte*>(&value);
    out.insert(out.end(), p, p + sizeof value);
}

template <class T>
T get_le(const std::byte* p) {
    T value;
    std::memcpy(&value, p, sizeof value);
    return boost::endian::little_to_native(value);
}

std::uint32_t crc_of(const std::byte* p, std::size_t n) {
    boost::crc_32_type crc;
    crc.process_bytes(p, n);
    return crc.checksum();
}

bool write_all(int fd, const std::byte* p, std::size_t n) {
    while (n > 0) {
        const ssize_t w = ::write(fd, p, n);
        if (w < 0 && errno == EINTR) continue;
        if (w <= 0) return false;
        p += w;
        n -= static_cast<std::size_t>(w);
    }
    return true;
}

}  // namespace

checkpoint_store::checkpoint_store(std::string directory, std::function<void(const std::string&)> on_error,
                                   std::chrono::milliseconds min_interval)
    : directory_(std::move(directory)), on_error_(std::move(on_error)), min_interval_(min_interval) {
    std::error_code ec;
    std::filesystem::create_directories(directory_, ec);
    if (ec || !std::filesystem::is_directory(directory_)) {
        throw std::runtime_error(fmt::format("cannot create the checkpoint directory {}: {}", directory_,
                                             ec ? ec.message() : "not a directory"));
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
}

std::string checkpoint_store::path_of(std::uint32_t shard) const { return fmt::format("{}/shard-{}.state", directory_, shard); }

checkpoint_store::loaded checkpoint_store::load(std::uint32_t shard_count) const {
    loaded result;
    result.states.resize(shard_count);
    for (std::uint32_t shard = 0; shard < shard_count; ++shard) {
        const int fd = ::open(path_of(shard).c_str(), O_RDONLY | O_CLOEXEC);
        if (fd < 0) continue;
        struct stat st {};
        std::vector<std::byte> bytes;
        if (::fstat(fd, &st) == 0 && st.st_size >= static_cast<off_t>(header_size + 4)) {
            bytes.resize(static_cast<std::size_t>(st.st_size));
            std::size_t have = 0;
            while (have < bytes.size()) {
                const ssize_t r = ::read(fd, bytes.data() + have, bytes.size() - have);
                if (r < 0 && errno == EINTR) continue;
                if (r <= 0) break;
                have += static_cast<std::size_t>(r);
            }
            bytes.resize(have);
        }
        ::close(fd);
        const bool whole = bytes.size() >= header_size + 4 && std::memcmp(bytes.data(), magic, 4) == 0 &&
                           get_le<std::uint32_t>(bytes.data() + 4) == format_version &&
                           get_le<std::uint64_t>(bytes.data() + 16) == bytes.size() - header_size - 4 &&
                           get_le<std::uint32_t>(bytes.data() + bytes.size() - 4) == crc_of(bytes.data(), bytes.size() - 4);
        if (!whole) {
            ++result.unreadable;
            continue;
        }
        result.states[shard] = std::make_shared<const std::vector<std::byte>>(bytes.begin() + header_size, bytes.end() - 4);
        ++result.found;
    }
    return result;
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
    ++flushing_;
    wake_.notify_one();
    written_.wait(lock, [&] { return done_ >= target; });
    --flushing_;
}

void checkpoint_store::run() {
    std::unique_lock lock(mutex_);
    while (true) {
        wake_.wait(lock, [&] { return stopping_ || !pending_.empty(); });
        if (pending_.empty() && stopping_) return;
        std::map<std::uint32_t, pending_state> batch = std::exchange(pending_, {});
        urgent_ = false;
        const std::uint64_t taking = queued_;
        lock.unlock();
        for (const auto& [shard, p] : batch) write_one(shard, p);
        lock.lock();
        done_ = taking;
        written_.notify_all();
        // Let newer states pile up (only the newest of each is kept) before the next batch.
        if (min_interval_.count() > 0) wake_.wait_for(lock, min_interval_, [&] { return stopping_ || flushing_ > 0 || urgent_; });
    }
}

void checkpoint_store::write_one(std::uint32_t shard, const pending_state& p) {
    const std::string path = path_of(shard);
    if (!p.state) {
        if (::unlink(path.c_str()) != 0 && errno != ENOENT && on_error_) {
            on_error_(fmt::format("cannot remove {}: {}", path, std::strerror(errno)));
        }
        return;
    }
    std::vector<std::byte> header;
    header.insert(header.end(), reinterpret_cast<const std::byte*>(magic), reinterpret_cast<const std::byte*>(magic) + 4);
    put_le<std::uint32_t>(header, format_version);
    put_le<std::uint64_t>(header, p.epoch);
    put_le<std::uint64_t>(header, p.state->size());
    boost::crc_32_type crc;
    crc.process_bytes(header.data(), header.size());
    crc.process_bytes(p.state->data(), p.state->size());
    std::vector<std::byte> trailer;
    put_le<std::uint32_t>(trailer, crc.checksum());

    const std::string temporary = path + ".tmp";
    const int fd = ::open(temporary.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0600);
    bool ok = fd >= 0 && write_all(fd, header.data(), header.size()) &&
              write_all(fd, p.state->data(), p.state->size()) && write_all(fd, trailer.data(), trailer.size());
    const int saved = errno;
    if (fd >= 0) ok = ::close(fd) == 0 && ok;
    if (ok) ok = ::rename(temporary.c_str(), path.c_str()) == 0;
    if (!ok) {
        ::unlink(temporary.c_str());
        if (on_error_) on_error_(fmt::format("cannot write {}: {}", path, std::strerror(errno ? errno : saved)));
    }
}

}  // namespace meshmaster::master
