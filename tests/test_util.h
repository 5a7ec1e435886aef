// Helpers shared by rung's tests.
#ifndef RUNG_TESTS_TEST_UTIL_H_
#define RUNG_TESTS_TEST_UTIL_H_

#include <stdlib.h>

#include <cstdio>
#include <cstdlib>
#include <filesystem>
#include <string>

namespace rung::testing {

// A fresh folder under /tmp (short, so Unix socket paths fit), removed on destruction.
class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/rung-test-XXXXXX";
    path_ = mkdtemp(tmpl);
  }
  ~TempDir() {
    if (std::getenv("RUNG_TEST_KEEP") != nullptr) {  // for a look after a failure
      std::fprintf(stderr, "kept %s (RUNG_TEST_KEEP)\n", path_.c_str());
      return;
    }
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  const std::string& path() const { return path_; }
  std::string Sub(const std::string& name) const { return path_ + "/" + name; }

 private:
  std::string path_;
};

}  // namespace rung::testing

#endif  // RUNG_TESTS_TEST_UTIL_H_
