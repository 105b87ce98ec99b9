// libFuzzer: an audit log file as `foryou audit verify` and a server start
// read it (audit/audit_log.h): verified, read, and opened.
//
// The log's keys are fixed (written before the first open), so that the
// committed seed corpus (fuzz/corpus/audit_log), whose entries are signed
// with them, gets past the signature checks into the tree and frontier code.
// `FORYOU_FUZZ_WRITE_SEEDS=DIR fuzz_audit_log` writes that corpus again:
// a log of a few entries as a fresh region writes it, and the active segment
// a rotation begins (its header carries a Merkle frontier).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "audit/audit_log.h"
#include "scratch.h"

namespace {

void WriteFixedKeys(const std::string& dir) {
  std::filesystem::create_directories(dir);
  std::ofstream(dir + "/signing.key", std::ios::binary) << std::string(32, '\x5a');
  std::ofstream(dir + "/pseudonym.key", std::ios::binary) << std::string(32, '\x3c');
}

void CopyFile(const std::string& from, const std::string& to) {
  std::filesystem::copy_file(from, to, std::filesystem::copy_options::overwrite_existing);
}

// Writes the seed corpus into `out`; returns the number of seeds.
int WriteSeeds(const std::string& out) {
  const std::string dir = foryou_fuzz::ScratchPath("audit-seeds");
  std::filesystem::remove_all(dir);
  WriteFixedKeys(dir);
  std::filesystem::create_directories(out);
  foryou::AuditLogOptions options;
  options.segment_bytes = 1024;  // the smallest the server accepts: a rotation after a few entries
  std::unique_ptr<foryou::AuditLog> log;
  if (!foryou::AuditLog::Open(dir, &log, options).ok()) return 0;
  int seeds = 0;
  for (int i = 0; i < 12; ++i) {
    foryou::AuditEntry e;
    e.ts_ms = 1700000000000 + i;
    e.principal = i % 2 ? "ops" : "open";
    e.action = i % 3 ? "events.write" : "user.erase";
    e.subject = "u" + std::to_string(i);
    e.outcome = "200";
    e.request_id = i % 4 ? "" : "req-" + std::to_string(i);
    if (!log->Append(e, true).ok()) return seeds;
    if (i == 2) CopyFile(dir + "/log", out + "/fresh-3-entries"), ++seeds;
  }
  log.reset();
  CopyFile(dir + "/log", out + "/after-rotation"), ++seeds;
  std::filesystem::remove_all(dir);
  return seeds;
}

}  // namespace

extern "C" int LLVMFuzzerInitialize(int*, char***) {
  foryou_fuzz::WriteSeedsIfAsked(WriteSeeds);
  return 0;
}

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = foryou_fuzz::ScratchPath("audit");
    std::filesystem::remove_all(d);
    WriteFixedKeys(d);
    std::unique_ptr<foryou::AuditLog> log;  // writes public.key once
    (void)foryou::AuditLog::Open(d, &log);
    return d;
  }();
  {
    std::ofstream out(dir + "/log", std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  foryou::SignedTreeHead head;
  (void)foryou::AuditLog::Verify(dir, nullptr, &head);
  std::vector<foryou::AuditEntry> entries;
  std::vector<foryou::Hash> leaves;
  (void)foryou::AuditLog::ReadAll(dir, &entries, &leaves);
  std::unique_ptr<foryou::AuditLog> log;
  (void)foryou::AuditLog::Open(dir, &log);
  return 0;
}
