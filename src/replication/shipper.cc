#include "replication/shipper.h"

#include <fmt/format.h>
#include <httplib.h>
#include <nlohmann/json.hpp>
#include <spdlog/spdlog.h>

#include <algorithm>

#include "policy/policy.h"
#include "replication/region_client.h"
#include "replication/wire.h"
#include "util/coding.h"

namespace foryou {

namespace {
// A backup region's answer may be anything (a proxy's 3 MB error page): what
// is kept, logged and shown on GET /v1/region is its first line, printable,
// at most 200 characters.
std::string FirstLine(const std::string& raw) {
  std::string why;
  for (char c : raw) {
    if (c == '\n' || c == '\r' || why.size() >= 200) break;
    why.push_back(c >= 0x20 && c < 0x7f ? c : '?');
  }
  if (why.size() < raw.size()) why += "...";
  return why;
}
}  // namespace

Shipper::Shipper(Engine& engine, std::string source_region, std::vector<BackupTarget> targets, std::string api_key,
                 ShipperOptions options)
    : engine_(engine), source_(std::move(source_region)), api_key_(std::move(api_key)), options_(options) {
  for (auto& t : targets) {
    Target target;
    target.stats.region = t.region;
    target.where = std::move(t);
    targets_.push_back(std::move(target));
  }
}

Shipper::~Shipper() {
  {
    std::lock_guard lock(mu_);
    stop_ = true;
  }
  wake_.notify_all();
  shipped_.notify_all();
  for (auto& t : threads_) t.join();
}

void Shipper::ShipAuditLog(const AuditLog* audit, SealedAuditKeys sealed_keys) {
  audit_ = audit;
  sealed_audit_keys_ = std::move(sealed_keys);
}

void Shipper::Start() {
  for (size_t i = 0; i < targets_.size(); ++i) {
    threads_.emplace_back([this, i] { Run(i); });
    if (audit_ != nullptr) threads_.emplace_back([this, i] { RunAudit(i); });
  }
}

void Shipper::Notify() {
  {
    std::lock_guard lock(mu_);
    ++notified_;
  }
  wake_.notify_all();
}

bool Shipper::WaitFor(uint64_t seq, std::chrono::milliseconds timeout) {
  Notify();
  std::unique_lock lock(mu_);
  // Stored by every target; or stop waiting as soon as one that lacks it fails.
  auto stored = [&] {
    for (const Target& t : targets_) {
      if (!t.known || t.stats.shipped_seq < seq) return false;
    }
    return true;
  };
  auto failing = [&] {
    for (const Target& t : targets_) {
      if (t.failing && (!t.known || t.stats.shipped_seq < seq)) return true;
    }
    return false;
  };
  shipped_.wait_for(lock, timeout, [&] { return stop_ || stored() || failing(); });
  return !stop_ && stored();
}

std::vector<ShipperTargetStats> Shipper::Stats() const {
  const uint64_t last = engine_.LastSeq();
  const auto now = std::chrono::steady_clock::now();
  std::lock_guard lock(mu_);
  std::vector<ShipperTargetStats> out;
  for (const Target& t : targets_) {
    out.push_back(t.stats);
    out.back().lag_seconds =
        t.known && t.stats.shipped_seq >= last ? 0.0 : std::chrono::duration<double>(now - t.caught_up).count();
  }
  return out;
}

Status Shipper::CheckSameHistory(uint64_t target_seq, const std::string& target_hash) const {
  if (target_seq > engine_.LastSeq()) {
    return Status::Conflict(fmt::format("diverged: the backup holds {} records of this region, this log only {} "
                                        "(restored from an older backup?); clear that backup to resume",
                                        target_seq, engine_.LastSeq()));
  }
  if (target_seq == 0) return Status::OK();
  LogBatch batch;
  FORYOU_RETURN_IF_ERROR(engine_.ReadLog(target_seq, 1, &batch));
  if (batch.records.empty() || batch.records[0].first != target_seq ||
      Sha256Hex(batch.records[0].second + (batch.macs.empty() ? std::string() : batch.macs[0])) != target_hash) {
    return Status::Conflict(fmt::format("diverged: the backup's record {} differs from this log's; clear that backup "
                                        "to resume",
                                        target_seq));
  }
  return Status::OK();
}

Status Shipper::CheckSameAuditHistory(uint64_t target_size, const std::string& target_hash) const {
  const uint64_t here = audit_->Head().tree_size;
  if (target_size > here) {
    return Status::Conflict(fmt::format("audit log diverged: the backup holds {} entries of this region's audit log, "
                                        "this log only {} (entries were cut off here, or the region was restored from "
                                        "an older backup); audit shipping to it stopped",
                                        target_size, here));
  }
  if (target_size == 0) return Status::OK();
  std::vector<std::string> last;
  FORYOU_RETURN_IF_ERROR(audit_->ReadRecords(target_size - 1, 1, &last));
  if (last.empty() || Sha256Hex(last[0]) != target_hash) {
    return Status::Conflict(fmt::format("audit log diverged: the backup's audit entry {} differs from this log's; audit "
                                        "shipping to it stopped",
                                        target_size - 1));
  }
  return Status::OK();
}

std::unique_ptr<httplib::Client> Shipper::ConnectTo(size_t index, std::string* url, std::string* region) const {
  {
    std::lock_guard lock(mu_);
    *url = targets_[index].where.url;
    *region = targets_[index].where.region;
  }
  return RegionClient(*url, {options_.ca_file, api_key_, options_.timeout_s, options_.timeout_s, options_.cert_file,
                            options_.key_file});
}

void Shipper::Run(size_t index) {
  std::string url, region;
  auto client_ptr = ConnectTo(index, &url, &region);
  httplib::Client& client = *client_ptr;
  const std::string status_path = fmt::format("/v1/backup/{}/status", source_);
  const std::string records_path = fmt::format("/v1/backup/{}/records", source_);
  int backoff = options_.retry_ms;
  bool known = false;
  uint64_t shipped = 0;
  auto fail = [&](const std::string& raw) {
    const std::string why = FirstLine(raw);
    {
      std::lock_guard lock(mu_);
      Target& t = targets_[index];
      t.stats.failures++;
      t.failing = true;
      if (t.stats.last_error != why) spdlog::warn("backup to {}: {}", region, why);
      t.stats.last_error = why;
    }
    shipped_.notify_all();  // writers waiting on this target stop waiting
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, std::chrono::milliseconds(backoff), [&] { return stop_; });
    backoff = std::min(backoff * 2, 2000);
  };
  auto advance = [&](uint64_t seq) {
    {
      std::lock_guard lock(mu_);
      Target& t = targets_[index];
      t.known = true;
      // A target that failed stays "failing" (writes do not wait on it)
      // until it has caught up with the log.
      if (seq >= engine_.LastSeq()) {
        t.failing = false;
        t.caught_up = std::chrono::steady_clock::now();
      }
      t.stats.shipped_seq = seq;
      t.stats.last_error.clear();
    }
    shipped_.notify_all();
    backoff = options_.retry_ms;
  };
  // What a target answers is checked for type before use: a broken or
  // hostile answer is a failed attempt, never an exception.
  auto last_seq_of = [](const std::string& body) -> std::optional<uint64_t> {
    auto j = nlohmann::json::parse(body, nullptr, false);
    if (j.is_object() && j.contains("last_seq") && j["last_seq"].is_number_unsigned()) return j["last_seq"].get<uint64_t>();
    return std::nullopt;
  };
  auto last_hash_of = [](const std::string& body) {
    auto j = nlohmann::json::parse(body, nullptr, false);
    return j.is_object() && j.contains("last_hash") && j["last_hash"].is_string() ? j["last_hash"].get<std::string>()
                                                                                  : std::string();
  };

  while (true) {
    uint64_t seen_notified;
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
      seen_notified = notified_;
    }
    if (!known) {
      auto r = client.Get(status_path.c_str());
      if (!r) {
        fail(fmt::format("{} unreachable ({})", url, httplib::to_string(r.error())));
        continue;
      }
      auto seq = r->status == 200 ? last_seq_of(r->body) : std::nullopt;
      if (!seq) {
        fail(fmt::format("status: HTTP {}: {}", r->status, r->body));
        continue;
      }
      // The target must hold a prefix of this log: not more, not another.
      if (Status s = CheckSameHistory(*seq, last_hash_of(r->body)); !s.ok()) {
        fail(s.message());
        continue;
      }
      // The wrapped store key goes with every batch; once on connecting, so
      // that a rotated region key reaches the backup without waiting for a write.
      if (!engine_.WrappedStoreKey().empty()) {
        LogBatch key_only;
        key_only.store_key = engine_.WrappedStoreKey();
        auto k = client.Post(records_path.c_str(), EncodeLogBatch(key_only), "application/octet-stream");
        if (!k || k->status != 200) {
          fail(k ? fmt::format("store key: HTTP {}: {}", k->status, k->body) : std::string("store key: no answer"));
          continue;
        }
      }
      known = true;
      shipped = *seq;
      advance(shipped);
    }
    if (engine_.LastSeq() <= shipped) {
      std::unique_lock lock(mu_);
      wake_.wait_for(lock, std::chrono::milliseconds(options_.poll_ms),
                     [&] { return stop_ || notified_ != seen_notified; });
      continue;
    }
    LogBatch batch;
    if (Status s = engine_.ReadLog(shipped + 1, options_.max_batch_bytes, &batch); !s.ok()) {
      fail("reading the log: " + s.ToString());
      continue;
    }
    if (batch.records.empty()) continue;
    const std::string body = EncodeLogBatch(batch);
    auto r = client.Post(records_path.c_str(), body, "application/octet-stream");
    if (!r) {
      fail(fmt::format("{} unreachable ({})", url, httplib::to_string(r.error())));
      continue;
    }
    auto seq = last_seq_of(r->body);
    if (r->status == 200 && seq) {
      shipped = *seq;
      advance(shipped);
    } else if (r->status == 409) {
      known = false;  // the target is elsewhere in the log: ask where, and check it is this log
    } else {
      fail(fmt::format("HTTP {}: {}", r->status, r->body));
    }
  }
}

// The audit log to one target, on its own thread and connection, so that a
// slow or hostile audit endpoint never holds back the data (Run). Every
// failure waits (doubling up to 2 s); a target whose copy is not a prefix of
// this log, or that refuses this log's key, stops the audit shipping to it
// (audit_error) until the server restarts.
void Shipper::RunAudit(size_t index) {
  std::string url, region;
  auto client_ptr = ConnectTo(index, &url, &region);
  httplib::Client& client = *client_ptr;
  const std::string status_path = fmt::format("/v1/backup/{}/status", source_);
  const std::string audit_path = fmt::format("/v1/backup/{}/audit", source_);
  const std::string public_key = *HexDecode(audit_->PublicKeyHex());
  int backoff = options_.retry_ms;
  bool known = false, keys_sent = false;
  uint64_t shipped = 0;
  auto set = [&](uint64_t entries, const std::string& error) {
    std::lock_guard lock(mu_);
    Target& t = targets_[index];
    if (!error.empty() && t.stats.audit_error != error) spdlog::error("backup to {}: {}", region, error);
    t.stats.audit_entries = entries;
    t.stats.audit_error = error;
  };
  // Waits `ms` or until stopped; false when stopped.
  auto pause = [&](int ms) {
    std::unique_lock lock(mu_);
    wake_.wait_for(lock, std::chrono::milliseconds(ms), [&] { return stop_; });
    return !stop_;
  };
  auto fail = [&](const std::string& raw) {
    {
      std::lock_guard lock(mu_);
      targets_[index].stats.audit_error = "retrying: " + FirstLine(raw);
    }
    const bool go_on = pause(backoff);
    backoff = std::min(backoff * 2, 2000);
    return go_on;
  };
  auto stopped_for_good = [&](const std::string& why) {
    set(shipped, why);
    while (pause(60'000)) {
    }
  };
  for (;;) {
    {
      std::lock_guard lock(mu_);
      if (stop_) return;
    }
    if (!known) {
      auto r = client.Get(status_path.c_str());
      if (!r) {
        if (!fail(fmt::format("{} unreachable ({})", url, httplib::to_string(r.error())))) return;
        continue;
      }
      auto j = nlohmann::json::parse(r->body, nullptr, false);
      if (r->status != 200 || !j.is_object()) {
        if (!fail(fmt::format("status: HTTP {}: {}", r->status, r->body))) return;
        continue;
      }
      if (!j.contains("audit_size") || !j["audit_size"].is_number_unsigned() || !j.contains("audit_last_hash") ||
          !j["audit_last_hash"].is_string()) {
        return stopped_for_good("the backup region does not take audit logs (an older foryou?); audit log not shipped");
      }
      const uint64_t size = j["audit_size"].get<uint64_t>();
      if (Status s = CheckSameAuditHistory(size, j["audit_last_hash"].get<std::string>()); !s.ok()) {
        shipped = size;
        return stopped_for_good(s.message());
      }
      shipped = size;
      known = true;
      keys_sent = false;
      set(shipped, "");
    }
    if (keys_sent && audit_->Head().tree_size <= shipped) {
      if (!pause(options_.poll_ms)) return;
      continue;
    }
    AuditBatch batch;
    batch.first = shipped;
    if (Status s = audit_->ReadRecords(shipped, options_.max_batch_bytes, &batch.records); !s.ok()) {
      if (!fail("reading the audit log: " + s.ToString())) return;
      continue;
    }
    if (!keys_sent) {
      batch.public_key = public_key;
      if (!sealed_audit_keys_.sealed.empty()) batch.sealed_keys = {sealed_audit_keys_};
    }
    auto r = client.Post(audit_path.c_str(), EncodeAuditBatch(batch), "application/octet-stream");
    if (!r) {
      if (!fail(fmt::format("{} unreachable ({})", url, httplib::to_string(r.error())))) return;
      continue;
    }
    auto j = nlohmann::json::parse(r->body, nullptr, false);
    const bool sized = j.is_object() && j.contains("audit_size") && j["audit_size"].is_number_unsigned();
    const uint64_t size = sized ? j["audit_size"].get<uint64_t>() : 0;
    if (r->status == 200 && sized && size >= batch.first + batch.records.size()) {
      // It holds what was sent (a copy that says it holds more than that is
      // checked on the next connection, not believed).
      shipped = batch.first + batch.records.size();
      keys_sent = true;
      backoff = options_.retry_ms;
      set(shipped, "");
    } else if (r->status == 409) {
      // Its copy ends elsewhere, or is another key's: ask where, after a
      // pause; a copy that is not a prefix of this log stops the shipping.
      known = false;
      if (!fail(fmt::format("audit log: HTTP 409: {}", r->body))) return;
    } else {
      if (!fail(fmt::format("audit log: HTTP {}: {}", r->status, r->body))) return;
    }
  }
}

}  // namespace foryou
