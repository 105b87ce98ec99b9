// SnapshotFiles: the engine's snapshots on disk (docs/FORMATS.md, "Snapshot").
//
// A snapshot is the engine's derived state as of one log sequence number, so
// that a start loads it and replays only the records after it. It lives in
// <data_dir>/snapshots/ as two files:
//   <seq>.state  [8 bytes "FYSNAPST"][u8 version][fixed64 seq][fixed64 body
//                length][body][fixed64 ann length][fixed64 ann xxHash64]
//                [fixed64 xxHash64 of everything before it]
//   <seq>.ann    the ANN graph, hnswlib's own file format, checked against
//                the length and hash the .state file records
// (<seq> is 20 decimal digits, so names sort by sequence number.) The body is
// opaque here (engine/snapshot.cc says what it holds).
//
// Contract:
// - Write is atomic: both files are written under temporary names, fsynced,
//   then renamed, .ann first; the .state rename is the commit point, and the
//   directory is fsynced after it. A crash at any point leaves either the
//   whole snapshot or none (temporaries and a lone .ann are removed by Prune).
// - Read verifies magic, version, sequence number, lengths and both hashes
//   before returning anything: a damaged snapshot is Corruption, never half
//   read. The caller decides what to do with it (the engine skips it and
//   reports it).
// - Snapshots hold derived state only; the log stays the source of truth.
//
// Thread safety: none; the engine serialises writers (Engine::snapshot_mu_).
#pragma once

#include <cstdint>
#include <memory>
#include <string>
#include <string_view>
#include <vector>

#include "util/mapped_file.h"
#include "util/status.h"

namespace foryou {

// Version 2 (issue 12): the body's video statistics and user entries carry
// the sums of the viewer-normalised watch (learning/watch_norm.h). Version 3
// (issue 11): the model section carries the ANN graph's in-place moves
// (AnnIndex::moves), so that its rebuild comes due across restarts. An older
// snapshot is skipped like any unreadable one: the start replays the log
// (and writes a current snapshot in time). Version 5 (issue 12): the model
// section carries the sequence model's video vectors, and the ranker one
// feature more.
constexpr uint8_t kSnapshotFormatVersion = 5;

class SnapshotFiles {
 public:
  explicit SnapshotFiles(std::string dir) : dir_(std::move(dir)) {}
  const std::string& dir() const { return dir_; }

  // Sequence numbers of the committed snapshots (those with a .state file),
  // newest first. Empty if the directory does not exist.
  std::vector<uint64_t> List() const;

  // Where the caller writes the ANN file of `seq` before Write (the
  // directory exists once this returns OK).
  Result<std::string> AnnTempPath(uint64_t seq) const;
  // Commits the snapshot of `seq`: `body` is the state, and the ANN file is
  // at AnnTempPath(seq). Replaces a snapshot of the same seq.
  Status Write(uint64_t seq, std::string_view body) { return Write(seq, std::vector<std::string_view>{body}); }
  // The same, with the body given as pieces to be written in order (so that
  // a large body need not be copied into one string first).
  Status Write(uint64_t seq, const std::vector<std::string_view>& body);

  // The same, streamed: the body goes to the temporary .state file piece by
  // piece as the caller has it (so that it never needs to be in memory at
  // once), and Commit writes the header, then the footer with the hash of
  // everything before it (read back from the file), and commits as Write.
  // A writer dropped without Commit leaves temporaries (RemoveTemporaries).
  class StateWriter {
   public:
    ~StateWriter();
    Status Append(std::string_view piece);
    // Rewrites body bytes already appended, from body offset `at`.
    Status Overwrite(uint64_t at, std::string_view bytes);
    uint64_t body_size() const { return body_size_; }
    Status Commit();

   private:
    friend class SnapshotFiles;
    StateWriter(SnapshotFiles* files, uint64_t seq) : files_(files), seq_(seq) {}
    SnapshotFiles* files_;
    uint64_t seq_;
    std::string path_;
    int fd_ = -1;
    uint64_t body_size_ = 0;
  };
  // Starts the snapshot of `seq`; its ANN file goes to AnnTempPath(seq)
  // before Commit.
  Result<std::unique_ptr<StateWriter>> BeginWrite(uint64_t seq);

  // Commits a snapshot whose two files were put whole at StateTempPath(seq)
  // and AnnTempPath(seq) (fetched from elsewhere): fsync, rename, as Write.
  // The directory exists once StateTempPath returns OK.
  Result<std::string> StateTempPath(uint64_t seq) const;
  Status Install(uint64_t seq);

  // Reads and verifies the snapshot of `seq`: its body (a view into
  // `mapping`, the .state file mapped into memory: valid while `mapping`
  // lives), and the path of its verified ANN file. Corruption names what is
  // wrong.
  Status Read(uint64_t seq, MappedFile* mapping, std::string_view* body, std::string* ann_path) const;

  // Keeps the newest `keep` snapshots; removes the rest, temporaries and
  // .ann files without their .state.
  // Removes the temporaries of writes that failed or were cut short (a full
  // disk, a crash): they hold no snapshot and may hold gigabytes.
  Status RemoveTemporaries();
  Status Prune(size_t keep);
  // Removes every snapshot (open-mode erasure: docs/SOVEREIGNTY.md).
  Status RemoveAll();

  std::string StatePath(uint64_t seq) const;
  std::string AnnPath(uint64_t seq) const;
  // Bytes on disk of the snapshot of `seq` (both files), 0 if absent.
  uint64_t Bytes(uint64_t seq) const;

 private:
  std::string dir_;
};

}  // namespace foryou
