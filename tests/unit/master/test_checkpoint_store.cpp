// The checkpoint store: what a master keeps on disk so that a restart after a crash still has the
// state to resume each shard from — one append-only log, compacted, read back after damage, and
// carrying the previous version's per-shard files over.
#include "checkpoint_store.hpp"

#include <boost/crc.hpp>
#include <boost/endian/conversion.hpp>

#include <doctest/doctest.h>

#include <chrono>
#include <csignal>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <random>
#include <sys/resource.h>
#include <thread>

using namespace meshmaster::master;

namespace {

struct temporary_directory {
    temporary_directory() {
        char pattern[] = "/tmp/meshmaster-checkpoints-XXXXXX";
        REQUIRE(::mkdtemp(pattern) != nullptr);
        path = pattern;
    }
    ~temporary_directory() { std::filesystem::remove_all(path); }
    std::string path;
};

shared_bytes bytes_of(std::string_view text) {
    auto v = std::make_shared<std::vector<std::byte>>();
    for (char c : text) v->push_back(static_cast<std::byte>(c));
    return v;
}

std::string text_of(const shared_bytes& b) { return b ? std::string(reinterpret_cast<const char*>(b->data()), b->size()) : "<none>"; }

// A record's bytes in the log: header (36, with its CRC), the state, the state's CRC (4).
constexpr std::uint64_t overhead = 40;

std::uint64_t log_size(const checkpoint_store& store) { return std::filesystem::file_size(store.log_path()); }

void flip_byte(const std::string& path, std::uint64_t offset) {
    std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
    f.seekg(static_cast<std::streamoff>(offset));
    const char c = static_cast<char>(f.get());
    f.seekp(static_cast<std::streamoff>(offset));
    f.put(static_cast<char>(c ^ 0x5a));
}

std::string legacy_path(const std::string& directory, std::uint32_t shard) {
    return directory + "/shard-" + std::to_string(shard) + ".state";
}

// A per-shard file as the previous version wrote it: "MMCK", version 1, epoch, size, state, CRC-32.
void write_legacy(const std::string& directory, std::uint32_t shard, std::uint64_t epoch, std::string_view state) {
    std::string bytes = "MMCK";
    auto le = [&](auto value) {
        boost::endian::native_to_little_inplace(value);
        bytes.append(reinterpret_cast<const char*>(&value), sizeof value);
    };
    le(std::uint32_t{1});
    le(epoch);
    le(static_cast<std::uint64_t>(state.size()));
    bytes += state;
    boost::crc_32_type crc;
    crc.process_bytes(bytes.data(), bytes.size());
    le(static_cast<std::uint32_t>(crc.checksum()));
    std::ofstream(legacy_path(directory, shard), std::ios::binary) << bytes;
}

}  // namespace

TEST_CASE("checkpoint store: the newest state of each shard survives the store, and a removal removes it") {
    temporary_directory dir;
    {
        checkpoint_store store(dir.path + "/states");
        store.put(0, 3, bytes_of("zero, old"));
        store.put(2, 5, bytes_of("two"));
        store.put(0, 4, bytes_of("zero, newest"));
        store.put(1, 1, bytes_of("one"));
        store.put(1, 2, nullptr);  // started afresh: no state to resume from any more
        store.flush();
        const auto loaded = store.load(4);
        CHECK(loaded.found == 2);
        CHECK(text_of(loaded.states[0]) == "zero, newest");
        CHECK(text_of(loaded.states[1]) == "<none>");
        CHECK(text_of(loaded.states[2]) == "two");
        CHECK(text_of(loaded.states[3]) == "<none>");
        store.put(3, 9, bytes_of("three, queued when the store closes"));
    }
    // A new store (a new master) finds what the last one wrote, the writes queued at its end included.
    checkpoint_store again(dir.path + "/states");
    const auto loaded = again.load(4);
    CHECK(loaded.found == 3);
    CHECK(loaded.unreadable == 0);
    CHECK(text_of(loaded.states[3]) == "three, queued when the store closes");
    // Fewer shards configured: the others are not loaded.
    CHECK(again.load(1).found == 1);
    // One file for every shard, not one per shard.
    CHECK(std::distance(std::filesystem::directory_iterator(dir.path + "/states"), std::filesystem::directory_iterator{}) == 1);
}

TEST_CASE("checkpoint store: thousands of shards round-trip through one log, the newest record of each winning") {
    temporary_directory dir;
    constexpr std::uint32_t shards = 2048;
    std::mt19937 random(14);
    std::vector<shared_bytes> expected(shards);
    auto random_state = [&](std::uint32_t shard, int version) {
        auto v = std::make_shared<std::vector<std::byte>>(random() % 3000);  // empty ones too: a state, not none
        for (auto& b : *v) b = static_cast<std::byte>(random());
        if (v->size() >= 8) std::memcpy(v->data(), &shard, 4), std::memcpy(v->data() + 4, &version, 4);
        return shared_bytes(std::move(v));
    };
    {
        checkpoint_store store(dir.path);
        for (std::uint32_t shard = 0; shard < shards; ++shard) store.put(shard, 1, expected[shard] = random_state(shard, 1));
        store.flush();
        // A second round for every third shard (some in a new epoch), and every seventh removed.
        for (std::uint32_t shard = 0; shard < shards; shard += 3) store.put(shard, 1 + shard % 2, expected[shard] = random_state(shard, 2));
        for (std::uint32_t shard = 0; shard < shards; shard += 7) store.put(shard, 9, expected[shard] = nullptr);
    }
    checkpoint_store again(dir.path);
    const auto loaded = again.load(shards);
    CHECK(loaded.unreadable == 0);
    std::uint32_t found = 0, mismatched = 0;
    for (std::uint32_t shard = 0; shard < shards; ++shard) {
        found += expected[shard] != nullptr;
        const bool same = expected[shard] ? loaded.states[shard] && *loaded.states[shard] == *expected[shard] : !loaded.states[shard];
        mismatched += !same;
    }
    CHECK(loaded.found == found);
    CHECK(mismatched == 0);
}

TEST_CASE("checkpoint store: a tombstone removes a state written in an earlier batch, for the next master too") {
    temporary_directory dir;
    {
        checkpoint_store store(dir.path);
        store.put(1, 1, bytes_of("one"));
        store.flush();
        const auto before = log_size(store);
        store.put(1, 2, nullptr);
        store.put(2, 2, nullptr);  // never stored: nothing to remove, no record
        store.flush();
        CHECK(log_size(store) == before + overhead);
        CHECK_FALSE(store.load(3).states[1]);
    }
    checkpoint_store again(dir.path);
    const auto loaded = again.load(3);
    CHECK(loaded.found == 0);
    CHECK(loaded.unreadable == 0);
}

TEST_CASE("checkpoint store: damage: a bad state costs its shard, a bad header or a torn end costs the rest of the log, which is cut off") {
    temporary_directory dir;
    std::vector<std::uint64_t> offsets;
    {
        checkpoint_store store(dir.path);
        // One batch each, so the records lie in this order.
        for (auto [shard, text] : {std::pair{0u, "intact"}, {1u, "to be damaged"}, {2u, "intact too"}, {3u, "to be cut short"}}) {
            offsets.push_back(log_size(store));
            store.put(shard, 1, bytes_of(text));
            store.flush();
        }
        offsets.push_back(log_size(store));
    }
    const std::string log = dir.path + "/checkpoints.log";

    SUBCASE("a damaged state and a torn end") {
        flip_byte(log, offsets[1] + 36 + 3);                     // in shard 1's state: its CRC no longer matches
        std::filesystem::resize_file(log, offsets[3] + 20);     // shard 3's record cut in its header (a crash mid-append)
        {
            checkpoint_store store(dir.path);
            const auto loaded = store.load(4);
            CHECK(loaded.found == 2);
            CHECK(loaded.unreadable == 2);  // shard 1, and the torn end
            CHECK(text_of(loaded.states[0]) == "intact");
            CHECK_FALSE(loaded.states[1]);
            CHECK(text_of(loaded.states[2]) == "intact too");
            CHECK_FALSE(loaded.states[3]);
            // The torn end was cut off before anything else is appended: new records follow whole ones.
            CHECK(log_size(store) == offsets[3]);
            store.put(3, 2, bytes_of("three again"));
            store.flush();
        }
        checkpoint_store store(dir.path);
        const auto loaded = store.load(4);
        CHECK(loaded.found == 3);
        CHECK(loaded.unreadable == 1);  // shard 1 still: its newest record is the damaged one
        CHECK(text_of(loaded.states[3]) == "three again");
    }
    SUBCASE("a damaged header: its size cannot be trusted, so the records after it are unreadable") {
        flip_byte(log, offsets[1] + 24);  // in the size field of shard 1's header
        checkpoint_store store(dir.path);
        const auto loaded = store.load(4);
        CHECK(loaded.found == 1);
        CHECK(loaded.unreadable == 1);
        CHECK(text_of(loaded.states[0]) == "intact");
        CHECK(log_size(store) == offsets[1]);
    }
    SUBCASE("a state cut short at the very end") {
        std::filesystem::resize_file(log, offsets[4] - 3);
        checkpoint_store store(dir.path);
        const auto loaded = store.load(4);
        CHECK(loaded.found == 3);
        CHECK(loaded.unreadable == 1);
        CHECK(log_size(store) == offsets[3]);
    }
    SUBCASE("not a log at all") {
        std::ofstream(log, std::ios::trunc) << "not a checkpoint at all, just some text";
        checkpoint_store store(dir.path);
        const auto loaded = store.load(4);
        CHECK(loaded.found == 0);
        CHECK(loaded.unreadable == 1);
        CHECK(log_size(store) == 0);
    }
}

TEST_CASE("checkpoint store: compaction keeps exactly the newest states and bounds the log") {
    temporary_directory dir;
    constexpr std::uint32_t shards = 100;
    constexpr std::uint64_t floor = 64 << 10;
    std::map<std::uint32_t, std::string> expected;
    std::uint64_t largest = 0;
    {
        checkpoint_store store(dir.path, {}, {.min_interval = std::chrono::milliseconds(0), .compact_floor = floor});
        for (int round = 0; round < 40; ++round) {
            for (std::uint32_t shard = 0; shard < shards; ++shard) {
                if (round == 39 && shard % 5 == 0) {
                    store.put(shard, 1, nullptr);
                    expected.erase(shard);
                } else {
                    const std::string text = std::string(1000, char('a' + shard % 26)) + std::to_string(round);
                    store.put(shard, 1, bytes_of(text));
                    expected[shard] = text;
                }
            }
            // A shard past those configured: kept through every compaction, only not loaded.
            if (round == 0) store.put(shards + 400, 7, bytes_of("beyond"));
            store.flush();
            const auto stats = store.statistics();
            CHECK(stats.log_bytes == log_size(store));
            largest = std::max(largest, stats.log_bytes);
            // Twice the live bytes (or the floor), plus the batch that went over it.
            CHECK(stats.log_bytes <= std::max(floor, 2 * stats.live_bytes) + shards * (1002 + overhead));
        }
        CHECK(store.statistics().compactions >= 10);
        CHECK_FALSE(std::filesystem::exists(store.log_path() + ".compact"));
    }
    CHECK(largest < 40 * shards * 1000 / 4);  // far below the 4 MB written
    checkpoint_store again(dir.path);
    const auto loaded = again.load(shards);
    CHECK(loaded.unreadable == 0);
    CHECK(loaded.found == expected.size());
    std::uint64_t live = 0;
    for (std::uint32_t shard = 0; shard < shards; ++shard) {
        const auto it = expected.find(shard);
        CHECK(text_of(loaded.states[shard]) == (it == expected.end() ? "<none>" : it->second));
        if (it != expected.end()) live += it->second.size() + overhead;
    }
    CHECK(again.statistics().live_bytes == live + 6 + overhead);  // "beyond" too
    CHECK(text_of(again.load(shards + 401).states[shards + 400]) == "beyond");
}

TEST_CASE("checkpoint store: a compaction that fails leaves the log as it was, and one a crash interrupted is cleaned up") {
    temporary_directory dir;
    std::vector<std::string> problems;
    {
        checkpoint_store store(dir.path, [&](const std::string& p) { problems.push_back(p); },
                               {.min_interval = std::chrono::milliseconds(0), .compact_floor = 1});
        std::filesystem::create_directory(store.log_path() + ".compact");  // cannot be created as a file
        store.put(0, 1, bytes_of("zero, the first state"));
        store.flush();
        store.put(0, 1, bytes_of("zero 2"));  // the log is then past twice its live bytes
        store.flush();
        CHECK(store.statistics().compactions == 0);
        REQUIRE_FALSE(problems.empty());
        CHECK(problems[0].find("checkpoints.log.compact") != std::string::npos);
        CHECK(text_of(store.load(1).states[0]) == "zero 2");
        std::filesystem::remove(store.log_path() + ".compact");
    }
    // A crash between writing the copy and renaming it leaves a .compact file beside the whole log.
    std::ofstream(dir.path + "/checkpoints.log.compact") << "half a copy";
    checkpoint_store store(dir.path);
    CHECK_FALSE(std::filesystem::exists(dir.path + "/checkpoints.log.compact"));
    CHECK(text_of(store.load(1).states[0]) == "zero 2");
}

TEST_CASE("checkpoint store: an upgrade loads the per-shard files of the previous version, carries them into the log and removes them") {
    temporary_directory dir;
    {
        checkpoint_store store(dir.path);
        store.put(1, 5, bytes_of("one, in the log"));
        store.put(4, 5, bytes_of("four, removed in the log"));
        store.flush();
        store.put(4, 6, nullptr);
    }
    write_legacy(dir.path, 0, 3, "zero, from its file");
    write_legacy(dir.path, 1, 4, "one, from its file");  // older than the log's record
    write_legacy(dir.path, 4, 4, "four, from its file");  // the log's tombstone is newer
    write_legacy(dir.path, 9, 2, "nine, past the shards configured");
    std::ofstream(legacy_path(dir.path, 2)) << "not a checkpoint at all, just some text";
    std::ofstream(legacy_path(dir.path, 3) + ".tmp") << "a write the previous version never finished";
    std::ofstream(dir.path + "/notes.txt") << "an operator's notes";
    auto check = [&](const checkpoint_store::loaded& loaded, std::uint32_t unreadable) {
        CHECK(loaded.found == 2);
        CHECK(loaded.unreadable == unreadable);
        CHECK(text_of(loaded.states[0]) == "zero, from its file");
        CHECK(text_of(loaded.states[1]) == "one, in the log");
        CHECK_FALSE(loaded.states[2]);
        CHECK_FALSE(loaded.states[4]);
    };
    {
        checkpoint_store store(dir.path);
        check(store.load(5), 1);  // shard 2's file
        CHECK(store.statistics().syncs >= 1);  // on disk before the files go, whatever checkpoint_sync says
    }
    // The files are gone, their content is in the log; nothing else in the directory was touched.
    for (std::uint32_t shard : {0u, 1u, 2u, 4u, 9u}) CHECK_FALSE(std::filesystem::exists(legacy_path(dir.path, shard)));
    CHECK_FALSE(std::filesystem::exists(legacy_path(dir.path, 3) + ".tmp"));
    CHECK(std::filesystem::exists(dir.path + "/notes.txt"));
    checkpoint_store store(dir.path);
    check(store.load(5), 0);
    CHECK(text_of(store.load(10).states[9]) == "nine, past the shards configured");
}

TEST_CASE("checkpoint store: checkpoint_sync = batch syncs every batch and a compaction's rename, none never does") {
    CHECK(parse_checkpoint_sync("none") == checkpoint_sync_mode::none);
    CHECK(parse_checkpoint_sync("batch") == checkpoint_sync_mode::batch);
    CHECK_FALSE(parse_checkpoint_sync("always"));
    temporary_directory dir;
    for (const auto mode : {checkpoint_sync_mode::none, checkpoint_sync_mode::batch}) {
        CAPTURE(static_cast<int>(mode));
        const std::string path = dir.path + (mode == checkpoint_sync_mode::none ? "/none" : "/batch");
        {
            checkpoint_store store(path, {}, {.min_interval = std::chrono::milliseconds(0), .sync = mode, .compact_floor = 1});
            const auto opened = store.statistics().syncs;
            store.put(0, 1, bytes_of("zero, the first state"));
            store.flush();
            const auto stats = store.statistics();
            store.put(0, 1, bytes_of("zero 2"));  // the log is then past twice its live bytes: compacted
            store.flush();
            const auto compacted = store.statistics();
            CHECK(compacted.compactions == 1);
            if (mode == checkpoint_sync_mode::none) {
                CHECK(compacted.syncs == 0);
            } else {
                CHECK(opened == 1);                            // the directory, for the log's name
                CHECK(stats.syncs == opened + 1);              // the batch
                CHECK(compacted.syncs == stats.syncs + 3);     // the batch, the copy, the directory
            }
        }
        checkpoint_store again(path);
        CHECK(text_of(again.load(1).states[0]) == "zero 2");
    }
}

TEST_CASE("checkpoint store: a shard's first state of a new epoch is written at once, without waiting for the interval") {
    temporary_directory dir;
    checkpoint_store store(dir.path, {}, {.min_interval = std::chrono::hours(1)});
    store.put(0, 1, bytes_of("first of epoch 1"));
    // No flush: the writer goes by itself (the deadline only keeps a broken store from hanging the test).
    const auto deadline = std::chrono::steady_clock::now() + std::chrono::seconds(30);
    while (store.statistics().batches == 0 && std::chrono::steady_clock::now() < deadline) {
        std::this_thread::sleep_for(std::chrono::milliseconds(5));
    }
    CHECK(store.statistics().batches == 1);
    CHECK(text_of(store.load(1).states[0]) == "first of epoch 1");
}

TEST_CASE("checkpoint store: a directory that cannot be created is an error at once, with the path") {
    temporary_directory dir;
    std::ofstream(dir.path + "/a-file") << "x";
    CHECK_THROWS_WITH_AS(checkpoint_store(dir.path + "/a-file/states"), doctest::Contains("a-file/states"), std::runtime_error);
    // A log that cannot be opened: the same, naming it.
    std::filesystem::create_directories(dir.path + "/states/checkpoints.log");
    CHECK_THROWS_WITH_AS(checkpoint_store(dir.path + "/states"), doctest::Contains("states/checkpoints.log"), std::runtime_error);
}

TEST_CASE("checkpoint store: a batch that cannot be written is reported, cut off the log, and retried with the next one") {
    temporary_directory dir;
    std::vector<std::string> problems;
    checkpoint_store store(dir.path, [&](const std::string& p) { problems.push_back(p); }, {.min_interval = std::chrono::milliseconds(0)});
    store.put(0, 1, bytes_of("zero"));
    store.flush();
    const auto before = log_size(store);
    // The file-size limit lets part of the next batch through, then refuses the rest (EFBIG).
    const auto old_handler = std::signal(SIGXFSZ, SIG_IGN);
    rlimit saved{};
    REQUIRE(::getrlimit(RLIMIT_FSIZE, &saved) == 0);
    rlimit limited = saved;
    limited.rlim_cur = before + 100;
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &limited) == 0);
    store.put(1, 1, bytes_of(std::string(4000, '1')));
    store.flush();
    REQUIRE(::setrlimit(RLIMIT_FSIZE, &saved) == 0);
    std::signal(SIGXFSZ, old_handler);
    // Once or twice: if the writer had already failed the batch when flush() was called, the flush
    // asks for the re-queued state at once and that retry meets the limit too.
    REQUIRE(!problems.empty());
    REQUIRE(problems.size() <= 2);
    for (const auto& p : problems) CHECK(p.find(dir.path + "/checkpoints.log") != std::string::npos);
    CHECK(log_size(store) == before);  // no half record left for the next batch to follow
    const auto reported = problems.size();
    store.put(2, 1, bytes_of("two"));
    store.flush();  // the next batch: shard 1's state again, with shard 2's
    CHECK(problems.size() == reported);
    checkpoint_store again(dir.path + "/");
    const auto loaded = again.load(3);
    CHECK(loaded.found == 3);
    CHECK(loaded.unreadable == 0);
    CHECK(text_of(loaded.states[1]) == std::string(4000, '1'));
}
