// RaiseOpenFileLimit: lifts this process's soft limit on open files to its
// hard limit and returns the new soft limit. A server holding thousands of
// keep-alive connections needs one descriptor each, and the usual soft limit
// (1,024) would make accept() fail long before memory or CPU runs out.
#pragma once

#include <sys/resource.h>

#include <cstdint>

namespace foryou {

inline uint64_t RaiseOpenFileLimit() {
  rlimit lim{};
  if (getrlimit(RLIMIT_NOFILE, &lim) != 0) return 0;
  if (lim.rlim_cur < lim.rlim_max) {
    rlimit raised = lim;
    raised.rlim_cur = lim.rlim_max;
    if (setrlimit(RLIMIT_NOFILE, &raised) == 0) lim = raised;
  }
  return static_cast<uint64_t>(lim.rlim_cur);
}

}  // namespace foryou
