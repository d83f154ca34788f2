#include "bench/fleet.h"

#include <grpcpp/grpcpp.h>

#include <algorithm>
#include <deque>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "proto/dispatch/v1/session.grpc.pb.h"

namespace dispatchd {
namespace bench {

using dispatch::v1::AgentMessage;
using dispatch::v1::CommandResult;
using dispatch::v1::Container;
using dispatch::v1::ControllerMessage;

// One agent's session. Reads are always outstanding (each read handler
// starts the next); writes go one at a time, what queued up meanwhile as
// one batch. No lock is held across a Start* call: gRPC may run a reaction
// inline.
class Fleet::Agent final : public grpc::ClientBidiReactor<AgentMessage, ControllerMessage> {
 public:
  // As the real agent: at most this much in one AgentBatch.
  static constexpr size_t kMaxBatchMessages = 1000;
  static constexpr size_t kMaxBatchBytes = 1 << 20;

  Agent(Fleet* fleet, int index, const std::shared_ptr<grpc::Channel>& channel)
      : fleet_(fleet), index_(index), stub_(dispatch::v1::AgentSession::NewStub(channel)) {
    // A connection refused or dropped in the storm is retried by the
    // channel (as the real agent's session would open it again), not
    // failed at once.
    context_.set_wait_for_ready(true);
  }

  void Start() {
    auto* hello = current_.mutable_hello();
    hello->set_agent_id(AgentId(index_));
    hello->set_host(AgentId(index_));
    hello->set_version("fleet-bench");
    hello->set_accepts_batches(true);
    {
      absl::MutexLock lock(&mu_);
      writing_ = true;
    }
    stub_->async()->Session(&context_, this);
    // Writes also start outside the reactions (events, heartbeats): the hold
    // keeps OnDone back until the session has ended and no such write is
    // being started.
    AddHold();
    StartWrite(&current_);
    StartRead(&incoming_);
    StartCall();
  }

  void Cancel() { context_.TryCancel(); }

  // Queues `messages` behind what is queued; writes unless a write is in
  // flight (its completion writes what queued up).
  void Send(std::vector<AgentMessage> messages) {
    {
      absl::MutexLock lock(&mu_);
      if (ended_) return;
      for (AgentMessage& m : messages) outbox_.push_back(std::move(m));
      if (writing_ || !welcomed_) return;
      writing_ = true;
      TakeNextWrite();
      ++starting_;
    }
    StartWrite(&current_);
    WriteStarted();
  }

  // The next inventory sequence number (the snapshot is 1).
  uint64_t NextSeq() {
    absl::MutexLock lock(&mu_);
    return ++seq_;
  }

  void OnWriteDone(bool ok) override {
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {  // the stream is gone; the read fails too, then OnDone
        End();
        return;
      }
      if (outbox_.empty() || !welcomed_) return;
      writing_ = true;
      TakeNextWrite();
      ++starting_;
    }
    StartWrite(&current_);
    WriteStarted();
  }

  void OnReadDone(bool ok) override {
    if (!ok) {  // no read outstanding any more: OnDone follows
      absl::MutexLock lock(&mu_);
      End();
      return;
    }
    const absl::Time received = absl::Now();
    std::vector<AgentMessage> answers;
    uint64_t commands = 0, settled = 0, heartbeats = 0;
    auto handle = [&](const ControllerMessage& m) {
      switch (m.msg_case()) {
        case ControllerMessage::kWelcome: {
          {
            absl::MutexLock lock(&mu_);
            welcomed_ = true;
            batches_ = m.welcome().accepts_batches();
            seq_ = 1;
          }
          // The real agent's first message after the Welcome: its inventory.
          AgentMessage snapshot;
          auto* s = snapshot.mutable_inventory_snapshot();
          s->set_seq(1);
          for (int c = 0; c < fleet_->options_.containers; ++c) {
            *s->add_containers() = fleet_->MakeContainer(index_, c);
          }
          answers.push_back(std::move(snapshot));
          fleet_->OnWelcome(index_, received,
                            absl::Milliseconds(m.welcome().heartbeat_period_ms()));
          break;
        }
        case ControllerMessage::kCommand: {
          ++commands;
          if (fleet_->expecting_.load(std::memory_order_relaxed)) {
            fleet_->OnCommand(m.command().event_id(), received);
          }
          AgentMessage answer;
          CommandResult* result = answer.mutable_command_result();
          result->set_command_id(m.command().command_id());
          result->set_outcome(CommandResult::DELIVERED);
          result->set_exec_id("fleet");
          const int64_t now = absl::GetCurrentTimeNanos();
          result->set_exec_create_sent_unix_nanos(now);
          result->set_exec_start_sent_unix_nanos(now);
          answers.push_back(std::move(answer));
          break;
        }
        case ControllerMessage::kSettled:
          ++settled;
          break;
        case ControllerMessage::kHeartbeat:
          ++heartbeats;
          break;
        default:
          break;
      }
    };
    if (incoming_.has_batch()) {
      for (const ControllerMessage& m : incoming_.batch().messages()) handle(m);
    } else {
      handle(incoming_);
    }
    if (commands + settled + heartbeats > 0) fleet_->OnRead(commands, settled, heartbeats);
    if (!answers.empty()) Send(std::move(answers));
    StartRead(&incoming_);
  }

  void OnDone(const grpc::Status& status) override {
    fleet_->OnEnded(absl::StrCat(AgentId(index_), ": ", static_cast<int>(status.error_code()), " ",
                                 status.error_message()));
    fleet_->OnDone();  // the last thing: the fleet may destroy this agent now
  }

 private:
  // The session has ended: nothing more is written; the hold goes once no
  // write is being started. The caller holds mu_ (RemoveHold never runs a
  // reaction inline: OnDone waits for the read in flight or the reaction
  // that called this).
  void End() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    ended_ = true;
    outbox_.clear();
    ReleaseHoldIfDone();
  }
  void ReleaseHoldIfDone() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (ended_ && starting_ == 0 && !hold_released_) {
      hold_released_ = true;
      RemoveHold();
    }
  }
  // A StartWrite begun under writing_ has returned.
  void WriteStarted() {
    absl::MutexLock lock(&mu_);
    --starting_;
    ReleaseHoldIfDone();
  }

  // Moves the next write into current_: one message, or what is queued as
  // one batch when the controller reads batches.
  void TakeNextWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    current_.Clear();
    if (!batches_ || outbox_.size() == 1) {
      current_ = std::move(outbox_.front());
      outbox_.pop_front();
      return;
    }
    auto* messages = current_.mutable_batch()->mutable_messages();
    size_t bytes = 0;
    while (!outbox_.empty() && static_cast<size_t>(messages->size()) < kMaxBatchMessages) {
      const size_t size = outbox_.front().ByteSizeLong();
      if (!messages->empty() && bytes + size > kMaxBatchBytes) break;
      bytes += size;
      *messages->Add() = std::move(outbox_.front());
      outbox_.pop_front();
    }
  }

  Fleet* const fleet_;
  const int index_;
  std::unique_ptr<dispatch::v1::AgentSession::Stub> stub_;
  grpc::ClientContext context_;
  ControllerMessage incoming_;  // only the read path touches it

  absl::Mutex mu_;
  std::deque<AgentMessage> outbox_ ABSL_GUARDED_BY(mu_);
  AgentMessage current_;  // the write in flight; set under mu_ when writing_ becomes true
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  bool welcomed_ ABSL_GUARDED_BY(mu_) = false;
  bool batches_ ABSL_GUARDED_BY(mu_) = false;
  bool ended_ ABSL_GUARDED_BY(mu_) = false;
  // StartWrite calls under way outside the lock.
  int starting_ ABSL_GUARDED_BY(mu_) = 0;
  bool hold_released_ ABSL_GUARDED_BY(mu_) = false;
  uint64_t seq_ ABSL_GUARDED_BY(mu_) = 0;
};

Fleet::Fleet(FleetOptions options) : options_(std::move(options)) {}

Fleet::~Fleet() {
  {
    absl::MutexLock lock(&heartbeat_mu_);
    heartbeat_stopping_ = true;
  }
  if (heartbeat_thread_.joinable()) heartbeat_thread_.join();
  {
    absl::MutexLock lock(&mu_);
    shutting_down_ = true;
  }
  for (auto& agent : agents_) agent->Cancel();
  absl::MutexLock lock(&mu_);
  auto all_done = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return done_ >= started_; };
  if (!mu_.AwaitWithTimeout(absl::Condition(&all_done), absl::Minutes(2))) {
    // A reactor gRPC has not finished with must not be freed under it.
    for (auto& agent : agents_) agent.release();
  }
}

std::string Fleet::AgentId(int agent) { return absl::StrFormat("fleet-%05d", agent); }

std::string Fleet::SubscribedEventId(int agent, int container, int subscription) {
  return absl::StrCat("fleet.a", agent, ".c", container, ".s", subscription);
}

Container Fleet::MakeContainer(int agent, int container, const std::string& extra_event_id) const {
  Container c;
  c.set_id(absl::StrFormat("%016x%048x", agent + 1, container + 1));
  c.set_name(absl::StrCat("fleet-a", agent, "-c", container));
  c.set_state(Container::RUNNING);
  auto& labels = *c.mutable_labels();
  for (int s = 0; s < options_.subscriptions; ++s) {
    labels[absl::StrCat("subscription.", SubscribedEventId(agent, container, s),
                        ".container.command")] = "touch /tmp/handled";
  }
  if (!extra_event_id.empty()) {
    labels[absl::StrCat("subscription.", extra_event_id, ".container.command")] = "true";
  }
  // What else a compose-made container carries: not subscriptions.
  labels["com.docker.compose.project"] = "fleet";
  labels["com.docker.compose.service"] = absl::StrCat("svc", container);
  labels["com.docker.compose.container-number"] = "1";
  labels["com.docker.compose.config-hash"] = absl::StrFormat("%064x", container * 7919 + 1);
  labels["org.opencontainers.image.source"] = "https://example.com/fleet/handler";
  return c;
}

absl::Time Fleet::ConnectAll() {
  grpc::ChannelArguments args;
  // A connection of its own per agent, as from a host of its own.
  args.SetInt(GRPC_ARG_USE_LOCAL_SUBCHANNEL_POOL, 1);
  // The real agent's channel: reconnect after 100 ms, at most 1 s apart.
  // (Not GRPC_ARG_MIN_RECONNECT_BACKOFF_MS: it is how long a connection
  // attempt may take, 20 s by default; at 100 ms a busy controller's
  // handshakes time out and every agent opens connection after connection.)
  args.SetInt(GRPC_ARG_INITIAL_RECONNECT_BACKOFF_MS, 100);
  args.SetInt(GRPC_ARG_MAX_RECONNECT_BACKOFF_MS, 1000);
  agents_.reserve(options_.agents);
  for (int i = 0; i < options_.agents; ++i) {
    agents_.push_back(std::make_unique<Agent>(
        this, i,
        grpc::CreateCustomChannel(options_.address, grpc::InsecureChannelCredentials(), args)));
  }
  {
    absl::MutexLock lock(&mu_);
    started_ = agents_.size();
    welcome_times_.assign(agents_.size(), absl::InfinitePast());
  }
  {
    absl::MutexLock lock(&heartbeat_mu_);
    heartbeat_period_.assign(agents_.size(), absl::Seconds(5));
  }
  heartbeat_thread_ = std::thread([this] { HeartbeatLoop(); });
  const absl::Time start = absl::Now();
  for (auto& agent : agents_) agent->Start();
  return start;
}

bool Fleet::WaitWelcomed(absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto all = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return welcomed_ >= static_cast<uint64_t>(options_.agents);
  };
  return mu_.AwaitWithTimeout(absl::Condition(&all), timeout);
}

std::vector<absl::Time> Fleet::welcome_times() const {
  absl::MutexLock lock(&mu_);
  return welcome_times_;
}

void Fleet::SendEvent(int origin, const std::string& key, const std::string& event_id) {
  AgentMessage message;
  auto* event = message.mutable_event();
  event->set_key(key);
  event->set_event_id(event_id);
  event->set_payload("x");
  event->set_size(1);
  event->set_generation(1);
  event->set_observed_unix_nanos(absl::GetCurrentTimeNanos());
  {
    absl::MutexLock lock(&mu_);
    ++events_sent_;
  }
  std::vector<AgentMessage> messages;
  messages.push_back(std::move(message));
  agents_[origin]->Send(std::move(messages));
}

void Fleet::SendDelta(int agent, int container, const std::string& extra_event_id) {
  AgentMessage message;
  auto* delta = message.mutable_inventory_delta();
  delta->set_seq(agents_[agent]->NextSeq());
  *delta->add_upserted() = MakeContainer(agent, container, extra_event_id);
  std::vector<AgentMessage> messages;
  messages.push_back(std::move(message));
  agents_[agent]->Send(std::move(messages));
}

bool Fleet::WaitRoom(uint64_t max, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto room = [this, max]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ended_ > 0 || events_sent_ - settled_ < max;
  };
  return mu_.AwaitWithTimeout(absl::Condition(&room), timeout) && ended_ == 0;
}

bool Fleet::WaitSettled(uint64_t count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return settled_ >= count; };
  return mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
}

void Fleet::ExpectCommand(const std::string& event_id) {
  absl::MutexLock lock(&mu_);
  expected_[event_id] = std::nullopt;
  expecting_ = true;
}

std::optional<absl::Time> Fleet::WaitCommand(const std::string& event_id, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto arrived = [this, &event_id]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    auto it = expected_.find(event_id);
    return it == expected_.end() || it->second.has_value();
  };
  mu_.AwaitWithTimeout(absl::Condition(&arrived), timeout);
  std::optional<absl::Time> at;
  if (auto it = expected_.find(event_id); it != expected_.end()) {
    at = it->second;
    expected_.erase(it);
  }
  if (expected_.empty()) expecting_ = false;
  return at;
}

uint64_t Fleet::events_sent() const {
  absl::MutexLock lock(&mu_);
  return events_sent_;
}

uint64_t Fleet::settled() const {
  absl::MutexLock lock(&mu_);
  return settled_;
}

uint64_t Fleet::commands() const {
  absl::MutexLock lock(&mu_);
  return commands_;
}

uint64_t Fleet::sessions_ended() const {
  absl::MutexLock lock(&mu_);
  return ended_;
}

std::vector<std::string> Fleet::end_reasons() const {
  absl::MutexLock lock(&mu_);
  return end_reasons_;
}

void Fleet::OnWelcome(int agent, absl::Time at, absl::Duration heartbeat_period) {
  {
    absl::MutexLock lock(&mu_);
    ++welcomed_;
    welcome_times_[agent] = at;
  }
  if (heartbeat_period <= absl::ZeroDuration()) return;
  absl::MutexLock lock(&heartbeat_mu_);
  heartbeat_period_[agent] = heartbeat_period;
  heartbeat_due_.emplace(at + heartbeat_period, agent);
}

void Fleet::OnRead(uint64_t commands, uint64_t settled, uint64_t heartbeats) {
  if (heartbeats > 0) heartbeats_received_.fetch_add(heartbeats, std::memory_order_relaxed);
  if (commands + settled == 0) return;
  absl::MutexLock lock(&mu_);
  commands_ += commands;
  settled_ += settled;
}

void Fleet::OnCommand(const std::string& event_id, absl::Time at) {
  absl::MutexLock lock(&mu_);
  auto it = expected_.find(event_id);
  if (it != expected_.end() && !it->second.has_value()) it->second = at;
}

void Fleet::OnEnded(const std::string& reason) {
  absl::MutexLock lock(&mu_);
  if (shutting_down_) return;
  ++ended_;
  if (end_reasons_.size() < 5) end_reasons_.push_back(reason);
}

void Fleet::OnDone() {
  absl::MutexLock lock(&mu_);
  ++done_;
}

void Fleet::HeartbeatLoop() {
  while (true) {
    std::vector<int> due;
    {
      absl::MutexLock lock(&heartbeat_mu_);
      absl::Time wake = absl::Now() + absl::Milliseconds(20);
      if (!heartbeat_due_.empty()) wake = std::min(wake, heartbeat_due_.begin()->first);
      heartbeat_mu_.AwaitWithDeadline(absl::Condition(&heartbeat_stopping_), wake);
      if (heartbeat_stopping_) return;
      const absl::Time now = absl::Now();
      while (!heartbeat_due_.empty() && heartbeat_due_.begin()->first <= now) {
        const auto [at, agent] = *heartbeat_due_.begin();
        heartbeat_due_.erase(heartbeat_due_.begin());
        due.push_back(agent);
        heartbeat_due_.emplace(at + heartbeat_period_[agent], agent);
      }
    }
    for (int agent : due) {
      AgentMessage heartbeat;
      heartbeat.mutable_heartbeat()->set_sent_unix_nanos(absl::GetCurrentTimeNanos());
      std::vector<AgentMessage> messages;
      messages.push_back(std::move(heartbeat));
      agents_[agent]->Send(std::move(messages));
      heartbeats_sent_.fetch_add(1, std::memory_order_relaxed);
    }
  }
}

}  // namespace bench
}  // namespace dispatchd
