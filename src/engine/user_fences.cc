#include "engine/user_fences.h"

#include "util/coding.h"

namespace foryou {

namespace {
constexpr const char* kPrefix = "fence/";
}

Status UserFences::Load(const Store& store) {
  names_.clear();
  return store.ForEachMeta(kPrefix, [this](std::string_view name, std::string_view) {
    names_.insert(std::string(name.substr(std::string_view(kPrefix).size())));
    return Status::OK();
  });
}

Status UserFences::Set(Store& store, const std::string& name, bool fenced) {
  if (fenced == Has(name)) return Status::OK();
  if (fenced) {
    FORYOU_RETURN_IF_ERROR(store.PutMeta(kPrefix + name, ""));
    names_.insert(name);
  } else {
    FORYOU_RETURN_IF_ERROR(store.DeleteMeta(kPrefix + name));
    names_.erase(name);
  }
  return Status::OK();
}

std::optional<std::pair<std::string, bool>> UserFences::ChangeIn(const LogRecord& rec) {
  if (rec.kind == RecordKind::kFence) return std::make_pair(rec.fence_name, rec.fenced);
  // The name Engine::FenceName gives the user in an encrypted store.
  if (rec.kind == RecordKind::kShred) return std::make_pair("p:" + HexEncode(rec.pseudonym), false);
  return std::nullopt;
}

}  // namespace foryou
