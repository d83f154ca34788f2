// AgentTable: the agents the controller knows, the controller's node store
// (SwarmKit's is the model): each agent's session (its AgentLink), host,
// inventory freshness and sequence, when it was last heard from and when it
// was last sent a heartbeat.
//
// An agent whose session ends is away, not gone: it stays, never fresh,
// for the away grace (heartbeat_period * missed_heartbeats), so that one
// coming back finds its deliveries waiting; after that it expires. A
// connected agent silent for longer than that same grace is due to be
// closed. Routing waits until every agent is fresh (AllFresh), and for the
// start-up grace after the controller started, so that agents of an
// earlier run can reconnect first.
//
// AllFresh is asked for every event, so it must not walk the agents: the
// table counts the agents that are not fresh, and every change of an
// agent's freshness (connect, snapshot, stale, a delta gap, disconnect,
// removal) goes through one place that keeps the count.
//
// The table decides; it sends nothing and closes nothing: the Dispatcher
// acts on what it returns (the replaced link to close, the heartbeats due,
// the agents to expire).
//
// Not thread-safe: the Dispatcher calls it under its lock. Times come from
// the caller, so tests advance a FakeClock. Links are not owned: a link
// stays in the table until Disconnect() with it or a replacing Connect().
// Agent pointers stay valid until that agent is removed.
#ifndef DISPATCHD_CONTROLLER_AGENT_TABLE_H_
#define DISPATCHD_CONTROLLER_AGENT_TABLE_H_

#include <cstddef>
#include <cstdint>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "proto/dispatch/v1/session.pb.h"

namespace dispatchd {
namespace controller {

// One agent's session, as the Dispatcher sees it.
class AgentLink {
 public:
  virtual ~AgentLink() = default;
  // Queues a message for the agent. Never blocks; thread-safe.
  virtual void Send(dispatch::v1::ControllerMessage message) = 0;
  // Ends the session (e.g. missed heartbeats). The session later reports
  // AgentDisconnected as usual. Never blocks.
  virtual void Close(const std::string& reason) = 0;
};

// An agent as the public API shows it.
struct AgentInfo {
  std::string agent_id;
  std::string host;
  bool inventory_fresh = false;
  uint64_t inventory_seq = 0;
  absl::Time last_heard;
  // False while a disconnected agent is waited for.
  bool connected = true;
};

struct AgentTableOptions {
  // Agents send heartbeats at this period, and are sent one as often.
  absl::Duration heartbeat_period = absl::Seconds(5);
  // Silent for this many periods: the session is closed. Away for as long:
  // the agent expires.
  int missed_heartbeats = 3;
  // After the table's start, AllFresh() is false for this long.
  absl::Duration startup_grace = absl::ZeroDuration();
  // Agents known to exist (id -> host; a new leader reads them from the
  // membership list in etcd): they start away, as if their sessions had
  // just ended, so routing waits until each is back and fresh, or has
  // expired after the away grace. The start-up grace can then be zero.
  std::map<std::string, std::string> expected_agents;
};

class AgentTable {
 public:
  struct Agent {
    AgentLink* link = nullptr;  // null while away
    std::string host;
    bool fresh = false;  // a snapshot came and nothing made it stale since
    uint64_t seq = 0;    // of the last inventory message applied
    // Set while the agent is away (link == nullptr) but may return.
    std::optional<absl::Time> away_since;
    absl::Time last_heard;
    absl::Time last_heartbeat_sent;
  };

  // `started_at`: when the start-up grace begins.
  AgentTable(AgentTableOptions options, absl::Time started_at);
  AgentTable(const AgentTable&) = delete;
  AgentTable& operator=(const AgentTable&) = delete;

  // A session of `agent_id` began at `now`. The agent is not fresh until
  // its snapshot (an agent coming back keeps its containers meanwhile).
  struct Connection {
    // The agent's earlier session, still open, that this one replaces: the
    // caller closes it. Null if none (or if it is `link` itself).
    AgentLink* replaced = nullptr;
    // The agent was away and came back within its grace.
    bool was_away = false;
  };
  Connection Connect(const std::string& agent_id, const std::string& host, AgentLink* link,
                     absl::Time now);
  // The session `link` of `agent_id` ended at `now`: the agent is away.
  // Returns false (and changes nothing) if `link` is not its session.
  bool Disconnect(const std::string& agent_id, AgentLink* link, absl::Time now);
  // Forgets the agent (expired).
  void Remove(const std::string& agent_id);

  // Null for an unknown agent.
  const Agent* Find(const std::string& agent_id) const;
  // The agent sent something at `now`. Null (nothing recorded) for an
  // unknown agent, whose session was replaced or has ended.
  const Agent* Heard(const std::string& agent_id, absl::Time now);

  // Inventory. Each REQUIRES a known agent.
  // A complete snapshot numbered `seq`: the agent is fresh. Returns whether
  // it was fresh before.
  bool AcceptSnapshot(const std::string& agent_id, uint64_t seq);
  enum class DeltaOrder {
    kCovered,  // at or below the last applied seq: ignore it
    kNext,     // the next one: apply it (seq recorded)
    kGap,      // one was missed: not fresh until the next snapshot
  };
  DeltaOrder AcceptDelta(const std::string& agent_id, uint64_t seq);
  // The agent's view of its containers is stale. Returns whether it was
  // fresh before.
  bool MarkStale(const std::string& agent_id);

  // Every agent is fresh (away ones never are), there is at least one, and
  // the start-up grace is over at `now`. Constant time.
  bool AllFresh(absl::Time now) const;

  // The agents away for at least the away grace at `now`, in id order. They
  // stay until Remove().
  std::vector<std::string> ExpiredAway(absl::Time now) const;

  // What a connected agent is due at `now`, in agent id order.
  struct HeartbeatAction {
    enum class Kind {
      kCloseSilent,    // heard nothing for the away grace: close its session
      kSendHeartbeat,  // a heartbeat period since the last one
    };
    Kind kind;
    std::string agent_id;
    AgentLink* link;
  };
  // Records each action as done at `now` (a silent agent counts as heard,
  // so that it is closed once; its session then reports its end).
  std::vector<HeartbeatAction> CheckHeartbeats(absl::Time now);

  // When the table next has something due after `now`: a heartbeat period
  // from now at the latest; earlier the end of the start-up grace or an
  // away agent's expiry.
  absl::Time NextDeadline(absl::Time now) const;

  absl::Duration away_grace() const {
    return options_.heartbeat_period * options_.missed_heartbeats;
  }
  size_t connected_count() const;
  // Constant time.
  size_t fresh_count() const { return agents_.size() - not_fresh_; }
  // Every agent, in id order.
  std::vector<AgentInfo> Infos() const;
  // Ids of the agents with a session, sorted.
  std::vector<std::string> ConnectedIds() const;
  // Why AllFresh(now) is false, in words ("" when it is true).
  std::string NotFreshReason(absl::Time now) const;

 private:
  Agent& At(const std::string& agent_id);
  // The one place an agent's freshness changes; keeps not_fresh_.
  void SetFresh(Agent& agent, bool fresh);

  const AgentTableOptions options_;
  const absl::Time startup_grace_end_;
  std::map<std::string, Agent> agents_;
  // Agents in agents_ whose `fresh` is false (the away ones among them).
  size_t not_fresh_ = 0;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_AGENT_TABLE_H_
