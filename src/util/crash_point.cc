#include "util/crash_point.h"

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
  static const std::string armed = [] {
    const char* v = std::getenv("FORYOU_FAIL_AT");
    return std::string(v != nullptr ? v : "");
  }();
  return !armed.empty() && armed == name;
}

}  // namespace foryou
