// Fuzzes the controller's core (controller/dispatcher.h) with arbitrary
// sequences of session messages: the input is decoded into a program of
// steps for three fake agents and a fake clock. Steps: connect (a second
// session replaces the first), disconnect, inventory snapshots and deltas
// (in or out of sequence) of containers with labels drawn from valid,
// invalid and odd values, inventory stale, observed events (re-sent,
// newer generations), command results of every outcome (for commands in
// flight or made up), exec exits, API requests (Emit and its answers,
// ListEvents, GetEvent, Explain), batches, messages from an agent that is
// away or unknown, clock advances and Poll().
//
// Invariants, checked after every step:
// - every observed event is in flight or settled exactly one way:
//   events_observed == in flight + settled (delivered, no subscribers,
//   dead-lettered); no more events held than in flight; ListEvents lists
//   every event in flight;
// - each observed event is forwarded once (the forwarding sink, which holds
//   on to them for a while when the program says so); no more events wait
//   for forwarding than are in flight;
// - the connected and fresh agent counts match the sessions that are open;
// - a Command goes only to an agent that reported the container, for an
//   event some agent observed, with an argv that the container's
//   container.command label (as some inventory of that agent declared it)
//   splits to, or none for start-only; its environment names the event;
// - a Settled notice names an event its agent sent, at most once per
//   sending (a re-sent event may be settled again), and a dead-letter
//   notice carries a JSON note;
// - every API call's callback runs exactly once.
// Then the agents behave: every one connects, sends its inventory and
// every event not yet settled, answers every command, while the clock
// runs: then every event must be settled (nothing lost, nothing stuck).
#include <cstddef>
#include <cstdint>
#include <cstdlib>
#include <iostream>
#include <deque>
#include <map>
#include <memory>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <nlohmann/json.hpp>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "common/testing/fake_clock.h"
#include "contract/labels.h"
#include "controller/dispatcher.h"
#include "sinks/sink.h"
#include "tests/fuzz/fuzz_check.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::CommandResult;
using dispatch::v1::Container;
using dispatch::v1::ControllerMessage;

constexpr int kAgents = 3;
constexpr int kContainers = 5;
const char* const kEventIds[] = {"demo.e0", "demo.e1", "e2", "demo", "Demo.e0", "a.b.c"};
const char* const kKeys[] = {"demo/e0", "demo/e1", "e2", "demo", "Demo/e0", "a/b/c", "a/b.c"};
const char* const kCommands[] = {"touch handled", "sh -c 'echo \"$X\" >> /log'", "a\\ b c",
                                 "unterminated 'quote", "", "   ", "x"};
const char* const kStarts[] = {"true", "false", "1", "0", "TRUE", "maybe"};
const char* const kDebounces[] = {"0", "100", "1000", "5000", "-1", "1e3", ""};
const char* const kScopes[] = {"cluster", "host", "planet"};
const char* const kSuffixes[] = {"container.command", "container.start", "dispatching.debounce",
                                 "dispatching.scope", "container.commandx", "command"};
const absl::Duration kAdvances[] = {absl::Milliseconds(1), absl::Milliseconds(100),
                                    absl::Seconds(1), absl::Seconds(5), absl::Seconds(20),
                                    absl::Minutes(1)};

// DISPATCHD_FUZZ_VERBOSE=1: log the Dispatcher at debug level and trace
// every step, to read what a crashing input does.
bool Verbose() {
  static const bool verbose = std::getenv("DISPATCHD_FUZZ_VERBOSE") != nullptr;
  return verbose;
}
#define TRACE \
  if (!Verbose()) { \
  } else \
    std::cerr << "[fuzz t=" << absl::FormatTime("%H:%M:%E3S", clock.Now(), absl::UTCTimeZone()) << "] "

template <typename T, size_t N>
const T& Pick(fuzz::ByteReader& in, const T (&options)[N]) {
  return options[in.Below(N)];
}

// Counts what the Dispatcher forwards. While `keeping`, it holds on to the
// events as a destination that is down does (their files must wait, within
// the Dispatcher's forwarding hold); otherwise it lets go at once.
class CountingSink : public sinks::Sink {
 public:
  absl::Status Write(sinks::EventPtr event) override {
    FUZZ_CHECK(event != nullptr) << "null event forwarded";
    ++written;
    if (keeping) kept.push_back(std::move(event));
    return absl::OkStatus();
  }
  absl::Status Close() override { return absl::OkStatus(); }
  uint64_t written = 0;
  bool keeping = false;
  std::deque<sinks::EventPtr> kept;
};

struct Harness;

// One session of one agent: records what the Dispatcher sends. Must not
// call back into the Dispatcher (it holds its lock): the harness looks at
// the messages after each step.
class FakeLink : public AgentLink {
 public:
  explicit FakeLink(int agent) : agent(agent) {}
  void Send(ControllerMessage message) override { sent.push_back(std::move(message)); }
  void Close(const std::string& reason) override { close_requested = true; }
  const int agent;
  std::vector<ControllerMessage> sent;
  bool close_requested = false;
};

struct AgentModel {
  std::string id;
  FakeLink* link = nullptr;  // the open session, if any
  uint64_t seq = 0;          // of the last inventory message sent
  // The containers the agent has, as its Docker engine says (what a new
  // snapshot would send).
  std::map<std::string, Container> containers;
  // (key, generation) -> how often it was sent and settled, and when last
  // (harness ticks); the agent thinks it unsettled while the last send is
  // after the last Settled. Also the event's id and payload, to send it
  // again.
  struct Sent {
    uint64_t sends = 0;
    uint64_t settles = 0;
    uint64_t last_send = 0;
    uint64_t last_settle = 0;
    std::string event_id;
    std::string payload;
    bool unsettled() const { return last_send > last_settle; }
  };
  std::map<std::pair<std::string, uint64_t>, Sent> events;
  std::deque<dispatch::v1::Command> commands;  // not answered yet
  std::deque<uint64_t> write_requests;         // WriteEvent not answered yet
};

struct Harness {
  FakeClock clock;
  std::shared_ptr<CountingSink> forward = std::make_shared<CountingSink>();
  std::unique_ptr<Dispatcher> dispatcher;
  std::vector<std::unique_ptr<FakeLink>> links;  // every session ever (links outlive them)
  AgentModel agents[kAgents];
  // (agent, container id) -> event id -> every argv its labels ever declared.
  std::map<std::pair<int, std::string>, std::map<std::string, std::set<std::vector<std::string>>>>
      declared;
  std::set<std::string> event_ids_sent;
  uint64_t tick = 0;  // orders sends and Settled notices
  int api_calls = 0;
  int api_done = 0;
  std::unique_ptr<WatchHub::Watcher> watcher;

  explicit Harness(fuzz::ByteReader& in) {
    DispatcherOptions options;
    options.heartbeat_period = absl::Seconds(5);
    options.missed_heartbeats = 3;
    options.startup_grace = in.Bool() ? absl::Seconds(10) : absl::ZeroDuration();
    options.retry_min_backoff = absl::Milliseconds(100);
    options.retry_max_backoff = absl::Seconds(1);
    options.max_attempts = 1 + in.Below(4);
    options.max_env_payload_bytes = in.Bool() ? 16 : 4096;
    options.forward = forward;
    options.forward_hold_events = 3;  // so that both sides of the bound are reached
    dispatcher = std::make_unique<Dispatcher>(options, &clock);
    if (in.Bool()) {
      // Watching changes what the Dispatcher builds (updates, exec targets).
      watcher = dispatcher->Watch(WatchFilter{}, 1 + in.Below(64), [] {});
    }
    for (int i = 0; i < kAgents; ++i) agents[i].id = absl::StrCat("agent-", i);
  }

  void Connect(int a) {
    AgentModel& agent = agents[a];
    TRACE << "connect " << agent.id << "\n";
    FakeLink* old = agent.link;
    links.push_back(std::make_unique<FakeLink>(a));
    agent.link = links.back().get();
    dispatcher->AgentConnected(agent.id, absl::StrCat("host-", a), agent.link);
    Collect();
    if (old != nullptr) {
      // The replaced session ends as sessions do.
      FUZZ_CHECK(old->close_requested) << "a replaced session was not closed";
      dispatcher->AgentDisconnected(agent.id, old);
      Collect();
    }
  }

  void Disconnect(int a) {
    AgentModel& agent = agents[a];
    if (agent.link == nullptr) return;
    TRACE << "disconnect " << agent.id << "\n";
    FakeLink* link = agent.link;
    agent.link = nullptr;
    dispatcher->AgentDisconnected(agent.id, link);
    Collect();
  }

  void Send(int a, const AgentMessage& m) {
    TRACE << agents[a].id << (agents[a].link == nullptr ? " (away)" : "") << " sends "
          << m.ShortDebugString() << "\n";
    dispatcher->OnAgentMessage(agents[a].id, m);
    Collect();
  }

  // Reads what the Dispatcher sent and checks each message.
  void Collect() {
    for (auto& link : links) {
      std::vector<ControllerMessage> sent = std::move(link->sent);
      link->sent.clear();
      for (const ControllerMessage& m : sent) {
        if (m.has_batch()) {
          for (const ControllerMessage& inner : m.batch().messages()) Check(link->agent, inner);
        } else {
          Check(link->agent, m);
        }
      }
    }
    // Sessions the Dispatcher closed end.
    for (int a = 0; a < kAgents; ++a) {
      if (agents[a].link != nullptr && agents[a].link->close_requested) Disconnect(a);
    }
  }

  void Check(int a, const ControllerMessage& m) {
    AgentModel& agent = agents[a];
    TRACE << agent.id << " receives " << m.ShortDebugString() << "\n";
    switch (m.msg_case()) {
      case ControllerMessage::kCommand: {
        const dispatch::v1::Command& c = m.command();
        auto container = declared.find({a, c.container_id()});
        FUZZ_CHECK(container != declared.end())
            << agent.id << " got a command for container " << c.container_id()
            << " it never reported";
        FUZZ_CHECK(event_ids_sent.count(c.event_id()) == 1)
            << "command for event " << c.event_id() << " that no agent observed";
        if (!c.argv().empty()) {
          std::vector<std::string> argv(c.argv().begin(), c.argv().end());
          auto event = container->second.find(c.event_id());
          FUZZ_CHECK(event != container->second.end() && event->second.count(argv) == 1)
              << agent.id << " was told to exec " << argv[0] << "... in " << c.container_id()
              << " for " << c.event_id() << ", which its labels never declared";
        }
        FUZZ_CHECK(std::find(c.env().begin(), c.env().end(),
                             absl::StrCat("DISPATCH_EVENT_ID=", c.event_id())) != c.env().end())
            << "command without DISPATCH_EVENT_ID";
        agent.commands.push_back(c);
        break;
      }
      case ControllerMessage::kSettled: {
        const dispatch::v1::Settled& s = m.settled();
        auto it = agent.events.find({s.key(), s.generation()});
        FUZZ_CHECK(it != agent.events.end())
            << agent.id << " told to settle " << s.key() << "#" << s.generation()
            << ", which it never sent";
        FUZZ_CHECK(it->second.settles < it->second.sends)
            << agent.id << " told to settle " << s.key() << "#" << s.generation() << " "
            << it->second.settles + 1 << " times, sent " << it->second.sends << " times";
        ++it->second.settles;
        it->second.last_settle = ++tick;
        FUZZ_CHECK(s.disposition() == dispatch::v1::Settled::DELETE ||
                   s.disposition() == dispatch::v1::Settled::DEAD_LETTER)
            << s.disposition();
        if (s.disposition() == dispatch::v1::Settled::DEAD_LETTER) {
          FUZZ_CHECK(nlohmann::json::accept(s.error_json())) << "dead-letter note is not JSON";
        }
        break;
      }
      case ControllerMessage::kWriteEvent:
        agent.write_requests.push_back(m.write_event().request_id());
        break;
      case ControllerMessage::kBatch:
        FUZZ_CHECK(false) << "a batch inside a batch";
        break;
      default:
        break;
    }
  }

  void CheckStats() {
    const DispatcherStats s = dispatcher->stats();
    FUZZ_CHECK(s.events_observed == s.events_in_flight + s.events_settled_delivered +
                                        s.events_settled_no_subscribers +
                                        s.events_settled_dead_letter)
        << "observed " << s.events_observed << " != in flight " << s.events_in_flight
        << " + settled " << s.events_settled_delivered << "/" << s.events_settled_no_subscribers
        << "/" << s.events_settled_dead_letter;
    FUZZ_CHECK(s.events_held <= s.events_in_flight) << s.events_held;
    FUZZ_CHECK(s.events_awaiting_forward <= s.events_in_flight &&
               s.events_awaiting_forward <= 3)
        << s.events_awaiting_forward << " events wait for forwarding";
    FUZZ_CHECK(forward->written == s.events_observed)
        << "forwarded " << forward->written << " of " << s.events_observed << " events";
    uint64_t connected = 0;
    for (const AgentModel& a : agents) connected += a.link != nullptr;
    FUZZ_CHECK(s.agents_connected == connected)
        << s.agents_connected << " agents connected, want " << connected;
    FUZZ_CHECK(s.agents_fresh <= s.agents_connected)
        << s.agents_fresh << " agents fresh, " << s.agents_connected << " connected";
    FUZZ_CHECK(static_cast<uint64_t>(dispatcher->ListEvents().events_size()) == s.events_in_flight)
        << "ListEvents misses events in flight";
    FUZZ_CHECK(api_done <= api_calls);
  }

  Container MakeContainer(fuzz::ByteReader& in, int a, const std::string& id) {
    Container c;
    c.set_id(id);
    c.set_name(absl::StrCat("name-", in.Below(4)));
    c.set_state(static_cast<Container::State>(in.Below(8)));
    const int labels = in.Below(5);
    for (int i = 0; i < labels; ++i) {
      std::string key;
      std::string value;
      const uint8_t kind = in.Byte();
      const std::string event_id = Pick(in, kEventIds);
      const std::string suffix = Pick(in, kSuffixes);
      key = absl::StrCat(kind & 0x40 ? "other" : "subscription", ".", event_id, ".", suffix);
      if (suffix == "container.command") {
        value = kind & 0x80 ? in.String(32) : Pick(in, kCommands);
      } else if (suffix == "container.start") {
        value = Pick(in, kStarts);
      } else if (suffix == "dispatching.debounce") {
        value = Pick(in, kDebounces);
      } else {
        value = Pick(in, kScopes);
      }
      if ((kind & 0x3F) == 0x3F) key = in.String(40);  // anything at all
      (*c.mutable_labels())[key] = value;
    }
    // What the Dispatcher may exec in it from now on.
    auto& declared_here = declared[{a, id}];
    const contract::ParsedLabels parsed = contract::ParseSubscriptionLabels(
        std::map<std::string, std::string>(c.labels().begin(), c.labels().end()), "subscription");
    for (const contract::Subscription& sub : parsed.subscriptions) {
      declared_here[sub.event_id].insert(sub.argv);
    }
    return c;
  }

  std::string ContainerId(fuzz::ByteReader& in) { return absl::StrCat("c", in.Below(kContainers)); }

  AgentMessage Snapshot(fuzz::ByteReader& in, int a) {
    AgentModel& agent = agents[a];
    AgentMessage m;
    auto* snapshot = m.mutable_inventory_snapshot();
    agent.containers.clear();
    const int n = in.Below(kContainers + 1);
    for (int i = 0; i < n; ++i) {
      Container c = MakeContainer(in, a, ContainerId(in));
      agent.containers[c.id()] = c;
    }
    for (const auto& [id, c] : agent.containers) *snapshot->add_containers() = c;
    // Mostly the next sequence number; sometimes an old or a far one.
    const uint8_t how = in.Byte() % 8;
    agent.seq = how == 0 ? agent.seq : how == 1 ? agent.seq + 5 : agent.seq + 1;
    snapshot->set_seq(how == 2 ? 0 : agent.seq);
    return m;
  }

  AgentMessage Delta(fuzz::ByteReader& in, int a) {
    AgentModel& agent = agents[a];
    AgentMessage m;
    auto* delta = m.mutable_inventory_delta();
    const int upserts = in.Below(3);
    for (int i = 0; i < upserts; ++i) {
      Container c = MakeContainer(in, a, ContainerId(in));
      agent.containers[c.id()] = c;
      *delta->add_upserted() = c;
    }
    if (in.Bool()) {
      const std::string id = ContainerId(in);
      agent.containers.erase(id);
      delta->add_removed_ids(id);
    }
    const uint8_t how = in.Byte() % 8;
    const uint64_t seq = how == 0 ? agent.seq : how == 1 ? agent.seq + 2 : agent.seq + 1;
    if (seq > agent.seq) agent.seq = seq;
    delta->set_seq(seq);
    return m;
  }

  AgentMessage Event(fuzz::ByteReader& in, int a) {
    AgentMessage m;
    auto* e = m.mutable_event();
    const std::string key = Pick(in, kKeys);
    const uint64_t generation = in.Below(3);
    e->set_key(key);
    e->set_generation(generation);
    const std::string id = Pick(in, kEventIds);
    e->set_event_id(id);
    e->set_payload(in.String(24));
    e->set_payload_truncated(in.Byte() == 7);
    e->set_observed_unix_nanos(absl::ToUnixNanos(clock.Now()));
    e->set_size(e->payload().size());
    AgentModel::Sent& sent = agents[a].events[{key, generation}];
    // The same file and generation is the same event: the agent re-sends it
    // as it was (a different id under the same key would be another file).
    if (!sent.event_id.empty()) {
      e->set_event_id(sent.event_id);
      e->set_payload(sent.payload);
    } else {
      sent.event_id = e->event_id();
      sent.payload = e->payload();
    }
    ++sent.sends;
    sent.last_send = ++tick;
    event_ids_sent.insert(e->event_id());
    return m;
  }

  AgentMessage Result(fuzz::ByteReader& in, int a) {
    AgentModel& agent = agents[a];
    AgentMessage m;
    auto* r = m.mutable_command_result();
    if (!agent.commands.empty() && in.Byte() % 8 != 0) {
      const size_t i = in.Below(agent.commands.size());
      r->set_command_id(agent.commands[i].command_id());
      agent.commands.erase(agent.commands.begin() + i);
    } else {
      r->set_command_id(in.Below(16));  // stale or made up
    }
    r->set_outcome(static_cast<CommandResult::Outcome>(in.Below(7)));  // 6: unknown value
    if (in.Bool()) r->set_exec_id(absl::StrCat("exec-", in.Byte()));
    if (in.Bool()) r->set_error("boom");
    if (in.Bool()) {
      r->set_exec_create_sent_unix_nanos(absl::ToUnixNanos(clock.Now()) - in.U16());
      r->set_exec_start_sent_unix_nanos(absl::ToUnixNanos(clock.Now()) - in.U16());
    }
    return m;
  }

  AgentMessage ExecExit(fuzz::ByteReader& in) {
    AgentMessage m;
    auto* e = m.mutable_exec_exit();
    e->set_command_id(in.Below(16));
    e->set_exit_code(static_cast<int32_t>(in.U32()));
    e->set_duration_ms(static_cast<int64_t>(in.U64()));
    if (in.Bool()) e->set_error("exec gone");
    return m;
  }

  AgentMessage WriteResult(fuzz::ByteReader& in, int a) {
    AgentModel& agent = agents[a];
    AgentMessage m;
    auto* r = m.mutable_write_event_result();
    if (!agent.write_requests.empty() && in.Bool()) {
      r->set_request_id(agent.write_requests.front());
      agent.write_requests.pop_front();
    } else {
      r->set_request_id(in.Below(8));
    }
    r->set_code(in.Bool() ? 0 : in.Below(17));
    r->set_path("demo/e0");
    r->set_event_id("demo.e0");
    return m;
  }

  // One message an agent may send (not a batch, not Hello).
  AgentMessage AnyMessage(fuzz::ByteReader& in, int a) {
    switch (in.Below(9)) {
      case 0: return Snapshot(in, a);
      case 1: return Delta(in, a);
      case 2: {
        AgentMessage m;
        m.mutable_inventory_stale()->set_reason("events stream lost");
        return m;
      }
      case 3: return Result(in, a);
      case 4: return ExecExit(in);
      case 5: return WriteResult(in, a);
      case 6: {
        AgentMessage m;
        m.mutable_heartbeat()->set_sent_unix_nanos(absl::ToUnixNanos(clock.Now()));
        return m;
      }
      default: return Event(in, a);
    }
  }

  void Api(fuzz::ByteReader& in) {
    switch (in.Below(4)) {
      case 0: {
        dispatch::v1::EmitRequest request;
        if (in.Bool()) {
          request.set_event_id(Pick(in, kEventIds));
        } else {
          request.set_path(Pick(in, kKeys));
        }
        if (in.Bool()) request.set_host(absl::StrCat("agent-", in.Below(kAgents + 1)));
        if (in.Bool()) request.set_idempotency_key(in.String(8));
        request.set_payload(in.String(16));
        ++api_calls;
        auto called = std::make_shared<bool>(false);
        dispatcher->Emit(request, [this, called](absl::StatusOr<dispatch::v1::EmitResponse>) {
          FUZZ_CHECK(!*called) << "an Emit callback ran twice";
          *called = true;
          ++api_done;
        });
        Collect();
        break;
      }
      case 1: {
        dispatch::v1::GetEventRequest request;
        request.set_event_id(Pick(in, kEventIds));
        (void)dispatcher->GetEvent(request);
        break;
      }
      case 2: {
        dispatch::v1::ExplainRequest request;
        request.set_event_id(Pick(in, kEventIds));
        if (in.Bool()) request.set_host(absl::StrCat("host-", in.Below(kAgents)));
        (void)dispatcher->Explain(request);
        break;
      }
      default:
        (void)dispatcher->ListEvents();
        (void)dispatcher->Agents();
        (void)dispatcher->Subscriptions();
        (void)dispatcher->InvalidSubscriptions();
        break;
    }
  }

  void Step(fuzz::ByteReader& in) {
    const uint8_t op = in.Byte();
    const int a = in.Below(kAgents);
    switch (op % 12) {
      case 0: Connect(a); break;
      case 1: Disconnect(a); break;
      case 2: case 3: case 4:
        // A message on the agent's open session.
        if (agents[a].link != nullptr) Send(a, AnyMessage(in, a));
        break;
      case 5: {
        if (agents[a].link == nullptr) break;
        AgentMessage batch;
        const int n = 1 + in.Below(6);
        for (int i = 0; i < n; ++i) *batch.mutable_batch()->add_messages() = AnyMessage(in, a);
        if (in.Byte() == 0) {
          *batch.mutable_batch()->add_messages() = batch;  // nested: ignored
        }
        Send(a, batch);
        break;
      }
      case 6:
        // A message of a session that already ended: the session's reads
        // and its end run on different threads, so one may still arrive
        // after AgentDisconnected. Also an agent id never connected.
        if (in.Bool()) {
          Send(a, AnyMessage(in, a));
        } else {
          // Not agent a's message: its model stays as it was.
          const AgentModel saved = agents[a];
          const AgentMessage m = AnyMessage(in, a);
          agents[a] = saved;
          TRACE << "stranger sends " << m.ShortDebugString() << "\n";
          dispatcher->OnAgentMessage("stranger", m);
          Collect();
        }
        break;
      case 7: case 8:
        clock.Advance(Pick(in, kAdvances));
        [[fallthrough]];
      case 9:
        TRACE << "poll\n";
        dispatcher->Poll();
        Collect();
        break;
      case 10: Api(in); break;
      case 11:
        // The forwarding destination takes its oldest event, or, with none
        // waiting, starts or stops keeping them.
        if (!forward->kept.empty()) {
          TRACE << "forwarding destination takes " << forward->kept.front()->id << "\n";
          forward->kept.pop_front();
        } else {
          forward->keeping = !forward->keeping;
        }
        if (watcher != nullptr) {
          std::vector<dispatch::v1::WatchUpdate> updates;
          (void)watcher->Take(&updates);
        }
        break;
    }
    CheckStats();
  }

  // Agents that behave: all connected with their inventory, every unsettled
  // event re-sent, every command answered, while the clock runs.
  void Drain() {
    TRACE << "drain\n";
    forward->keeping = false;  // the destination is back
    forward->kept.clear();
    for (int round = 0; round < 100; ++round) {
      for (int a = 0; a < kAgents; ++a) {
        AgentModel& agent = agents[a];
        // A new session (every agent at first: what it sent while it had
        // none, or on one the controller did not know, is sent again now),
        // its inventory, then every event not settled yet.
        if (round == 0 || agent.link == nullptr) {
          Connect(a);
          AgentMessage snapshot;
          snapshot.mutable_inventory_snapshot()->set_seq(++agent.seq);
          for (const auto& [id, c] : agent.containers) {
            *snapshot.mutable_inventory_snapshot()->add_containers() = c;
          }
          Send(a, snapshot);
          for (auto& [key, sent] : agent.events) {
            if (!sent.unsettled()) continue;
            AgentMessage m;
            m.mutable_event()->set_key(key.first);
            m.mutable_event()->set_generation(key.second);
            m.mutable_event()->set_event_id(sent.event_id);
            m.mutable_event()->set_payload(sent.payload);
            m.mutable_event()->set_observed_unix_nanos(absl::ToUnixNanos(clock.Now()));
            ++sent.sends;
            sent.last_send = ++tick;
            Send(a, m);
          }
        }
        AgentMessage heartbeat;
        heartbeat.mutable_heartbeat();
        Send(a, heartbeat);
        while (!agent.commands.empty() && agent.link != nullptr) {
          AgentMessage m;
          m.mutable_command_result()->set_command_id(agent.commands.front().command_id());
          m.mutable_command_result()->set_outcome(CommandResult::DELIVERED);
          agent.commands.pop_front();
          Send(a, m);
        }
        while (!agent.write_requests.empty() && agent.link != nullptr) {
          AgentMessage m;
          m.mutable_write_event_result()->set_request_id(agent.write_requests.front());
          agent.write_requests.pop_front();
          Send(a, m);
        }
      }
      CheckStats();
      const DispatcherStats s = dispatcher->stats();
      bool unsettled = false;
      for (const AgentModel& agent : agents) {
        for (const auto& [key, sent] : agent.events) unsettled |= sent.unsettled();
      }
      if (s.events_in_flight == 0 && !unsettled) break;
      clock.Advance(absl::Seconds(2));
      dispatcher->Poll();
      Collect();
    }
    const DispatcherStats s = dispatcher->stats();
    FUZZ_CHECK(s.events_in_flight == 0) << s.events_in_flight << " events still in flight ("
                                        << s.events_held << " held, " << s.debounce_pending
                                        << " debounced, " << s.deliveries_queued << " queued)";
    for (const AgentModel& agent : agents) {
      for (const auto& [key, sent] : agent.events) {
        FUZZ_CHECK(!sent.unsettled()) << agent.id << "'s event " << key.first << "#" << key.second
                                    << " (" << sent.event_id << ") was never settled";
      }
    }
    dispatcher->EndApiCalls();
    FUZZ_CHECK(api_done == api_calls) << api_calls - api_done << " API callbacks never ran";
  }
};

}  // namespace
}  // namespace controller
}  // namespace dispatchd

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  dispatchd::SetMinLogLevel(dispatchd::controller::Verbose() ? dispatchd::LogLevel::kDebug
                                                             : dispatchd::LogLevel::kFatal);
  dispatchd::fuzz::ByteReader in(data, size);
  dispatchd::controller::Harness harness(in);
  for (int steps = 0; steps < 400 && !in.empty(); ++steps) harness.Step(in);
  harness.Drain();
  return 0;
}
