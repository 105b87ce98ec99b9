// libFuzzer: the region-to-region wire formats as received by POST
// /v1/backup/{region}/records and /audit and by foryou restore
// (replication/wire.h): a backup batch, and an audit batch, whose records a
// backup's copy of the audit log then checks (AuditLog::AppendRecords).
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <memory>
#include <string>
#include <string_view>

#include "audit/audit_log.h"
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
  foryou::AuditBatch audit;
  if (foryou::DecodeAuditBatch(in, &audit).ok() && copy != nullptr) {
    (void)copy->AppendRecords(audit.first, audit.records, /*sync=*/false);
  }
  return 0;
}
