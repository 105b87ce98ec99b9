// ReadModelFile: what `foryou model import` accepts and how it refuses the
// rest (docs/FORMATS.md, "Model artifact").
#include "model/model_file.h"

#include <gtest/gtest.h>

#include <filesystem>
#include <fstream>

#include "audit/signing.h"
#include "util/coding.h"
#include "util/temp_dir.h"

namespace foryou {
namespace {

class ModelFileTest : public ::testing::Test {
 protected:
  void SetUp() override {
    seed_ = std::string(32, '\x07');
    trusted_ = HexEncode(Ed25519PublicKey(seed_));
    path_ = (std::filesystem::path(dir_.path()) / "m.fym").string();
    ASSERT_TRUE(WriteModelFile(path_, R"({"videos":3})", payload_,
                               [&](const std::string& m) { return Ed25519Sign(seed_, m); })
                    .ok());
  }
  void Truncate(uint64_t bytes) { std::filesystem::resize_file(path_, bytes); }

  TempDir dir_;
  std::string seed_, trusted_, path_;
  const std::string payload_ = std::string("model payload bytes \0 with a zero", 33);
};

TEST_F(ModelFileTest, ASignedFileReadsBackAsWritten) {
  std::string meta, payload;
  ASSERT_TRUE(ReadModelFile(path_, trusted_, &meta, &payload).ok());
  EXPECT_EQ(meta, R"({"videos":3})");
  EXPECT_EQ(payload, payload_);
}

TEST_F(ModelFileTest, ATruncatedFileIsNamedTruncated) {
  const uint64_t size = std::filesystem::file_size(path_);
  for (uint64_t cut : {size - 1, size - 64, uint64_t{30}}) {
    std::filesystem::copy_file(path_, path_ + ".full", std::filesystem::copy_options::overwrite_existing);
    Truncate(cut);
    std::string meta, payload;
    const Status s = ReadModelFile(path_, trusted_, &meta, &payload);
    EXPECT_EQ(s.code(), StatusCode::kCorruption) << cut;
    EXPECT_NE(s.message().find("truncated"), std::string::npos) << cut << ": " << s.ToString();
    std::filesystem::rename(path_ + ".full", path_);
  }
}

TEST_F(ModelFileTest, ADeviceOrAnotherFileIsRefusedWithoutReadingIt) {
  std::string meta, payload;
  // /dev/zero would never end: refused before any of it is read.
  const Status dev = ReadModelFile("/dev/zero", trusted_, &meta, &payload);
  EXPECT_EQ(dev.code(), StatusCode::kInvalidArgument) << dev.ToString();
  EXPECT_NE(dev.message().find("not a regular file"), std::string::npos) << dev.ToString();
  EXPECT_EQ(ReadModelFile(path_ + ".missing", trusted_, &meta, &payload).code(), StatusCode::kNotFound);
  std::ofstream(path_ + ".txt") << std::string(200, 'x');
  const Status other = ReadModelFile(path_ + ".txt", trusted_, &meta, &payload);
  EXPECT_NE(other.message().find("not a foryou model file"), std::string::npos) << other.ToString();
}

TEST_F(ModelFileTest, AnotherKeyOrAFlippedByteFailsTheSignature) {
  std::string meta, payload;
  const std::string other = HexEncode(Ed25519PublicKey(std::string(32, '\x09')));
  EXPECT_NE(ReadModelFile(path_, other, &meta, &payload).message().find("signature"), std::string::npos);
  EXPECT_EQ(ReadModelFile(path_, "not hex", &meta, &payload).code(), StatusCode::kInvalidArgument);
  {
    std::fstream f(path_, std::ios::in | std::ios::out | std::ios::binary);
    f.seekp(40);  // in the payload (magic 8, meta length 4, meta 12, payload length 8)
    f.put('!');
  }
  const Status s = ReadModelFile(path_, trusted_, &meta, &payload);
  EXPECT_EQ(s.code(), StatusCode::kCorruption);
  EXPECT_NE(s.message().find("signature"), std::string::npos) << s.ToString();
}

}  // namespace
}  // namespace foryou
