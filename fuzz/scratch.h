// Where the harnesses that must hand a file to the code under test write it.
//
// Memory-backed /dev/shm when the machine has it: on /tmp (a disk here) the
// file write per input was most of the time of fuzz_policy and fuzz_audit_log
// (block-device interrupts in the profile), capping them near 2,700 and 1,200
// executions per second. Falls back to /tmp.
#ifndef FORYOU_FUZZ_SCRATCH_H_
#define FORYOU_FUZZ_SCRATCH_H_

#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <string>

namespace foryou_fuzz {

// A per-process path prefix, e.g. "/dev/shm/foryou-fuzz-policy-1234".
inline std::string ScratchPath(const std::string& name) {
  const char* base = access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp";
  return std::string(base) + "/foryou-fuzz-" + name + "-" + std::to_string(getpid());
}

// For LLVMFuzzerInitialize: when FORYOU_FUZZ_WRITE_SEEDS names a directory,
// writes the harness's seed corpus there with `write(dir)` (which returns how
// many seeds it wrote) and exits, 0 if it wrote any.
template <typename WriteFn>
void WriteSeedsIfAsked(WriteFn write) {
  const char* out = std::getenv("FORYOU_FUZZ_WRITE_SEEDS");
  if (out == nullptr) return;
  const int n = write(std::string(out));
  std::fprintf(stderr, "wrote %d seeds to %s\n", n, out);
  std::exit(n > 0 ? 0 : 1);
}

}  // namespace foryou_fuzz

#endif  // FORYOU_FUZZ_SCRATCH_H_
