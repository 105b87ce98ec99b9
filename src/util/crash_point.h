// Crash and fault points: named steps inside multi-step operations (erasure and its
// key scrub, rekey, restore, migration) where a test makes the process die
// exactly as `kill -9` would, to prove the operation is complete or cleanly
// not done at the next start (tests/crash_points_test.cc).
//
// FORYOU_CRASH_AT=NAME in the environment arms one point for the process;
// reaching it raises SIGKILL. Unarmed, a point costs one string comparison
// against an empty string. The names in use are listed in docs/RELIABILITY.md.
//
// Thread safety: any thread; the environment is read once. Sync points:
// see below.
#pragma once

#include <functional>
#include <string_view>

namespace foryou {

void CrashPoint(std::string_view name);

// Fault points: FORYOU_FAIL_AT=NAME makes FailPoint(NAME) return true, so
// that the step there fails as if its I/O or computation had (tests of
// error paths no input can reach). FORYOU_FAIL_AT=NAME#N fails only the
// first N times (the error path, then the recovery). Same cost as a crash
// point.
bool FailPoint(std::string_view name);

// Sync points, for tests in this process (RocksDB's TEST_SYNC_POINT): a
// test sets a callback on a named step, and SyncPoint(NAME) runs it there,
// on the thread that reaches it (to do something exactly between two steps
// of an operation, such as a write while an erasure is half way). Unset, a
// point costs one relaxed atomic load. Set and clear them while no other
// thread can reach a point.
void SyncPoint(std::string_view name);
void SetSyncPoint(std::string_view name, std::function<void()> fn);
void ClearSyncPoints();

}  // namespace foryou
