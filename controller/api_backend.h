// ApiBackend: what the API's event calls need from the controller's core
// (the Dispatcher implements it). ApiService stays a thin gRPC face over it:
// it authorizes, converts and streams; every decision is the backend's.
//
// Callbacks (`done`) are called exactly once, on any thread, with no lock of
// the backend held; they must not block. Read calls copy current state.
// Implementations are thread-safe.
#ifndef DISPATCHD_CONTROLLER_API_BACKEND_H_
#define DISPATCHD_CONTROLLER_API_BACKEND_H_

#include <cstddef>
#include <functional>
#include <memory>

#include "absl/status/statusor.h"
#include "controller/watch_hub.h"
#include "proto/dispatch/v1/api.pb.h"

namespace dispatchd {
namespace controller {

class ApiBackend {
 public:
  template <typename T>
  using Done = std::function<void(absl::StatusOr<T>)>;

  virtual ~ApiBackend() = default;

  // Has an agent write the event file; `done` once it is on disk (or why not).
  virtual void Emit(const dispatch::v1::EmitRequest& request,
                    Done<dispatch::v1::EmitResponse> done) = 0;
  // A watcher of the updates matching `filter` (see WatchHub::Subscribe).
  virtual std::unique_ptr<WatchHub::Watcher> Watch(WatchFilter filter, size_t buffer,
                                                   std::function<void()> wake) = 0;
  virtual dispatch::v1::ListEventsResponse ListEvents() const = 0;
  virtual absl::StatusOr<dispatch::v1::EventInfo> GetEvent(
      const dispatch::v1::GetEventRequest& request) const = 0;
  virtual absl::StatusOr<dispatch::v1::ExplainResponse> Explain(
      const dispatch::v1::ExplainRequest& request) const = 0;
  virtual void ListDeadLetters(const dispatch::v1::ListDeadLettersRequest& request,
                               Done<dispatch::v1::ListDeadLettersResponse> done) = 0;
  virtual void ReplayDeadLetter(const dispatch::v1::ReplayDeadLetterRequest& request,
                                Done<dispatch::v1::ReplayDeadLetterResponse> done) = 0;
  virtual void PurgeDeadLetter(const dispatch::v1::PurgeDeadLetterRequest& request,
                               Done<dispatch::v1::PurgeDeadLetterResponse> done) = 0;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_API_BACKEND_H_
