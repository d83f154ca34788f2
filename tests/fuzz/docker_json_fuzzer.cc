// Fuzzes the decoders of the Docker engine's JSON that the agent relies on
// (agent/docker_client.h): the container list (GET /containers/json), a
// container's inspect, an exec's inspect, the lines of GET /events, and the
// line splitter of the events stream. Every input goes through all of them,
// so real answers of the engine make good seeds for each.
//
// Invariants:
// - no decoder crashes, whatever the bytes;
// - every string decoded is valid UTF-8: it ends up in a proto3 `string`
//   field of the session, which would refuse to serialize anything else;
// - names have no leading '/';
// - the line splitter yields the same lines however the bytes are chunked.
#include <algorithm>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/strings/str_split.h"
#include "agent/docker_client.h"
#include "tests/fuzz/fuzz_check.h"

namespace {

using namespace dispatchd::agent;

bool IsUtf8(const std::string& s) {
  size_t i = 0;
  while (i < s.size()) {
    const unsigned char c = static_cast<unsigned char>(s[i]);
    size_t n;
    uint32_t cp;
    if (c < 0x80) {
      ++i;
      continue;
    } else if ((c & 0xE0) == 0xC0) {
      n = 1;
      cp = c & 0x1F;
    } else if ((c & 0xF0) == 0xE0) {
      n = 2;
      cp = c & 0x0F;
    } else if ((c & 0xF8) == 0xF0) {
      n = 3;
      cp = c & 0x07;
    } else {
      return false;
    }
    for (size_t k = 1; k <= n; ++k) {
      if (i + k >= s.size()) return false;
      const unsigned char d = static_cast<unsigned char>(s[i + k]);
      if ((d & 0xC0) != 0x80) return false;
      cp = (cp << 6) | (d & 0x3F);
    }
    if ((n == 1 && cp < 0x80) || (n == 2 && cp < 0x800) || (n == 3 && cp < 0x10000)) return false;
    if (cp > 0x10FFFF || (cp >= 0xD800 && cp <= 0xDFFF)) return false;
    i += n + 1;
  }
  return true;
}

void CheckContainer(const ContainerInfo& info) {
  FUZZ_CHECK(IsUtf8(info.id)) << "container id is not UTF-8";
  FUZZ_CHECK(IsUtf8(info.name)) << "container name is not UTF-8";
  FUZZ_CHECK(info.name.empty() || info.name[0] != '/') << "name keeps its '/': " << info.name;
  for (const auto& [key, value] : info.labels) {
    FUZZ_CHECK(IsUtf8(key) && IsUtf8(value)) << "label is not UTF-8";
  }
  FUZZ_CHECK(ContainerStateName(info.state).size() > 0);
}

// The lines of `input` as LineSplitter documents them.
std::vector<std::string> ReferenceLines(const std::string& input, std::string* partial) {
  std::vector<std::string> lines = absl::StrSplit(input, '\n');
  *partial = lines.back();
  lines.pop_back();
  for (std::string& line : lines) {
    if (!line.empty() && line.back() == '\r') line.pop_back();
  }
  return lines;
}

void CheckLineSplitter(const std::string& input) {
  std::string partial;
  const std::vector<std::string> want = ReferenceLines(input, &partial);
  // Whole, byte by byte, and in uneven chunks: the same lines.
  for (int pattern = 0; pattern < 3; ++pattern) {
    internal::LineSplitter splitter;
    std::vector<std::string> got;
    size_t pos = 0;
    size_t step = 1;
    while (pos < input.size()) {
      size_t n = pattern == 0 ? input.size() : pattern == 1 ? 1 : (step++ % 7) + 1;
      n = std::min(n, input.size() - pos);
      splitter.Append(absl::string_view(input).substr(pos, n));
      pos += n;
      // Popping between appends must not change anything either.
      if (pattern == 2) {
        while (std::optional<std::string> line = splitter.Pop()) got.push_back(*line);
      }
    }
    while (std::optional<std::string> line = splitter.Pop()) got.push_back(*line);
    FUZZ_CHECK(got == want) << "pattern " << pattern << ": " << got.size() << " lines, want "
                            << want.size();
    FUZZ_CHECK(splitter.partial_size() == partial.size())
        << splitter.partial_size() << " bytes held back, want " << partial.size();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string input(reinterpret_cast<const char*>(data), size);

  absl::StatusOr<std::vector<ContainerInfo>> list = internal::ParseContainerList(input);
  if (list.ok()) {
    for (const ContainerInfo& info : *list) CheckContainer(info);
  }
  absl::StatusOr<ContainerInfo> inspect = internal::ParseContainerInspect("inspect", input);
  if (inspect.ok()) CheckContainer(*inspect);
  absl::StatusOr<ExecInfo> exec = internal::ParseExecInspect("inspect exec", input);
  (void)exec;

  // The events stream: one JSON object per line.
  for (const std::string& line : std::vector<std::string>(absl::StrSplit(input, '\n'))) {
    absl::StatusOr<DockerEvent> event = internal::ParseDockerEvent(line);
    if (!event.ok()) continue;
    FUZZ_CHECK(IsUtf8(event->type) && IsUtf8(event->action) && IsUtf8(event->id))
        << "event field is not UTF-8";
    for (const auto& [key, value] : event->attributes) {
      FUZZ_CHECK(IsUtf8(key) && IsUtf8(value)) << "event attribute is not UTF-8";
    }
  }
  CheckLineSplitter(input);
  return 0;
}
