// libFuzzer: an audit log file as `foryou audit verify` and a server start
// read it (audit/audit_log.h): verified, read, and opened. An input that
// begins "FYHEAD01" is a head file (AuditLogOptions::head_file) instead: read,
// and a log of 3 entries opened against it.
//
// The log's keys are fixed (written before the first open), so that the
// committed seed corpus (fuzz/corpus/audit_log), whose entries are signed
// with them, gets past the signature checks into the tree and frontier code.
// `FORYOU_FUZZ_WRITE_SEEDS=DIR fuzz_audit_log` writes that corpus again:
// a log of a few entries as a fresh region writes it, the active segment
// a rotation begins (its header carries a Merkle frontier), and the head
// files of that log at 3 entries and at 12 (against the 3-entry log: a cut).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <string_view>
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

// Entry i of the seed log (the same bytes every run: fixed keys, fixed times).
foryou::AuditEntry SeedEntry(int i) {
  foryou::AuditEntry e;
  e.ts_ms = 1700000000000 + i;
  e.principal = i % 2 ? "ops" : "open";
  e.action = i % 3 ? "events.write" : "user.erase";
  e.subject = "u" + std::to_string(i);
  e.outcome = "200";
  e.request_id = i % 4 ? "" : "req-" + std::to_string(i);
  return e;
}

// Writes the seed corpus into `out`; returns the number of seeds.
int WriteSeeds(const std::string& out) {
  const std::string dir = foryou_fuzz::ScratchPath("audit-seeds");
  std::filesystem::remove_all(dir);
  std::filesystem::remove(dir + ".head");
  WriteFixedKeys(dir);
  std::filesystem::create_directories(out);
  foryou::AuditLogOptions options;
  options.segment_bytes = 1024;  // the smallest the server accepts: a rotation after a few entries
  options.head_file = dir + ".head";
  std::unique_ptr<foryou::AuditLog> log;
  if (!foryou::AuditLog::Open(dir, &log, options).ok()) return 0;
  int seeds = 0;
  for (int i = 0; i < 12; ++i) {
    if (!log->Append(SeedEntry(i), true).ok()) return seeds;
    if (i == 2) {
      CopyFile(dir + "/log", out + "/fresh-3-entries"), ++seeds;
      CopyFile(options.head_file, out + "/head-of-3-entries"), ++seeds;
    }
  }
  log.reset();
  CopyFile(dir + "/log", out + "/after-rotation"), ++seeds;
  CopyFile(options.head_file, out + "/head-of-12-entries"), ++seeds;
  std::filesystem::remove_all(dir);
  std::filesystem::remove(options.head_file);
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
  if (size >= 8 && std::string_view(reinterpret_cast<const char*>(data), 8) == "FYHEAD01") {
    // A head file, against the seed log's first 3 entries.
    static const std::string head_dir = [] {
      const std::string d = foryou_fuzz::ScratchPath("audit-head");
      std::filesystem::remove_all(d);
      WriteFixedKeys(d);
      std::unique_ptr<foryou::AuditLog> log;
      if (foryou::AuditLog::Open(d, &log).ok()) {
        for (int i = 0; i < 3; ++i) (void)log->Append(SeedEntry(i), false);
      }
      return d;
    }();
    foryou::AuditLogOptions options;
    options.head_file = head_dir + ".head";
    {
      std::ofstream out(options.head_file, std::ios::binary | std::ios::trunc);
      out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
    }
    static const std::string public_key = *foryou::AuditLog::PublicKeyIn(head_dir);
    (void)foryou::AuditLog::ReadHeadFile(options.head_file, public_key);
    std::unique_ptr<foryou::AuditLog> log;
    (void)foryou::AuditLog::Open(head_dir, &log, options);
    return 0;
  }
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
