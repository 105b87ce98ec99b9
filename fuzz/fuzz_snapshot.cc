// libFuzzer: a snapshot as a start reads it (docs/FORMATS.md, "Snapshot"):
// the input as a whole .state file (framing, lengths and checksums:
// storage/snapshot_files.h), and as a body decoded past its checksum
// (Engine::DecodeSnapshotBody: every section, user entries, limits), since a
// checksum only stops accidents. The input is also read as an ANN graph
// file (hnswlib's format, read by AnnIndex::Load itself, which checks every
// link; seed: ann-file-dim8), although a start reads one only after its
// length and hash match the .state file, and in cluster mode only after the
// snapshot's MAC verified.
#include <unistd.h>

#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <string>
#include <string_view>

#include "config/options.h"
#include "engine/engine.h"
#include "retrieval/ann_index.h"
#include "storage/snapshot_files.h"
#include "scratch.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  static const std::string dir = [] {
    const std::string d = foryou_fuzz::ScratchPath("snapshot");
    std::filesystem::remove_all(d);
    std::filesystem::create_directories(d + "/snapshots");
    return d;
  }();
  static const foryou::EngineOptions options;  // the defaults, as the seeds `body` and `state-file` were written
  // The sequence model on (learning.sequence_dim 8), as the seeds
  // `body-sequence8` and `state-file-sequence8` were written: its vectors
  // are only decoded when the snapshot's dimension matches the engine's.
  static const foryou::EngineOptions with_sequence = [] {
    foryou::EngineOptions o;
    o.learning.sequence_dim = 8;
    return o;
  }();
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  {
    std::ofstream out(dir + "/snapshots/00000000000000000001.state", std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  foryou::SnapshotFiles files(dir + "/snapshots");
  foryou::MappedFile mapping;
  std::string_view body;
  std::string ann_path;
  (void)files.Read(1, &mapping, &body, &ann_path);
  mapping.Reset();
  (void)foryou::Engine::DecodeSnapshotBody(options, bytes, dir + "/no-such.ann");
  (void)foryou::Engine::DecodeSnapshotBody(with_sequence, bytes, dir + "/no-such.ann");
  {
    std::ofstream out(dir + "/graph.ann", std::ios::binary | std::ios::trunc);
    out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
  }
  foryou::AnnIndex graph(8, options.retrieval);
  if (graph.Load(dir + "/graph.ann", 0).ok()) {
    const float q[8] = {0.1f, -0.2f, 0.3f, 0, 0.5f, -0.1f, 0, 0.2f};
    (void)graph.Search(q, 10);
    (void)graph.Upsert(static_cast<uint32_t>(graph.size()), q);
  }
  return 0;
}
