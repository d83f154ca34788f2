#include "common/secret_file.h"

#include <cerrno>
#include <cstring>
#include <fstream>
#include <iterator>

#include "absl/strings/ascii.h"
#include "absl/strings/str_cat.h"

namespace dispatchd {

absl::StatusOr<std::string> ReadSecretFile(absl::string_view path) {
  constexpr size_t kMaxBytes = 64 * 1024;
  const std::string p(path);
  std::ifstream in(p, std::ios::binary);
  if (!in) {
    return absl::InvalidArgumentError(
        absl::StrCat("cannot read secret file ", p, ": ", std::strerror(errno)));
  }
  std::string content;
  content.resize(kMaxBytes + 1);
  in.read(content.data(), static_cast<std::streamsize>(content.size()));
  if (in.bad()) {
    return absl::InvalidArgumentError(absl::StrCat("cannot read secret file ", p));
  }
  content.resize(static_cast<size_t>(in.gcount()));
  if (content.size() > kMaxBytes) {
    return absl::InvalidArgumentError(
        absl::StrCat("secret file ", p, " is larger than ", kMaxBytes, " bytes"));
  }
  absl::StripTrailingAsciiWhitespace(&content);
  if (content.empty()) {
    return absl::InvalidArgumentError(absl::StrCat("secret file ", p, " is empty"));
  }
  return content;
}

}  // namespace dispatchd
