// libFuzzer: an audit log file as `foryou audit verify` and a server start
// read it (audit/audit_log.h): verified, read, and opened.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <memory>
#include <string>
#include <vector>

#include "audit/audit_log.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = "/tmp/foryou-fuzz-audit-" + std::to_string(getpid());
    std::filesystem::remove_all(d);
    std::unique_ptr<foryou::AuditLog> log;  // creates the keys once
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
