// libFuzzer: a snapshot as a start reads it (docs/FORMATS.md, "Snapshot"):
// the input as a whole .state file (framing, lengths and checksums:
// storage/snapshot_files.h), and as a body decoded past its checksum
// (Engine::DecodeSnapshotBody: every section, user entries, limits), since a
// checksum only stops accidents. The ANN file is hnswlib's own format, not
// parsed here: a start reads it only after its length and hash match the
// .state file, and in cluster mode only after the snapshot's MAC verified.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "config/options.h"
#include "engine/engine.h"
#include "storage/snapshot_files.h"
#include "scratch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = foryou_fuzz::ScratchPath("snapshot");
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d + "/snapshots");
    return d;
  }();
  static const foryou::EngineOptions options;  // the defaults, as the seed corpus was written
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  {
    std::ofstream out(dir + "/snapshots/00000000000000000001.state", std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  foryou::SnapshotFiles files(dir + "/snapshots");
  std::string body, ann_path;
  (void)files.Read(1, &body, &ann_path);
  (void)foryou::Engine::DecodeSnapshotBody(options, bytes, dir + "/no-such.ann");
  return 0;
}
