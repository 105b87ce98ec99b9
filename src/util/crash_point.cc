#include "util/crash_point.h"

#include <atomic>
#include <csignal>
#include <cstdlib>
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

}  // namespace foryou
