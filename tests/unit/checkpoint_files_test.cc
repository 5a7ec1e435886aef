// Checkpoint archives (common/checkpoint_archive.h) and rungd's store of them
// (server/store/checkpoint_files.h), on a real temporary folder.
#include "server/store/checkpoint_files.h"

#include <chrono>
#include <filesystem>
#include <fstream>
#include <sstream>

#include "common/checkpoint_archive.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"
#include "tests/test_util.h"

namespace rung {
namespace {

using ::testing::HasSubstr;
namespace fs = std::filesystem;

std::string Read(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

void Write(const std::string& path, const std::string& data) {
  fs::create_directories(fs::path(path).parent_path());
  std::ofstream(path, std::ios::binary | std::ios::trunc) << data;
}

TEST(CheckpointArchiveTest, AFolderRoundTripsAndTheTargetIsEmptiedFirst) {
  testing::TempDir dir;
  Write(dir.Sub("src/model.pt"), std::string(3 << 20, 'w'));  // over one read buffer
  Write(dir.Sub("src/opt/state.bin"), std::string("\0\n\x01", 3));
  fs::create_directories(dir.Sub("src/empty"));
  auto packed = PackFolder(dir.Sub("src"), dir.Sub("a.ckpt"));
  ASSERT_TRUE(packed.ok()) << packed.status();
  EXPECT_EQ(packed->files, 2);
  EXPECT_EQ(packed->bytes, static_cast<int64_t>(fs::file_size(dir.Sub("a.ckpt"))));
  EXPECT_EQ(*FileCrc32c(dir.Sub("a.ckpt")), packed->crc32c);

  Write(dir.Sub("dst/stale.txt"), "from an earlier attempt");
  ASSERT_TRUE(UnpackArchive(dir.Sub("a.ckpt"), dir.Sub("dst")).ok());
  EXPECT_EQ(Read(dir.Sub("dst/model.pt")), std::string(3 << 20, 'w'));
  EXPECT_EQ(Read(dir.Sub("dst/opt/state.bin")), std::string("\0\n\x01", 3));
  EXPECT_TRUE(fs::is_directory(dir.Sub("dst/empty")));
  EXPECT_FALSE(fs::exists(dir.Sub("dst/stale.txt")));
}

TEST(CheckpointArchiveTest, CrcIsCastagnoli) {
  EXPECT_EQ(Crc32c(0, "123456789", 9), 0xE3069283u);  // the standard check value
}

TEST(CheckpointArchiveTest, SymlinksTruncationAndEscapingPathsAreRefused) {
  testing::TempDir dir;
  Write(dir.Sub("src/a"), "x");
  fs::create_symlink("/etc/passwd", dir.Sub("src/link"));
  auto packed = PackFolder(dir.Sub("src"), dir.Sub("a.ckpt"));
  EXPECT_THAT(std::string(packed.status().message()),
              HasSubstr("holds link, which is not a regular file"));

  Write(dir.Sub("bad.ckpt"), "RUNGCKPT 1\nF 1 ../escape\nx\nEND\n");
  EXPECT_THAT(std::string(UnpackArchive(dir.Sub("bad.ckpt"), dir.Sub("dst")).message()),
              HasSubstr("bad entry"));
  EXPECT_FALSE(fs::exists(dir.Sub("escape")));
  Write(dir.Sub("short.ckpt"), "RUNGCKPT 1\nF 10 a\nxyz");
  EXPECT_THAT(std::string(UnpackArchive(dir.Sub("short.ckpt"), dir.Sub("dst")).message()),
              HasSubstr("ends in the middle of a file"));
  EXPECT_TRUE(fs::is_empty(dir.Sub("dst")));
}

TEST(CheckpointFilesTest, AnUploadResumesIsCheckedAndIsKeptOnlyWhileNeeded) {
  testing::TempDir dir;
  auto files = CheckpointFiles::Open(dir.Sub("ckpt"), 1 << 20);
  ASSERT_TRUE(files.ok());
  CheckpointFiles& f = **files;
  const std::string data = "0123456789";
  const uint32_t crc = Crc32c(0, data.data(), data.size());
  ASSERT_TRUE(f.Append("e1", "e1-1", 2, 0, data.substr(0, 4)).ok());
  // A resend from the wrong place is refused with where the upload stands.
  EXPECT_THAT(std::string(f.Append("e1", "e1-1", 2, 0, "0123").message()),
              HasSubstr("stands at 4, not 0"));
  EXPECT_EQ(f.Received("e1", "e1-1", 2), 4);
  // A broken call leaves what arrived, to resume from.
  EXPECT_EQ(f.Commit("e1", "e1-1", 2, 10, crc).code(), absl::StatusCode::kUnavailable);
  EXPECT_EQ(f.Received("e1", "e1-1", 2), 4);
  ASSERT_TRUE(f.Append("e1", "e1-1", 2, 4, data.substr(4)).ok());
  EXPECT_EQ(f.Commit("e1", "e1-1", 2, 10, crc ^ 1).code(), absl::StatusCode::kDataLoss);
  EXPECT_EQ(f.Received("e1", "e1-1", 2), 0);  // dropped: the worker starts again
  ASSERT_TRUE(f.Append("e1", "e1-1", 2, 0, data).ok());
  ASSERT_TRUE(f.Commit("e1", "e1-1", 2, 10, crc).ok());
  EXPECT_TRUE(f.Commit("e1", "e1-1", 2, 10, crc).ok());  // a resend
  EXPECT_EQ(*f.Read("e1", "e1-1", 2, 3, 4), "3456");
  EXPECT_EQ(f.bytes_stored(), 10);
  EXPECT_EQ(f.archives(), 1);
  EXPECT_THAT(std::string(f.CheckSize("e1-1", 2 << 20).message()),
              HasSubstr("is 2 MiB (2097152 bytes); rungd stores checkpoints of at most 1 MiB"));

  ASSERT_TRUE(f.Append("e1", "e1-2", 1, 0, "part").ok());
  // Reopened (a restart) it counts what is there.
  files->reset();
  files = CheckpointFiles::Open(dir.Sub("ckpt"), 0);
  EXPECT_EQ((*files)->archives(), 1);
  const auto later = fs::file_time_type::clock::now() + std::chrono::hours(1);
  // Files written after the keep-set was taken are spared: their uploads may be new.
  (*files)->Collect({{"e1", {}}}, fs::file_time_type::clock::now() - std::chrono::hours(1));
  EXPECT_TRUE(fs::exists(dir.Sub("ckpt/e1/e1-2/1.part")));
  (*files)->Collect({{"e1", {{"e1-1", {2}}}}}, later);
  EXPECT_FALSE(fs::exists(dir.Sub("ckpt/e1/e1-2")));
  EXPECT_TRUE(fs::exists(dir.Sub("ckpt/e1/e1-1/2.ckpt")));
  (*files)->Collect({{"e1", {}}}, later);
  EXPECT_FALSE(fs::exists(dir.Sub("ckpt/e1")));
  EXPECT_EQ((*files)->bytes_stored(), 0);
}

}  // namespace
}  // namespace rung
