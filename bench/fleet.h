// Fleet: many synthetic agents in one process, each speaking the real
// session protocol (dispatch.v1.AgentSession) to a controller over a gRPC
// connection of its own, for benchmarks of one controller serving a fleet.
//
// SyntheticAgent (synthetic_agent.h) holds two threads per agent; a fleet of
// thousands cannot. Here every agent is a grpc::ClientBidiReactor on gRPC's
// callback API: gRPC's own few threads run every agent's reads and writes,
// and one more thread sends the heartbeats. Each agent:
//   - has a channel of its own (a local subchannel pool), so its own TCP
//     connection, as an agent on its own host has; reconnect backoff as the
//     real agent's (100 ms, at most 1 s);
//   - sends Hello, and after the Welcome its inventory snapshot: `containers`
//     containers, each subscribed to `subscriptions` event ids of its own
//     (SubscribedEventId) and carrying a few labels that are not
//     subscriptions, as compose-made containers do;
//   - sends a heartbeat at the period the Welcome names;
//   - answers every Command at once with DELIVERED (no Docker) and counts the
//     Settled notices it gets;
//   - sends what queued up while its previous write was in flight as one
//     AgentBatch, as the real agent does (at most 1,000 messages or 1 MiB).
//
// Thread-safe. The agents are numbered 0..agents-1; their ids are
// AgentId(i).
#ifndef DISPATCHD_BENCH_FLEET_H_
#define DISPATCHD_BENCH_FLEET_H_

#include <atomic>
#include <cstdint>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/container/flat_hash_map.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "proto/dispatch/v1/session.pb.h"

namespace dispatchd {
namespace bench {

struct FleetOptions {
  std::string address;  // the controller, host:port
  int agents = 1000;
  int containers = 100;   // per agent
  int subscriptions = 1;  // per container
};

class Fleet {
 public:
  explicit Fleet(FleetOptions options);
  // Cancels every session and waits for each to end.
  ~Fleet();

  Fleet(const Fleet&) = delete;
  Fleet& operator=(const Fleet&) = delete;

  static std::string AgentId(int agent);
  // The event id the subscription `s` of container `c` of agent `a` names.
  static std::string SubscribedEventId(int agent, int container, int subscription);
  // Container `c` of agent `a` as the agent reports it; `extra_event_id`,
  // when not empty, adds a subscription to it.
  dispatch::v1::Container MakeContainer(int agent, int container,
                                        const std::string& extra_event_id = "") const;

  // Creates every agent's channel, then opens every session in one loop:
  // all agents connect at once. Returns when that loop began. Once.
  absl::Time ConnectAll();

  // Waits until every agent got its Welcome; false on timeout.
  bool WaitWelcomed(absl::Duration timeout);
  // When each agent got its Welcome (InfinitePast() for one that did not).
  std::vector<absl::Time> welcome_times() const;

  // Queues an ObservedEvent on agent `origin` (never blocks).
  void SendEvent(int origin, const std::string& key, const std::string& event_id);
  // Queues an InventoryDelta on agent `agent` that upserts `container`
  // (MakeContainer with `extra_event_id`), numbered after the agent's last
  // inventory message.
  void SendDelta(int agent, int container, const std::string& extra_event_id);

  // Blocks until fewer than `max` events sent are unsettled; false on
  // timeout or when a session ended.
  bool WaitRoom(uint64_t max, absl::Duration timeout);
  // Blocks until `count` Settled notices arrived in total; false on timeout.
  bool WaitSettled(uint64_t count, absl::Duration timeout);

  // The next Command for `event_id` is stamped with the time it was read;
  // call before sending what produces it.
  void ExpectCommand(const std::string& event_id);
  // That time, waiting up to `timeout`.
  std::optional<absl::Time> WaitCommand(const std::string& event_id, absl::Duration timeout);

  uint64_t events_sent() const;
  uint64_t settled() const;
  uint64_t commands() const;
  // Sessions that ended (the controller closed them, or the stream broke)
  // before the fleet was destroyed.
  uint64_t sessions_ended() const;
  // The first reasons sessions ended for (status code and message).
  std::vector<std::string> end_reasons() const;
  uint64_t heartbeats_sent() const { return heartbeats_sent_.load(); }
  uint64_t heartbeats_received() const { return heartbeats_received_.load(); }
  int agents() const { return options_.agents; }
  int containers() const { return options_.containers; }
  int subscriptions() const { return options_.subscriptions; }

 private:
  class Agent;
  friend class Agent;

  // Called by the agents, from gRPC's threads.
  void OnWelcome(int agent, absl::Time at, absl::Duration heartbeat_period);
  void OnRead(uint64_t commands, uint64_t settled, uint64_t heartbeats);
  void OnCommand(const std::string& event_id, absl::Time at);
  void OnEnded(const std::string& reason);
  void OnDone();
  void HeartbeatLoop();

  const FleetOptions options_;
  std::vector<std::unique_ptr<Agent>> agents_;

  mutable absl::Mutex mu_;
  uint64_t welcomed_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<absl::Time> welcome_times_ ABSL_GUARDED_BY(mu_);
  uint64_t events_sent_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t settled_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t commands_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t ended_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t done_ ABSL_GUARDED_BY(mu_) = 0;
  uint64_t started_ ABSL_GUARDED_BY(mu_) = 0;
  std::vector<std::string> end_reasons_ ABSL_GUARDED_BY(mu_);
  bool shutting_down_ ABSL_GUARDED_BY(mu_) = false;
  // Event ids whose first Command is stamped, and the stamps.
  absl::flat_hash_map<std::string, std::optional<absl::Time>> expected_ ABSL_GUARDED_BY(mu_);
  std::atomic<bool> expecting_{false};

  std::atomic<uint64_t> heartbeats_sent_{0};
  std::atomic<uint64_t> heartbeats_received_{0};

  // Heartbeats: (due, agent), earliest first.
  absl::Mutex heartbeat_mu_;
  std::set<std::pair<absl::Time, int>> heartbeat_due_ ABSL_GUARDED_BY(heartbeat_mu_);
  std::vector<absl::Duration> heartbeat_period_ ABSL_GUARDED_BY(heartbeat_mu_);
  bool heartbeat_stopping_ ABSL_GUARDED_BY(heartbeat_mu_) = false;
  std::thread heartbeat_thread_;
};

}  // namespace bench
}  // namespace dispatchd

#endif  // DISPATCHD_BENCH_FLEET_H_
