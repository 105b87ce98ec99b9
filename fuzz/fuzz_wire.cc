// libFuzzer: the region-to-region wire formats as received by POST
// /v1/backup/{region}/records and /audit and by foryou restore
// (replication/wire.h): a backup batch, and an audit batch, whose records a
// backup's copy of the audit log then checks (AuditLog::AppendRecords); and a
// cluster log entry as a follower or a restore reads it from JetStream
// (cluster/log_entry.h), joined with parts, and any record split and joined
// again, which must give back the same bytes.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "audit/audit_log.h"
#include "cluster/log_entry.h"
#include "replication/wire.h"
#include "storage/store.h"
#include "scratch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static foryou::AuditLog* copy = [] {
    const std::string d = foryou_fuzz::ScratchPath("wire");
    std::filesystem::remove_all(d);
    std::unique_ptr<foryou::AuditLog> log;
    (void)foryou::AuditLog::OpenCopy(d, std::string(32, '\x01'), &log);
    return log.release();  // lives as long as the process
  }();
  const std::string_view in(reinterpret_cast<const char*>(data), size);
  foryou::LogBatch batch;
  (void)foryou::DecodeLogBatch(in, &batch);
  foryou::LogEntry entry;
  if (foryou::DecodeLogEntry(in, &entry).ok()) {
    const std::vector<std::string> parts(entry.parts.size(), std::string(in.substr(0, in.size() / 2)));
    std::vector<bool> held(entry.parts.size());
    for (size_t i = 0; i < held.size(); ++i) held[i] = i % 2 == 0;
    std::string record;
    bool partial = false;
    (void)foryou::JoinPartial(entry, parts, held, &record, &partial);
  }
  std::vector<std::string> parts;
  if (foryou::SplitRecord(in, &entry, &parts).ok()) {
    std::string back;
    if (!foryou::JoinRecord(entry, parts, &back).ok() || back != in) __builtin_trap();
  }
  foryou::AuditBatch audit;
  if (foryou::DecodeAuditBatch(in, &audit).ok() && copy != nullptr) {
    (void)copy->AppendRecords(audit.first, audit.records, /*sync=*/false);
  }
  return 0;
}
