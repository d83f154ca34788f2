// Sinks for tests of the sinks package: a recorder, a sink that blocks until
// released, and one that fails a given number of times. All thread-safe.
#ifndef DISPATCHD_SINKS_TESTING_TEST_SINKS_H_
#define DISPATCHD_SINKS_TESTING_TEST_SINKS_H_

#include <condition_variable>
#include <functional>
#include <mutex>
#include <string>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"
#include "sinks/sink.h"

namespace dispatchd {
namespace sinks {
namespace testing {

// A new event with `id` and payload "payload-<id>".
EventPtr MakeEvent(absl::string_view id);

// Spins (yielding) until `done` holds. For waiting on another thread's
// progress; never used to wait for time.
void SpinUntil(const std::function<bool()>& done);

// Records every event written; counts Close calls.
class RecordingSink final : public Sink {
 public:
  absl::Status Write(EventPtr event) override;
  absl::Status Close() override;

  std::vector<EventPtr> events() const;
  std::vector<std::string> ids() const;
  size_t size() const;
  int close_calls() const;

 private:
  mutable std::mutex mu_;
  std::vector<EventPtr> events_ ABSL_GUARDED_BY(mu_);
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int close_calls_ ABSL_GUARDED_BY(mu_) = 0;
};

// Write blocks until Release() or Close(); a Write released by Close returns
// ClosedError(). Events written after Release() pass straight through.
class BlockingSink final : public Sink {
 public:
  absl::Status Write(EventPtr event) override;
  absl::Status Close() override;
  void Release();

  // Number of Writes currently blocked.
  int blocked() const;
  std::vector<std::string> ids() const;
  int close_calls() const;

 private:
  mutable std::mutex mu_;
  std::condition_variable cv_;
  bool released_ ABSL_GUARDED_BY(mu_) = false;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  int blocked_ ABSL_GUARDED_BY(mu_) = 0;
  int close_calls_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> ids_ ABSL_GUARDED_BY(mu_);
};

// Fails the first `failures` writes with Unavailable, then records.
class FailingSink final : public Sink {
 public:
  explicit FailingSink(int failures) : failures_left_(failures) {}
  absl::Status Write(EventPtr event) override;
  absl::Status Close() override;

  int attempts() const;
  std::vector<std::string> ids() const;
  int close_calls() const;

 private:
  mutable std::mutex mu_;
  int failures_left_ ABSL_GUARDED_BY(mu_);
  int attempts_ ABSL_GUARDED_BY(mu_) = 0;
  int close_calls_ ABSL_GUARDED_BY(mu_) = 0;
  bool closed_ ABSL_GUARDED_BY(mu_) = false;
  std::vector<std::string> ids_ ABSL_GUARDED_BY(mu_);
};

}  // namespace testing
}  // namespace sinks
}  // namespace dispatchd

#endif  // DISPATCHD_SINKS_TESTING_TEST_SINKS_H_
