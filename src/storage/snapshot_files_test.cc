// SnapshotFiles (storage/snapshot_files.h): a snapshot streamed piece by
// piece, with bytes rewritten in place before the commit, is read back as
// the body it ends up with; damage to it is found; a writer dropped before
// its commit leaves no snapshot.
#include "storage/snapshot_files.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "util/temp_dir.h"

namespace foryou {
namespace {

void WriteAnn(SnapshotFiles& files, uint64_t seq, const std::string& bytes) {
  auto path = files.AnnTempPath(seq);
  ASSERT_TRUE(path.ok());
  std::ofstream(*path, std::ios::binary) << bytes;
}

TEST(SnapshotFilesTest, AStreamedBodyWithBytesRewrittenInPlaceReadsBackWhole) {
  TempDir dir;
  SnapshotFiles files(dir.Sub("snapshots"));
  WriteAnn(files, 7, "the graph");
  auto w = files.BeginWrite(7);
  ASSERT_TRUE(w.ok()) << w.status().ToString();
  ASSERT_TRUE((*w)->Append("head-").ok());
  ASSERT_TRUE((*w)->Append("XXXX").ok());  // rewritten below, as a length known only at the end
  ASSERT_TRUE((*w)->Append(std::string(3 << 20, 'u')).ok());  // more than one read-back chunk
  ASSERT_TRUE((*w)->Append("-tail").ok());
  EXPECT_EQ((*w)->body_size(), 5u + 4 + (3u << 20) + 5);
  EXPECT_FALSE((*w)->Overwrite((*w)->body_size() - 2, "abc").ok());  // past the end: refused
  ASSERT_TRUE((*w)->Overwrite(5, "LEN!").ok());
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_FALSE((*w)->Append("late").ok());

  MappedFile mapping;
  std::string_view body;
  std::string ann_path;
  ASSERT_TRUE(files.Read(7, &mapping, &body, &ann_path).ok());
  EXPECT_EQ(body, "head-LEN!" + std::string(3 << 20, 'u') + "-tail");
  EXPECT_EQ(ReadFileBytes(ann_path), "the graph");

  // The same body written in one go gives the same file, byte for byte.
  SnapshotFiles again(dir.Sub("again"));
  WriteAnn(again, 7, "the graph");
  ASSERT_TRUE(again.Write(7, std::string(body)).ok());
  EXPECT_TRUE(ReadFileBytes(files.StatePath(7)) == ReadFileBytes(again.StatePath(7)));

  // One flipped byte anywhere in the body is found by the hash.
  mapping.Reset();
  FlipByte(files.StatePath(7), ReadFileBytes(files.StatePath(7)).size() / 2);
  EXPECT_EQ(files.Read(7, &mapping, &body, &ann_path).code(), StatusCode::kCorruption);
}

TEST(SnapshotFilesTest, AWriterDroppedBeforeItsCommitLeavesNoSnapshot) {
  TempDir dir;
  SnapshotFiles files(dir.Sub("snapshots"));
  WriteAnn(files, 3, "graph");
  {
    auto w = files.BeginWrite(3);
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append("half a body").ok());
  }
  EXPECT_TRUE(files.List().empty());
  ASSERT_TRUE(files.RemoveTemporaries().ok());
  EXPECT_TRUE(std::filesystem::is_empty(dir.Sub("snapshots")));
}

}  // namespace
}  // namespace foryou
