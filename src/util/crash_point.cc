#include "util/crash_point.h"

#include <atomic>
#include <csignal>
#include <cstdlib>
#include <map>
#include <string>

namespace foryou {

void CrashPoint(std::string_view name) {
  static const std::string armed = [] {
    const char* v = std::getenv("FORYOU_CRASH_AT");
    return std::string(v != nullptr ? v : "");
  }();
  if (!armed.empty() && armed == name) std::raise(SIGKILL);
}

bool FailPoint(std::string_view name) {
  struct Armed {
    std::string name;
    long limit = -1;  // -1: every time
  };
  static const Armed armed = [] {
    const char* v = std::getenv("FORYOU_FAIL_AT");
    Armed a{std::string(v != nullptr ? v : "")};
    if (auto hash = a.name.find('#'); hash != std::string::npos) {
      a.limit = std::strtol(a.name.c_str() + hash + 1, nullptr, 10);
      a.name.resize(hash);
    }
    return a;
  }();
  static std::atomic<long> fired{0};
  if (armed.name.empty() || armed.name != name) return false;
  return armed.limit < 0 || fired.fetch_add(1) < armed.limit;
}

namespace {
std::atomic<bool> sync_points_set{false};
std::map<std::string, std::function<void()>, std::less<>>& SyncPoints() {
  static auto* points = new std::map<std::string, std::function<void()>, std::less<>>;
  return *points;
}
}  // namespace

void SyncPoint(std::string_view name) {
  if (!sync_points_set.load(std::memory_order_relaxed)) return;
  auto it = SyncPoints().find(name);
  if (it != SyncPoints().end()) it->second();
}

void SetSyncPoint(std::string_view name, std::function<void()> fn) {
  SyncPoints().insert_or_assign(std::string(name), std::move(fn));
  sync_points_set.store(true);
}

void ClearSyncPoints() {
  sync_points_set.store(false);
  SyncPoints().clear();
}

}  // namespace foryou
