#include "common/checkpoint_archive.h"

#include <algorithm>
#include <array>
#include <filesystem>
#include <fstream>
#include <vector>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_split.h"

namespace rung {

namespace fs = std::filesystem;

namespace {

constexpr char kMagic[] = "RUNGCKPT 1";
constexpr size_t kBuffer = 1 << 20;

std::array<uint32_t, 256> MakeTable() {
  std::array<uint32_t, 256> t{};
  for (uint32_t i = 0; i < 256; ++i) {
    uint32_t c = i;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0x82F63B78u ^ (c >> 1) : c >> 1;
    t[i] = c;
  }
  return t;
}

bool SafePath(const std::string& p) {
  if (p.empty() || p.front() == '/' || p.find('\n') != std::string::npos) return false;
  for (absl::string_view part : absl::StrSplit(p, '/')) {
    if (part.empty() || part == "." || part == "..") return false;
  }
  return true;
}

absl::Status EmptyFolder(const std::string& dir) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  if (ec) return absl::InternalError(absl::StrCat("cannot create ", dir, ": ", ec.message()));
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    fs::remove_all(entry.path(), ec);
    if (ec) {
      return absl::InternalError(
          absl::StrCat("cannot remove ", entry.path().string(), ": ", ec.message()));
    }
  }
  if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  return absl::OkStatus();
}

}  // namespace

uint32_t Crc32c(uint32_t crc, const char* data, size_t n) {
  static const std::array<uint32_t, 256> table = MakeTable();
  crc = ~crc;
  for (size_t i = 0; i < n; ++i)
    crc = table[(crc ^ static_cast<uint8_t>(data[i])) & 0xff] ^ (crc >> 8);
  return ~crc;
}

absl::StatusOr<uint32_t> FileCrc32c(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", path));
  std::vector<char> buf(kBuffer);
  uint32_t crc = 0;
  while (in) {
    in.read(buf.data(), static_cast<std::streamsize>(buf.size()));
    crc = Crc32c(crc, buf.data(), static_cast<size_t>(in.gcount()));
  }
  if (in.bad()) return absl::DataLossError(absl::StrCat("error reading ", path));
  return crc;
}

absl::StatusOr<PackedArchive> PackFolder(const std::string& dir, const std::string& archive) {
  std::vector<std::pair<std::string, fs::directory_entry>> entries;
  std::error_code ec;
  if (fs::exists(dir, ec)) {
    for (auto it = fs::recursive_directory_iterator(dir, ec); !ec && it != fs::end(it);
         it.increment(ec)) {
      const std::string rel = it->path().lexically_relative(dir).generic_string();
      if (!SafePath(rel)) {
        return absl::InvalidArgumentError(
            absl::StrCat("checkpoint folder ", dir, ": cannot pack the name '", rel, "'"));
      }
      if (!it->is_symlink() && (it->is_directory() || it->is_regular_file())) {
        entries.emplace_back(rel, *it);
        continue;
      }
      return absl::InvalidArgumentError(
          absl::StrCat("checkpoint folder ", dir, " holds ", rel,
                       ", which is not a regular file or folder (rung copies only those)"));
    }
    if (ec) return absl::InternalError(absl::StrCat("cannot list ", dir, ": ", ec.message()));
  }
  std::sort(entries.begin(), entries.end(),
            [](const auto& a, const auto& b) { return a.first < b.first; });

  std::ofstream out(archive, std::ios::binary | std::ios::trunc);
  if (!out) return absl::InternalError(absl::StrCat("cannot write ", archive));
  PackedArchive packed;
  auto put = [&](const char* data, size_t n) {
    out.write(data, static_cast<std::streamsize>(n));
    packed.crc32c = Crc32c(packed.crc32c, data, n);
    packed.bytes += static_cast<int64_t>(n);
  };
  auto put_line = [&](const std::string& line) { put(line.data(), line.size()); };
  put_line(absl::StrCat(kMagic, "\n"));
  std::vector<char> buf(kBuffer);
  for (const auto& [rel, entry] : entries) {
    if (entry.is_directory()) {
      put_line(absl::StrCat("D ", rel, "\n"));
      continue;
    }
    std::ifstream in(entry.path(), std::ios::binary);
    if (!in) return absl::InternalError(absl::StrCat("cannot read ", entry.path().string()));
    const uintmax_t size = entry.file_size(ec);
    if (ec) return absl::InternalError(absl::StrCat("cannot size ", entry.path().string()));
    put_line(absl::StrCat("F ", size, " ", rel, "\n"));
    uintmax_t left = size;
    while (left > 0) {
      const size_t n = static_cast<size_t>(std::min<uintmax_t>(left, buf.size()));
      in.read(buf.data(), static_cast<std::streamsize>(n));
      if (static_cast<size_t>(in.gcount()) != n) {
        return absl::AbortedError(
            absl::StrCat(entry.path().string(), " changed while it was packed"));
      }
      put(buf.data(), n);
      left -= n;
    }
    ++packed.files;
  }
  put_line("END\n");
  out.flush();
  if (!out) return absl::ResourceExhaustedError(absl::StrCat("cannot write ", archive));
  return packed;
}

absl::Status UnpackArchive(const std::string& archive, const std::string& dir) {
  if (absl::Status s = EmptyFolder(dir); !s.ok()) return s;
  std::ifstream in(archive, std::ios::binary);
  if (!in) return absl::NotFoundError(absl::StrCat("cannot read ", archive));
  auto bad = [&](const std::string& why) {
    (void)EmptyFolder(dir);
    return absl::DataLossError(absl::StrCat("checkpoint archive ", archive, ": ", why));
  };
  std::string line;
  if (!std::getline(in, line) || line != kMagic) return bad("not a rung checkpoint archive");
  std::vector<char> buf(kBuffer);
  while (std::getline(in, line)) {
    if (line == "END") return absl::OkStatus();
    std::error_code ec;
    if (absl::StartsWith(line, "D ")) {
      const std::string rel = line.substr(2);
      if (!SafePath(rel)) return bad(absl::StrCat("unsafe path '", rel, "'"));
      fs::create_directories(fs::path(dir) / rel, ec);
      if (ec) return bad(absl::StrCat("cannot create ", rel, ": ", ec.message()));
      continue;
    }
    std::vector<std::string> w = absl::StrSplit(line, absl::MaxSplits(' ', 2));
    uint64_t size = 0;
    if (w.size() != 3 || w[0] != "F" || !absl::SimpleAtoi(w[1], &size) || !SafePath(w[2]))
      return bad(absl::StrCat("bad entry '", line.substr(0, 80), "'"));
    const fs::path path = fs::path(dir) / w[2];
    fs::create_directories(path.parent_path(), ec);
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    if (!out) return bad(absl::StrCat("cannot write ", path.string()));
    uint64_t left = size;
    while (left > 0) {
      const size_t n = static_cast<size_t>(std::min<uint64_t>(left, buf.size()));
      in.read(buf.data(), static_cast<std::streamsize>(n));
      if (static_cast<size_t>(in.gcount()) != n) return bad("it ends in the middle of a file");
      out.write(buf.data(), static_cast<std::streamsize>(n));
      left -= n;
    }
    out.flush();
    if (!out) return bad(absl::StrCat("cannot write ", path.string()));
  }
  return bad("it has no END line (truncated)");
}

}  // namespace rung
