#include "start_limit.hpp"

#include <algorithm>

namespace meshmaster::master {

namespace {
// A failure at `t` counts at `now` while now - t < interval (systemd's window is half-open too).
bool within(start_limit::time_point t, start_limit::time_point now, std::chrono::milliseconds interval) {
    return now - t < std::chrono::duration_cast<start_limit::time_point>(interval);
}
}  // namespace

bool start_limit::failed(time_point now, std::uint32_t burst, std::chrono::milliseconds interval) {
    if (burst == 0) {  // no limit: nothing to count
        failures_.clear();
        return false;
    }
    failures_.push_back(now);
    while (!failures_.empty() && !within(failures_.front(), now, interval)) failures_.pop_front();
    // Never more kept than can matter: a burst that shrank with a reload must not grow the deque.
    while (failures_.size() > burst) failures_.pop_front();
    return failures_.size() >= burst;
}

std::uint32_t start_limit::recent(time_point now, std::chrono::milliseconds interval) const {
    return static_cast<std::uint32_t>(
        std::count_if(failures_.begin(), failures_.end(), [&](time_point t) { return within(t, now, interval); }));
}

}  // namespace meshmaster::master
