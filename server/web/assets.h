// The web page's files, built into rungd (server/CMakeLists.txt generates the table).
#ifndef RUNG_SERVER_WEB_ASSETS_H_
#define RUNG_SERVER_WEB_ASSETS_H_

#include <vector>

namespace rung::web {

struct Asset {
  const char* path;         // "/assets/app.js"; the page itself is "/assets/index.html"
  const unsigned char* gz;  // the file, gzipped
  const unsigned char* gz_end;
};

const std::vector<Asset>& Assets();

}  // namespace rung::web

#endif  // RUNG_SERVER_WEB_ASSETS_H_
