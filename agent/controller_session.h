// ControllerSession: the agent's side of the session protocol
// (proto/dispatch/v1/session.proto): one bidirectional stream to the
// controller, opened again with jittered exponential backoff whenever it
// ends. It knows nothing of files or Docker: what to send first on every
// session and what to do with what arrives are the owner's callbacks.
//
// The controller is one of a list of replicas of which one leads
// (common/leader_redirect.h). The session goes to the first address; a
// replica that does not lead answers the Hello with the leader's address,
// and the session goes there at once, listed or not (at most
// kMaxRedirectsInRow times in a row without a Welcome, so two confused
// replicas cannot make it spin: then it backs off). A replica that cannot
// be reached, or that knows no leader, sends it to the next address of the
// list; the backoff applies once every address has failed in a row. After a
// session ends, the same address is tried first. With more than one
// address, an attempt whose channel has not connected within
// `connect_timeout` is given up for the next address; with one, the session
// waits for it as long as it takes (a restarted controller sees its agents
// back as soon as it listens).
//
// Each session: Hello (agent id, host, token) -> Welcome; then the
// inventory message the owner gives (`inventory`), queued in the same
// critical section that opens the queue to Write(), so nothing overtakes
// it; then every message of `resend` (the unsettled events); then whatever
// Write() queues. Controller messages are read on the session thread and
// handed to on_command / on_settled in order, batches unpacked.
//
// Outgoing messages go through one ordered queue that only the writer
// thread drains onto the stream (as AgentBatch messages, within the batch
// bounds, when the controller reads batches), and only the session thread
// reads, so the stream has one writer and one reader as gRPC requires. The
// order on the stream is the order in which Write() calls took the queue's
// lock. The queue holds messages only while a session is up; when the
// session ends the queue is emptied and the write in flight finished (or
// cancelled) before the stream is destroyed.
//
// Heartbeats go out at the period the Welcome names; a controller silent
// for 3 periods is taken as gone and the session is cancelled and opened
// again. Every timing rule runs on the injected Clock.
//
// Thread-safety: Write(), up(), ready() and controller_address() are safe
// from any thread, and from the callbacks other than `inventory`. Start()
// once; Stop() is idempotent, must not run from a callback, and no callback
// runs after it returns. `clock` is not owned and must outlive the session.
#ifndef DISPATCHD_AGENT_CONTROLLER_SESSION_H_
#define DISPATCHD_AGENT_CONTROLLER_SESSION_H_

#include <grpcpp/grpcpp.h>

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <deque>
#include <functional>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/random/random.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "agent/agent_metrics.h"
#include "common/clock.h"
#include "proto/dispatch/v1/session.grpc.pb.h"

namespace dispatchd {
namespace agent {

// The channel to the controller replica at `address` (host:port). Called
// from the session thread, once per address: the session keeps the channel.
// May return null (the address cannot be used): taken as unreachable.
using ChannelFactory =
    std::function<std::shared_ptr<grpc::ChannelInterface>(const std::string& address)>;

struct ControllerSessionOptions {
  // Sent in every Hello.
  std::string agent_id;
  std::string host;
  std::string token;  // bearer token
  // Between attempts: from min, doubling to max, jittered within
  // [backoff/2, backoff]; back to min after a session that got a Welcome.
  // Once a Welcome named a heartbeat period, never more than that period,
  // so the agent is back within a restarted controller's start-up grace.
  absl::Duration reconnect_min_backoff = absl::Milliseconds(100);
  absl::Duration reconnect_max_backoff = absl::Seconds(10);
  // Bounds of one AgentBatch: at most this many messages, and no more
  // messages once it holds this many bytes (a single larger message still
  // goes, alone).
  size_t max_batch_messages = 1000;
  size_t max_batch_bytes = 1 << 20;
  // Records session_up and session attempts. Not owned, never null; must
  // outlive the session.
  AgentMetricsRecorder* metrics = NullAgentMetrics();
  // The controller replicas, in the order they are tried, and how to reach
  // each. At least one address. The constructor that takes a channel fills
  // both in.
  std::vector<std::string> controllers;
  ChannelFactory channels;
  // With more than one controller: how long an attempt waits for its
  // channel to connect before it goes to the next address. Never more than
  // the heartbeat period, once a Welcome has named it.
  absl::Duration connect_timeout = absl::Seconds(1);
};

class ControllerSession {
 public:
  struct Callbacks {
    // The first message of every session after the Welcome: the inventory
    // (a snapshot, or why there is none). Runs on the session thread with
    // the queue locked, so it must not call Write() and must not block.
    std::function<dispatch::v1::AgentMessage()> inventory;
    // Messages to send again on every session, right after the inventory:
    // the unsettled events. May be empty.
    std::function<std::vector<dispatch::v1::AgentMessage>()> resend;
    // A command, or a settled notice, from the controller. Run on the
    // session thread, one at a time, in the controller's order; the stream
    // is not read meanwhile, so they should not wait long.
    std::function<void(dispatch::v1::Command command)> on_command;
    std::function<void(const dispatch::v1::Settled& settled)> on_settled;
    // The controller saw an event delivered to one subscriber. Same thread
    // and order as on_settled.
    std::function<void(const dispatch::v1::Delivered& delivered)> on_delivered;
    // A session that got its Welcome has ended (before the next attempt).
    // Run on the session thread; no message of that session arrives after.
    std::function<void()> on_session_end;
    // An API request the agent answers from its files (an emitted event to
    // write, a dead-letter call); same thread and order as the others.
    std::function<void(const dispatch::v1::ControllerMessage& request)> on_file_request;
  };

  // Redirects followed in a row without a Welcome before the session backs
  // off as after a failure.
  static constexpr int kMaxRedirectsInRow = 3;
  // The name of the one controller of the constructor that takes a channel.
  static constexpr char kChannelAddress[] = "in-process";

  // The factory of the one controller named kChannelAddress, behind
  // `channel`: null for any other address.
  static ChannelFactory OnlyChannel(std::shared_ptr<grpc::ChannelInterface> channel);

  // Goes to options.controllers through options.channels.
  ControllerSession(ControllerSessionOptions options, Clock* clock, Callbacks callbacks);
  // One controller behind `channel` (an in-process channel in all-in-one
  // mode), named kChannelAddress; options.controllers and options.channels
  // are replaced. A redirect elsewhere is taken as unreachable.
  ControllerSession(ControllerSessionOptions options, Clock* clock,
                    std::shared_ptr<grpc::ChannelInterface> channel, Callbacks callbacks);
  ControllerSession(const ControllerSession&) = delete;
  ControllerSession& operator=(const ControllerSession&) = delete;
  // Stop()s.
  ~ControllerSession();

  // Starts the session, writer and heartbeat threads; after Stop(), starts
  // nothing. REQUIRES: called at most once.
  void Start();
  // Cancels the session and joins the threads (waiting for a callback in
  // progress, if any). Unsent messages are dropped. Idempotent.
  void Stop();

  // Queues `message` for the current session, behind every message queued
  // before it. Returns false (dropped) when no session is up or its stream
  // broke. Never blocks on I/O.
  bool Write(dispatch::v1::AgentMessage message) ABSL_LOCKS_EXCLUDED(write_mu_);

  // The stream is open: the Welcome arrived and the inventory is queued.
  bool up() const ABSL_LOCKS_EXCLUDED(write_mu_);
  // up(), and the session has been counted as opened; cleared as soon as
  // the session starts to end. Lock-free.
  bool ready() const { return ready_.load(); }
  // The address of the controller the session is up with; empty while none
  // is up.
  std::string controller_address() const ABSL_LOCKS_EXCLUDED(write_mu_);

 private:
  using Stream =
      grpc::ClientReaderWriter<dispatch::v1::AgentMessage, dispatch::v1::ControllerMessage>;

  // How one attempt ended.
  struct Attempt {
    enum Result { kFailed, kRedirected, kWelcomed } result = kFailed;
    std::string leader;  // kRedirected: where to
  };

  // Opens sessions until Stop(), with backoff between them.
  void SessionLoop();
  // Runs one session with the controller at `address` until it ends.
  Attempt RunSession(const std::string& address);
  // The channel to `address`, made once; null if the factory gave none.
  std::shared_ptr<grpc::ChannelInterface> ChannelTo(const std::string& address);
  // Cancels attempt `attempt` if it is still waiting for its channel to
  // connect (the connect_timeout has passed).
  void CancelUnconnected(uint64_t attempt) ABSL_LOCKS_EXCLUDED(write_mu_, mu_);
  void Handle(const dispatch::v1::ControllerMessage& message);
  // Sends heartbeats and watches for a silent controller.
  void HeartbeatLoop();
  // Drains the queue onto the stream.
  void WriteLoop() ABSL_LOCKS_EXCLUDED(write_mu_);
  bool stopping() const ABSL_LOCKS_EXCLUDED(mu_);

  const ControllerSessionOptions options_;
  Clock* const clock_;
  const Callbacks callbacks_;
  // By address; only the session thread uses them.
  std::map<std::string, std::shared_ptr<grpc::ChannelInterface>> channels_;

  // Lock order: write_mu_ before mu_ when both are held.
  mutable absl::Mutex mu_;
  bool stopping_ ABSL_GUARDED_BY(mu_) = false;
  absl::BitGen bitgen_ ABSL_GUARDED_BY(mu_);
  // The attempt in progress (counted from 1), as the heartbeat thread sees
  // it to bound its connection: past connect_deadline_, unless its channel
  // is connected, it is cancelled and connect_timed_out_ set. Changed with
  // write_mu_ held too.
  uint64_t attempt_ ABSL_GUARDED_BY(mu_) = 0;
  absl::Time connect_deadline_ ABSL_GUARDED_BY(mu_) = absl::InfiniteFuture();
  std::shared_ptr<grpc::ChannelInterface> attempt_channel_ ABSL_GUARDED_BY(mu_);
  bool connect_timed_out_ ABSL_GUARDED_BY(mu_) = false;

  // The live session, as the writer and the watchdog see it.
  mutable absl::Mutex write_mu_;
  Stream* stream_ ABSL_GUARDED_BY(write_mu_) = nullptr;
  grpc::ClientContext* context_ ABSL_GUARDED_BY(write_mu_) = nullptr;
  std::string address_ ABSL_GUARDED_BY(write_mu_);  // of stream_'s controller
  std::deque<dispatch::v1::AgentMessage> outgoing_ ABSL_GUARDED_BY(write_mu_);
  bool peer_reads_batches_ ABSL_GUARDED_BY(write_mu_) = false;
  bool writing_ ABSL_GUARDED_BY(write_mu_) = false;       // a write is in flight
  bool write_failed_ ABSL_GUARDED_BY(write_mu_) = false;  // this session's stream broke
  bool writer_stop_ ABSL_GUARDED_BY(write_mu_) = false;

  std::atomic<int64_t> last_heard_ns_{0};
  std::atomic<int64_t> heartbeat_period_ns_{0};
  std::atomic<bool> ready_{false};

  absl::Mutex threads_mu_;  // serialises Start() and Stop()
  bool started_ ABSL_GUARDED_BY(threads_mu_) = false;
  std::vector<std::thread> threads_ ABSL_GUARDED_BY(threads_mu_);
};

}  // namespace agent
}  // namespace dispatchd

#endif  // DISPATCHD_AGENT_CONTROLLER_SESSION_H_
