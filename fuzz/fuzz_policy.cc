// libFuzzer: the policy file (policy/policy.h), read as foryou serve reads it.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <string>

#include "policy/policy.h"
#include "scratch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string path = foryou_fuzz::ScratchPath("policy") + ".toml";
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out.write(reinterpret_cast<const char*>(data), static_cast<std::streamsize>(size));
  }
  auto policy = foryou::Policy::Load(path);
  if (policy.ok()) {
    for (const auto& region : policy->regions()) {
      (void)policy->Check(region, "key", "US", foryou::Access::kRead);
      (void)policy->BackupRegionsFor(region);
    }
  }
  return 0;
}
