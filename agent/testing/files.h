// Small file helpers for the agent's tests on real files: write, read,
// check and make, failing the running test with errno on what must work.
#ifndef DISPATCHD_AGENT_TESTING_FILES_H_
#define DISPATCHD_AGENT_TESTING_FILES_H_

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <string>

#include "absl/strings/string_view.h"
#include "gtest/gtest.h"

namespace dispatchd::agent::testing {

// Creates or truncates `path` and writes `content` (open, write, close).
inline void WriteFile(const std::string& path, absl::string_view content) {
  int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  ASSERT_GE(fd, 0) << path << ": " << std::strerror(errno);
  while (!content.empty()) {
    ssize_t n = write(fd, content.data(), content.size());
    ASSERT_GT(n, 0) << std::strerror(errno);
    content.remove_prefix(n);
  }
  ASSERT_EQ(close(fd), 0);
}

// The whole content, or "<missing>" when it cannot be opened.
inline std::string ReadFile(const std::string& path) {
  int fd = open(path.c_str(), O_RDONLY | O_CLOEXEC);
  if (fd < 0) return "<missing>";
  std::string content;
  char buffer[4096];
  ssize_t n;
  while ((n = read(fd, buffer, sizeof(buffer))) > 0) content.append(buffer, n);
  close(fd);
  return content;
}

// Anything at `path`, a dangling symlink included.
inline bool Exists(const std::string& path) {
  struct stat st;
  return lstat(path.c_str(), &st) == 0;
}

inline void MakeDir(const std::string& path) {
  ASSERT_EQ(mkdir(path.c_str(), 0755), 0) << path << ": " << std::strerror(errno);
}

}  // namespace dispatchd::agent::testing

#endif  // DISPATCHD_AGENT_TESTING_FILES_H_
