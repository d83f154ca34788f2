// Fuzzes the agent's reader of the Docker events stream (GET /events): the
// input is the raw HTTP response the engine would send (status line,
// headers, a chunked or plain body of JSON lines), fed through a socketpair
// to the same EventStream the agent uses (internal::NewEventStreamFromFd),
// with the peer closed after the last byte.
//
// Invariants:
// - no crash or sanitizer report, whatever the bytes;
// - a stream whose peer has closed never blocks: every call returns at once;
// - once the stream reports an error it keeps reporting one (no event after
//   the end);
// - no more events than lines in the input.
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <chrono>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "agent/docker_client.h"
#include "common/logging.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace dispatchd::agent;

// Bounded so that the whole input fits the socket's buffer before anything
// reads it.
constexpr size_t kMaxInput = 64 * 1024;

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dispatchd::SetMinLogLevel(dispatchd::LogLevel::kError);  // unreadable lines log warnings
  size = std::min(size, kMaxInput);
  int fds[2];
  FUZZ_CHECK(socketpair(AF_UNIX, SOCK_STREAM, 0, fds) == 0) << errno;
  int buffer = 4 * kMaxInput;
  setsockopt(fds[1], SOL_SOCKET, SO_SNDBUF, &buffer, sizeof(buffer));
  setsockopt(fds[0], SOL_SOCKET, SO_RCVBUF, &buffer, sizeof(buffer));
  size_t written = 0;
  while (written < size) {
    const ssize_t n = send(fds[1], data + written, size - written, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (n <= 0) break;  // full: the rest is cut off, as by a dropped connection
    written += static_cast<size_t>(n);
  }
  close(fds[1]);

  const auto start = std::chrono::steady_clock::now();
  auto elapsed = [&] { return std::chrono::steady_clock::now() - start; };
  absl::StatusOr<std::unique_ptr<DockerEventStream>> stream =
      internal::NewEventStreamFromFd(fds[0], absl::Seconds(5));
  FUZZ_CHECK(elapsed() < std::chrono::seconds(4)) << "reading the header waited on a closed peer";
  if (!stream.ok()) return 0;  // not a 200, or no complete header: Open() fails the same way

  const size_t lines = std::count(data, data + written, '\n') + 1;
  size_t events = 0;
  bool ended = false;
  for (int calls = 0; calls < 100000; ++calls) {
    absl::StatusOr<std::optional<DockerEvent>> next = (*stream)->Next(absl::Seconds(5));
    FUZZ_CHECK(elapsed() < std::chrono::seconds(4)) << "Next() waited on a closed peer";
    if (!next.ok()) {
      if (ended) break;  // the error again, as it should be
      ended = true;
      continue;
    }
    FUZZ_CHECK(!ended) << "an event after the stream ended: " << next.status();
    if (!next->has_value()) {
      // A timeout cannot happen on a closed peer: the stream must have said so.
      FUZZ_CHECK(false) << "Next() timed out on a closed peer";
    }
    ++events;
    FUZZ_CHECK(events <= lines) << events << " events from " << lines << " lines";
  }
  FUZZ_CHECK(ended) << "the stream never ended";
  return 0;
}
