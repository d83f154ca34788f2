#include "bench/synthetic_agent.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"

namespace dispatchd {
namespace bench {

using dispatch::v1::AgentMessage;
using dispatch::v1::CommandResult;
using dispatch::v1::ControllerMessage;

absl::StatusOr<std::unique_ptr<SyntheticAgent>> SyntheticAgent::Connect(
    const std::string& address, const std::string& agent_id) {
  std::unique_ptr<SyntheticAgent> agent(new SyntheticAgent());
  grpc::ChannelArguments args;
  // Snapshots of 10,000 subscriptions are larger than gRPC's 4 MB default.
  args.SetMaxSendMessageSize(64 << 20);
  args.SetMaxReceiveMessageSize(64 << 20);
  agent->stub_ = dispatch::v1::AgentSession::NewStub(
      grpc::CreateCustomChannel(address, grpc::InsecureChannelCredentials(), args));
  agent->stream_ = agent->stub_->Session(&agent->context_);
  AgentMessage hello;
  hello.mutable_hello()->set_agent_id(agent_id);
  hello.mutable_hello()->set_host(agent_id);
  hello.mutable_hello()->set_version("bench");
  hello.mutable_hello()->set_accepts_batches(true);
  if (!agent->stream_->Write(hello)) {
    return absl::UnavailableError(absl::StrCat("cannot open a session to ", address));
  }
  agent->reader_ = std::thread([a = agent.get()] { a->ReadLoop(); });
  agent->writer_ = std::thread([a = agent.get()] { a->WriteLoop(); });
  absl::MutexLock lock(&agent->mu_);
  auto welcomed = [a = agent.get()]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(a->mu_) {
    return a->welcomed_ || a->ended_;
  };
  agent->mu_.AwaitWithTimeout(absl::Condition(&welcomed), absl::Seconds(10));
  if (!agent->welcomed_) {
    return absl::UnavailableError(absl::StrCat("no Welcome from ", address));
  }
  return agent;
}

SyntheticAgent::~SyntheticAgent() {
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  if (writer_.joinable()) writer_.join();
  context_.TryCancel();
  if (reader_.joinable()) reader_.join();
}

void SyntheticAgent::set_command_observer(CommandObserver observer) {
  absl::MutexLock lock(&mu_);
  observer_ = std::move(observer);
}

void SyntheticAgent::Send(AgentMessage message) {
  absl::MutexLock lock(&mu_);
  outbox_.push_back(std::move(message));
}

void SyntheticAgent::SendEvent(const std::string& key, const std::string& event_id,
                               size_t max_unsettled) {
  AgentMessage message;
  auto* event = message.mutable_event();
  event->set_key(key);
  event->set_event_id(event_id);
  event->set_payload("x");
  event->set_size(1);
  event->set_generation(1);
  absl::MutexLock lock(&mu_);
  auto room = [this, max_unsettled]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ended_ || events_sent_ - settled_ < max_unsettled;
  };
  mu_.Await(absl::Condition(&room));
  event->set_observed_unix_nanos(absl::GetCurrentTimeNanos());
  ++events_sent_;
  outbox_.push_back(std::move(message));
}

bool SyntheticAgent::WaitSettled(uint64_t count, absl::Duration timeout) {
  absl::MutexLock lock(&mu_);
  auto done = [this, count]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    return ended_ || settled_ >= count;
  };
  mu_.AwaitWithTimeout(absl::Condition(&done), timeout);
  return settled_ >= count;
}

uint64_t SyntheticAgent::settled() const {
  absl::MutexLock lock(&mu_);
  return settled_;
}

uint64_t SyntheticAgent::commands() const {
  absl::MutexLock lock(&mu_);
  return commands_;
}

bool SyntheticAgent::alive() const {
  absl::MutexLock lock(&mu_);
  return !ended_;
}

void SyntheticAgent::ReadLoop() {
  ControllerMessage message;
  while (stream_->Read(&message)) {
    const absl::Time received = absl::Now();
    // A batch is answered as one: its answers queue together and the writer
    // wakes once. (The real agent answers as its exec workers finish; this
    // one answers at once, so a whole batch is ready together.)
    Answers answers;
    {
      absl::MutexLock lock(&mu_);
      answers.observer = observer_;
    }
    if (message.has_batch()) {
      for (const ControllerMessage& m : message.batch().messages()) Handle(m, received, &answers);
    } else {
      Handle(message, received, &answers);
    }
    if (answers.messages.empty() && answers.settled == 0) continue;
    absl::MutexLock lock(&mu_);
    commands_ += answers.messages.size();
    settled_ += answers.settled;
    for (AgentMessage& answer : answers.messages) answers_.push_back(std::move(answer));
  }
  absl::MutexLock lock(&mu_);
  ended_ = true;
}

void SyntheticAgent::Handle(const ControllerMessage& message, absl::Time received,
                            Answers* answers) {
  switch (message.msg_case()) {
    case ControllerMessage::kWelcome: {
      absl::MutexLock lock(&mu_);
      welcomed_ = true;
      peer_reads_batches_ = message.welcome().accepts_batches();
      break;
    }
    case ControllerMessage::kCommand: {
      if (answers->observer) answers->observer(message.command(), received);
      AgentMessage answer;
      CommandResult* result = answer.mutable_command_result();
      result->set_command_id(message.command().command_id());
      result->set_outcome(CommandResult::DELIVERED);
      result->set_exec_id("synthetic");
      const int64_t now = absl::GetCurrentTimeNanos();
      result->set_exec_create_sent_unix_nanos(now);
      result->set_exec_start_sent_unix_nanos(now);
      answers->messages.push_back(std::move(answer));
      break;
    }
    case ControllerMessage::kSettled:
      ++answers->settled;
      break;
    default:
      break;
  }
}

void SyntheticAgent::WriteLoop() {
  absl::Time next_heartbeat = absl::Now();
  while (true) {
    std::deque<AgentMessage> batch;
    bool peer_reads_batches = false;
    {
      absl::MutexLock lock(&mu_);
      auto ready = [this]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || ended_ || !answers_.empty() || !outbox_.empty();
      };
      mu_.AwaitWithDeadline(absl::Condition(&ready), next_heartbeat);
      if (stopping_ || ended_) break;
      peer_reads_batches = peer_reads_batches_;
      // Answers first: the controller's lanes wait for them.
      batch.swap(answers_);
      while (!outbox_.empty() && batch.size() < 256) {
        batch.push_back(std::move(outbox_.front()));
        outbox_.pop_front();
      }
    }
    if (absl::Now() >= next_heartbeat) {
      AgentMessage heartbeat;
      heartbeat.mutable_heartbeat()->set_sent_unix_nanos(absl::GetCurrentTimeNanos());
      batch.push_back(std::move(heartbeat));
      next_heartbeat = absl::Now() + absl::Milliseconds(300);
    }
    // As the real agent does: what queued up goes out as one AgentBatch
    // (at most 1,000 messages each) when the controller reads batches;
    // otherwise one write per message, all but the last of the run left in
    // gRPC's buffer so that the run takes one flush.
    std::vector<AgentMessage> writes;
    if (peer_reads_batches && batch.size() > 1) {
      while (!batch.empty()) {
        AgentMessage message;
        auto* messages = message.mutable_batch()->mutable_messages();
        while (!batch.empty() && messages->size() < 1000) {
          *messages->Add() = std::move(batch.front());
          batch.pop_front();
        }
        writes.push_back(std::move(message));
      }
    } else {
      writes.assign(std::make_move_iterator(batch.begin()), std::make_move_iterator(batch.end()));
    }
    for (size_t i = 0; i < writes.size(); ++i) {
      grpc::WriteOptions write_options;
      if (i + 1 < writes.size()) write_options.set_buffer_hint();
      if (!stream_->Write(writes[i], write_options)) {
        absl::MutexLock lock(&mu_);
        ended_ = true;
        return;
      }
    }
  }
  stream_->WritesDone();
}

}  // namespace bench
}  // namespace dispatchd
