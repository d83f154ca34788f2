// A secret (a bearer token) kept in a file rather than on the command line
// or in the environment, where `ps` and `docker inspect` show it: container
// secrets (/run/secrets/...), systemd credentials, a 0600 file.
//
// Thread-safe (no state).
#ifndef DISPATCHD_COMMON_SECRET_FILE_H_
#define DISPATCHD_COMMON_SECRET_FILE_H_

#include <string>

#include "absl/status/statusor.h"
#include "absl/strings/string_view.h"

namespace dispatchd {

// The file's content without trailing white space (editors and `echo` add a
// newline). InvalidArgument naming the path when it cannot be read, is larger
// than 64 KiB or holds nothing but white space. The error never contains the
// content.
absl::StatusOr<std::string> ReadSecretFile(absl::string_view path);

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_SECRET_FILE_H_
