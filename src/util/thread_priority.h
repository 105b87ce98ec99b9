// LowerThisThreadPriority: puts the calling thread in Linux's SCHED_IDLE
// class, so that it runs only on CPU time no normal thread wants. For
// background maintenance that has no deadline and holds no lock while it
// computes (the ANN index rebuild, engine/snapshot.cc): on a saturated
// server it waits instead of taking a core from feeds and writes.
//
// Lowering is always permitted; raising it again is not (without
// CAP_SYS_NICE), so call it only on a thread that ends with the work, never
// on one that will later take a lock others wait for. Falls back to nice 19
// where SCHED_IDLE is refused. Returns false if neither took.
#pragma once

#include <pthread.h>
#include <sched.h>
#include <sys/resource.h>
#include <sys/syscall.h>
#include <unistd.h>

namespace foryou {

inline bool LowerThisThreadPriority() {
  sched_param param{};
  param.sched_priority = 0;
  if (pthread_setschedparam(pthread_self(), SCHED_IDLE, &param) == 0) return true;
  return setpriority(PRIO_PROCESS, static_cast<id_t>(syscall(SYS_gettid)), 19) == 0;
}

}  // namespace foryou
