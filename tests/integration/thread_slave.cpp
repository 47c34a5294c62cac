// A worker that runs the slave library on a thread of its own (the second way to embed it):
// handlers are called on the library's thread, the main thread just waits for the shutdown.
// Started by meshmaster in test_slave_modes.py.
#include <meshmaster/slave/slave.hpp>

#include <condition_variable>
#include <cstdio>
#include <map>
#include <mutex>
#include <thread>

namespace ms = meshmaster::slave;

int main() {
    std::mutex mutex;
    std::condition_variable cv;
    bool shut_down = false;
    std::map<std::uint32_t, std::vector<std::byte>> shards;
    const auto main_thread = std::this_thread::get_id();
    auto on_library_thread = [&] {
        if (std::this_thread::get_id() == main_thread) {
            std::fprintf(stderr, "a handler ran on the main thread\n");
            std::abort();
        }
    };
    ms::slave slave(ms::options::from_environment(), {
        .start_shard = [&](ms::shard_grant g, ms::completion<> done) {
            on_library_thread();
            std::lock_guard lock(mutex);
            shards[g.shard] = {std::byte{1}};
            // Complete from yet another thread: completions may be called from anywhere.
            std::thread([done = std::move(done)]() mutable { done(); }).detach();
        },
        .stop_shard = [&](ms::shard_grant g, ms::completion<std::vector<std::byte>> done) {
            on_library_thread();
            std::lock_guard lock(mutex);
            done(std::move(shards[g.shard]));
            shards.erase(g.shard);
        },
        .resume_shard = [&](ms::shard_grant g, std::span<const std::byte> state, ms::completion<> done) {
            on_library_thread();
            if (state.size() != 1 || state[0] != std::byte{1}) return done.fail("unexpected state");
            std::lock_guard lock(mutex);
            shards[g.shard].assign(state.begin(), state.end());
            done();
        },
        .shutdown = [&](ms::completion<> done) {
            on_library_thread();
            done();
            std::lock_guard lock(mutex);
            shut_down = true;
            cv.notify_all();
        },
    });
    slave.start();
    std::unique_lock lock(mutex);
    cv.wait(lock, [&] { return shut_down; });
    lock.unlock();
    // Let the goodbye leave before the library's thread is stopped (60 s: a liveness limit for a
    // busy machine; it takes milliseconds).
    for (int i = 0; i < 6000 && !slave.finished(); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
    return 0;
}
