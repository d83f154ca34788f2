// FileSink: appends each event to a file as one line of JSON (EventToJson
// plus "\n"), creating the file (mode 0644) if needed. Directories are not
// created.
//
// Each Write opens the file with O_APPEND, writes the whole line and closes
// it, so a rotated or deleted file is simply re-created and several writers
// never interleave within a line. A failing Write returns the OS error
// (Unavailable for a full disk, PermissionDenied, NotFound for a missing
// directory, ...) and writes nothing or a partial line; a RetryingSink in
// front of it retries. Thread-safe.
#ifndef DISPATCHD_SINKS_FILE_SINK_H_
#define DISPATCHD_SINKS_FILE_SINK_H_

#include <atomic>
#include <string>

#include "sinks/sink.h"

namespace dispatchd {
namespace sinks {

class FileSink final : public Sink {
 public:
  explicit FileSink(std::string path) : path_(std::move(path)) {}

  absl::Status Write(EventPtr event) override;
  absl::Status Close() override;

  const std::string& path() const { return path_; }

 private:
  const std::string path_;
  std::atomic<bool> closed_{false};
};

}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_FILE_SINK_H_
