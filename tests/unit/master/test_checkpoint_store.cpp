// The checkpoint store: what a master keeps on disk so that a restart after a crash still has the
// state to resume each shard from.
#include "checkpoint_store.hpp"

#include <doctest/doctest.h>

#include <cstdlib>
#include <filesystem>
#include <fstream>

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

}  // namespace

TEST_CASE("the newest state of each shard survives the store, and a removal removes it") {
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
    CHECK(text_of(loaded.states[3]) == "three, queued when the store closes");
    // Fewer shards configured: the others are not loaded.
    CHECK(again.load(1).found == 1);
}

TEST_CASE("a damaged or foreign file is skipped and counted, never loaded") {
    temporary_directory dir;
    checkpoint_store store(dir.path);
    store.put(0, 1, bytes_of("intact"));
    store.put(1, 1, bytes_of("to be damaged"));
    store.put(2, 1, bytes_of("to be cut short"));
    store.flush();
    {
        std::fstream f(store.path_of(1), std::ios::in | std::ios::out | std::ios::binary);
        f.seekp(30);
        f.put('X');  // one byte of the state flipped: the CRC no longer matches
    }
    std::filesystem::resize_file(store.path_of(2), 20);
    std::ofstream(store.path_of(3)) << "not a checkpoint at all, just some text";
    const auto loaded = store.load(4);
    CHECK(loaded.found == 1);
    CHECK(loaded.unreadable == 3);
    CHECK(text_of(loaded.states[0]) == "intact");
    CHECK_FALSE(loaded.states[1]);
    CHECK_FALSE(loaded.states[2]);
}

TEST_CASE("a directory that cannot be created is an error at once, with the path") {
    temporary_directory dir;
    std::ofstream(dir.path + "/a-file") << "x";
    CHECK_THROWS_WITH_AS(checkpoint_store(dir.path + "/a-file/states"), doctest::Contains("a-file/states"), std::runtime_error);
}

TEST_CASE("write failures are reported through the callback, not thrown") {
    temporary_directory dir;
    std::vector<std::string> problems;
    {
        checkpoint_store store(dir.path, [&](const std::string& p) { problems.push_back(p); });
        std::filesystem::create_directory(store.path_of(0) + ".tmp");  // the temporary file cannot be created
        store.put(0, 1, bytes_of("state"));
        store.flush();
    }
    REQUIRE(problems.size() == 1);
    CHECK(problems[0].find("shard-0.state") != std::string::npos);
}
