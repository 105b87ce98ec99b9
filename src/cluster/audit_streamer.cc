#include "cluster/audit_streamer.h"

#include <fmt/format.h>
#include <spdlog/spdlog.h>

#include <algorithm>
#include <chrono>
#include <filesystem>
#include <memory>

#include "util/coding.h"

namespace foryou {

AuditStreamer::AuditStreamer(const AuditLog& audit, ClusterLog& log, AuditStreamerOptions options)
    : audit_(audit), log_(log), options_(options) {
  public_key_ = HexDecode(audit_.PublicKeyHex()).value_or(std::string());
}

AuditStreamer::~AuditStreamer() { (void)Stop(); }

AuditStreamerStats AuditStreamer::Stats() const {
  std::lock_guard lock(mu_);
  return stats_;
}

Status AuditStreamer::Resume() {
  auto last = log_.LastAudit(public_key_);
  if (!last.ok()) return last.status();
  uint64_t held = 0;
  if (*last) {
    const AuditBatch& b = **last;
    held = b.first + b.records.size();
    const uint64_t here = audit_.Head().tree_size;
    if (held > here) {
      return Status::Conflict(fmt::format(
          "audit log diverged: the region's stream holds {} entries of this replica's audit log, the log only {} "
          "(entries were cut off here, or the log was replaced by an older copy); audit shipping stopped",
          held, here));
    }
    if (!b.records.empty()) {
      std::vector<std::string> mine;
      FORYOU_RETURN_IF_ERROR(audit_.ReadRecords(held - 1, 1, &mine));
      if (mine.empty() || mine[0] != b.records.back()) {
        return Status::Conflict(fmt::format("audit log diverged: the region's stream holds another entry {} than this "
                                            "replica's audit log; audit shipping stopped",
                                            held - 1));
      }
    }
  }
  std::lock_guard lock(mu_);
  stats_.shipped = held;
  return Status::OK();
}

Status AuditStreamer::ShipAvailable() {
  if (public_key_.size() != 32) return Status::Internal("audit streamer: the log has no public key");
  if (!resumed_) {
    FORYOU_RETURN_IF_ERROR(Resume());
    resumed_ = true;
  }
  bool looked_again = false;
  for (;;) {
    uint64_t from;
    {
      std::lock_guard lock(mu_);
      from = stats_.shipped;
    }
    if (from >= audit_.Head().tree_size) return Status::OK();
    AuditBatch batch;
    batch.first = from;
    batch.public_key = public_key_;
    // A batch may pass its limit by one record; half the server's largest
    // message leaves room for that and the encoding.
    const size_t limit = std::min(options_.batch_bytes, std::max<size_t>(1, log_.MaxMessageBytes() / 2));
    FORYOU_RETURN_IF_ERROR(audit_.ReadRecords(from, limit, &batch.records));
    if (batch.records.empty()) return Status::OK();
    Status published = log_.PublishAudit(batch);
    if (published.code() == StatusCode::kConflict && !looked_again) {
      // The stream holds this batch already: ours (a publish that timed out
      // and was kept after the stream was last read), or another process's
      // with the same key. Where the stream ends, checked against this log,
      // tells which.
      looked_again = true;
      FORYOU_RETURN_IF_ERROR(Resume());
      continue;
    }
    FORYOU_RETURN_IF_ERROR(published);
    std::lock_guard lock(mu_);
    stats_.shipped = from + batch.records.size();
  }
}

Status AuditStreamer::Flush() {
  {
    std::lock_guard lock(mu_);
    if (!stats_.error.empty()) return Status::Conflict(stats_.error);
  }
  Status s = ShipAvailable();
  if (!s.ok()) {
    // A publish that timed out may have been kept all the same: look again
    // where the stream ends before the next attempt.
    resumed_ = false;
    std::lock_guard lock(mu_);
    ++stats_.failures;
    // A diverged history is for good; anything else is tried again.
    if (s.code() == StatusCode::kConflict) stats_.error = s.message();
  }
  return s;
}

void AuditStreamer::Start() {
  run_ = std::thread([this] { Run(); });
}

void AuditStreamer::Run() {
  bool failing = false;
  for (;;) {
    {
      std::unique_lock lock(mu_);
      cv_.wait_for(lock, std::chrono::milliseconds(failing ? options_.retry_ms : options_.idle_ms),
                   [&] { return stop_; });
      if (stop_ || !stats_.error.empty()) return;
    }
    Status s = Flush();
    if (!s.ok() && !failing) {
      if (s.code() == StatusCode::kConflict) {
        spdlog::error("cluster: {}", s.message());
      } else {
        spdlog::warn("cluster: shipping the audit log: {}; trying again every {} ms", s.ToString(), options_.retry_ms);
      }
    } else if (s.ok() && failing) {
      spdlog::info("cluster: shipping the audit log again");
    }
    failing = !s.ok();
  }
}

Status AuditStreamer::Stop() {
  {
    std::lock_guard lock(mu_);
    if (stop_) return Status::OK();
    stop_ = true;
  }
  cv_.notify_all();
  if (run_.joinable()) run_.join();
  return Flush();
}

Status PublishAuditCopies(const std::string& data_dir, ClusterLog& log, uint64_t* logs, uint64_t* entries) {
  *logs = *entries = 0;
  const std::filesystem::path root = std::filesystem::path(data_dir) / kReplicaAuditDir;
  std::error_code ec;
  if (!std::filesystem::is_directory(root, ec)) return Status::OK();
  std::vector<std::filesystem::path> dirs;
  for (const auto& e : std::filesystem::directory_iterator(root, ec)) {
    if (e.is_directory()) dirs.push_back(e.path() / "audit");
  }
  if (ec) return Status::IOError(fmt::format("reading {}: {}", root.string(), ec.message()));
  std::sort(dirs.begin(), dirs.end());
  for (const auto& dir : dirs) {
    auto pub = AuditLog::PublicKeyIn(dir.string());
    if (!pub.ok()) return pub.status();
    std::unique_ptr<AuditLog> copy;
    FORYOU_RETURN_IF_ERROR(AuditLog::OpenCopy(dir.string(), *pub, &copy));
    AuditStreamer streamer(*copy, log);
    if (Status s = streamer.Stop(); !s.ok()) {
      std::string msg = fmt::format("publishing the restored audit log in {}: {}", dir.string(), s.message());
      return s.code() == StatusCode::kConflict ? Status::Conflict(std::move(msg)) : Status::Unavailable(std::move(msg));
    }
    ++*logs;
    *entries += copy->Head().tree_size;
  }
  return Status::OK();
}

}  // namespace foryou
