// SyntheticAgent: a stand-in for a dispatchd agent that speaks the real
// session protocol (dispatch.v1.AgentSession) to a controller over gRPC but
// has no Docker: it reports the inventory it is given, sends the events it is
// told to, answers every Command at once with DELIVERED and only records what
// it received. For benchmarks of the controller's routing and reconciling.
//
// Thread-safe. A reader thread takes the controller's messages (unpacking
// ControllerBatch); a writer thread sends everything (answers first, then
// events, heartbeats every 300 ms; what queued up as one AgentBatch, like the
// real agent), so the stream has one reader and one writer as gRPC requires.
#ifndef DISPATCHD_BENCH_SYNTHETIC_AGENT_H_
#define DISPATCHD_BENCH_SYNTHETIC_AGENT_H_

#include <cstdint>
#include <deque>
#include <functional>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include <grpcpp/grpcpp.h>

#include "absl/base/thread_annotations.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/dispatch/v1/session.grpc.pb.h"

namespace dispatchd {
namespace bench {

class SyntheticAgent {
 public:
  // Called on the reader thread for every Command, before it is answered.
  using CommandObserver = std::function<void(const dispatch::v1::Command&, absl::Time received)>;

  // Connects to the controller at `address` (host:port), sends Hello and
  // waits (at most 10 s) for the Welcome.
  static absl::StatusOr<std::unique_ptr<SyntheticAgent>> Connect(const std::string& address,
                                                                 const std::string& agent_id);
  // Half-closes the stream and joins both threads.
  ~SyntheticAgent();

  SyntheticAgent(const SyntheticAgent&) = delete;
  SyntheticAgent& operator=(const SyntheticAgent&) = delete;

  void set_command_observer(CommandObserver observer);

  // Queues a message (snapshot, delta, event) behind those queued earlier.
  void Send(dispatch::v1::AgentMessage message);
  // Queues an event; blocks while `max_unsettled` or more events are unsettled.
  void SendEvent(const std::string& key, const std::string& event_id, size_t max_unsettled);

  // Waits until `count` Settled notices arrived in total; false on timeout
  // or when the session ended.
  bool WaitSettled(uint64_t count, absl::Duration timeout);
  uint64_t settled() const;
  uint64_t commands() const;
  // False once the stream ended (the controller closed it or went away).
  bool alive() const;

 private:
  SyntheticAgent() = default;
  void ReadLoop();
  // One controller message that is not a batch; on the reader thread.
  // What one message (or batch) from the controller calls for.
  struct Answers {
    CommandObserver observer;
    std::vector<dispatch::v1::AgentMessage> messages;  // command results
    uint64_t settled = 0;
  };
  void Handle(const dispatch::v1::ControllerMessage& message, absl::Time received,
              Answers* answers);
  void WriteLoop();

  std::unique_ptr<dispatch::v1::AgentSession::Stub> stub_;
  grpc::ClientContext context_;
  std::unique_ptr<grpc::ClientReaderWriter<dispatch::v1::AgentMessage,
                                           dispatch::v1::ControllerMessage>>
      stream_;

  mutable absl::Mutex mu_;
  std::deque<dispatch::v1::AgentMessage> answers_ ABSL_GUARDED_BY(mu_);
  std::deque<dispatch::v1::AgentMessage> outbox_ ABSL_GUARDED_BY(mu_);
  uint64_t events_sent_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t settled_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t commands_ ABSL_GUARDED_BY(mu_) = 0;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool peer_reads_batches_ ABSL_GUARDED_BY(mu_) = false;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  CommandObserver observer_ ABSL_GUARDED_BY(mu_);
  std::thread reader_;
  std::thread writer_;
};

}  // namespace bench
}  // namespace dispatchd

#endif  // DISPATCHD_BENCH_SYNTHETIC_AGENT_H_
