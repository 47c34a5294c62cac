// `completion<T>`: how a worker's callback tells the slave library it is done.
//
// Every callback receives one. Call it exactly once — with the result (the shard's state for
// stop_shard, nothing for the others) or with `fail(reason)` — from any thread, at any later time:
// the library posts the result back to its own executor. A completion destroyed without being
// called counts as a failure, so a forgotten completion is reported instead of hanging a restart.
//
// Thread safety: a completion may be moved to and invoked from any thread; invoking it twice is a
// programmer error (the second call is ignored).
#pragma once

#include <cstddef>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace meshmaster::slave {

/// What a callback produced: success (with the state, for stop_shard) or a failure reason.
struct outcome {
    bool ok = true;
    std::string error;
    std::vector<std::byte> state;
};

namespace detail {
/// Where a completion delivers its outcome (implemented by the library; posts to its executor).
class completion_target {
public:
    virtual ~completion_target() = default;
    virtual void deliver(outcome result) = 0;
};
}  // namespace detail

template <class T = void>
class completion;

namespace detail {
class completion_base {
public:
    explicit completion_base(std::shared_ptr<completion_target> target) noexcept : target_(std::move(target)) {}
    completion_base(completion_base&&) noexcept = default;
    completion_base& operator=(completion_base&& other) noexcept {
        if (this != &other) {
            drop();
            target_ = std::move(other.target_);
        }
        return *this;
    }
    completion_base(const completion_base&) = delete;
    completion_base& operator=(const completion_base&) = delete;
    ~completion_base() { drop(); }

    /// Reports that the callback failed; the library tells the master.
    void fail(std::string reason) { finish({.ok = false, .error = std::move(reason)}); }
    /// Whether the completion has not been used yet.
    [[nodiscard]] explicit operator bool() const noexcept { return target_ != nullptr; }

protected:
    void finish(outcome result) {
        if (auto target = std::exchange(target_, nullptr)) target->deliver(std::move(result));
    }

private:
    void drop() noexcept {
        if (target_) {
            try {
                finish({.ok = false, .error = "the callback dropped its completion without calling it"});
            } catch (...) {
            }
        }
    }
    std::shared_ptr<completion_target> target_;
};
}  // namespace detail

/// Completion of a callback that returns nothing (start, resume, soft/full start, shutdown).
template <>
class completion<void> : public detail::completion_base {
public:
    using completion_base::completion_base;
    void operator()() { finish({}); }
};

/// Completion of stop_shard: hand back the shard's state, any size up to the configured limit.
template <>
class completion<std::vector<std::byte>> : public detail::completion_base {
public:
    using completion_base::completion_base;
    void operator()(std::vector<std::byte> state) { finish({.state = std::move(state)}); }
};

}  // namespace meshmaster::slave
