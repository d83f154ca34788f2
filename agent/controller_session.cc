#include "agent/controller_session.h"

#include <algorithm>
#include <set>
#include <utility>

#include "absl/status/status.h"
#include "common/backoff.h"
#include "common/leader_redirect.h"
#include "common/logging.h"

namespace dispatchd {
namespace agent {

using dispatch::v1::AgentMessage;
using dispatch::v1::ControllerMessage;

namespace {

std::string CodeName(const grpc::Status& status) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
}

// `options` with the one controller behind `channel`.
ControllerSessionOptions WithChannel(ControllerSessionOptions options,
                                     std::shared_ptr<grpc::ChannelInterface> channel) {
  options.controllers = {ControllerSession::kChannelAddress};
  options.channels = ControllerSession::OnlyChannel(std::move(channel));
  return options;
}

}  // namespace

ChannelFactory ControllerSession::OnlyChannel(std::shared_ptr<grpc::ChannelInterface> channel) {
  return [channel = std::move(channel)](const std::string& address) {
    return address == kChannelAddress ? channel : nullptr;
  };
}

ControllerSession::ControllerSession(ControllerSessionOptions options, Clock* clock,
                                     Callbacks callbacks)
    : options_(std::move(options)), clock_(clock), callbacks_(std::move(callbacks)) {
  CHECK(clock_ != nullptr);
  CHECK(options_.metrics != nullptr) << "use NullAgentMetrics() for no metrics";
  CHECK(!options_.controllers.empty()) << "no controller address";
  CHECK(options_.channels != nullptr) << "no channel factory";
}

ControllerSession::ControllerSession(ControllerSessionOptions options, Clock* clock,
                                     std::shared_ptr<grpc::ChannelInterface> channel,
                                     Callbacks callbacks)
    : ControllerSession(WithChannel(std::move(options), std::move(channel)), clock,
                        std::move(callbacks)) {}

ControllerSession::~ControllerSession() { Stop(); }

void ControllerSession::Start() {
  absl::MutexLock threads_lock(&threads_mu_);
  CHECK(!started_) << "ControllerSession::Start called twice";
  started_ = true;
  if (stopping()) return;
  threads_.emplace_back([this] { WriteLoop(); });
  threads_.emplace_back([this] { SessionLoop(); });
  threads_.emplace_back([this] { HeartbeatLoop(); });
}

void ControllerSession::Stop() {
  absl::MutexLock threads_lock(&threads_mu_);
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
  }
  {
    absl::MutexLock lock(&write_mu_);
    writer_stop_ = true;
    if (context_ != nullptr) context_->TryCancel();
  }
  for (std::thread& t : threads_) t.join();
  threads_.clear();
}

bool ControllerSession::stopping() const {
  absl::MutexLock lock(&mu_);
  return stopping_;
}

bool ControllerSession::up() const {
  absl::MutexLock lock(&write_mu_);
  return stream_ != nullptr;
}

std::string ControllerSession::controller_address() const {
  absl::MutexLock lock(&write_mu_);
  return address_;
}

bool ControllerSession::Write(AgentMessage message) {
  absl::MutexLock lock(&write_mu_);
  if (stream_ == nullptr || write_failed_) return false;
  outgoing_.push_back(std::move(message));
  return true;
}

void ControllerSession::WriteLoop() {
  absl::MutexLock lock(&write_mu_);
  while (true) {
    write_mu_.Await(absl::Condition(
        +[](ControllerSession* s) ABSL_NO_THREAD_SAFETY_ANALYSIS {
          return s->writer_stop_ || (s->stream_ != nullptr && !s->outgoing_.empty());
        },
        this));
    if (writer_stop_) return;
    Stream* const stream = stream_;
    AgentMessage message;
    if (!peer_reads_batches_ || outgoing_.size() == 1) {
      message = std::move(outgoing_.front());
      outgoing_.pop_front();
    } else {
      auto* messages = message.mutable_batch()->mutable_messages();
      size_t bytes = 0;
      while (!outgoing_.empty() &&
             static_cast<size_t>(messages->size()) < options_.max_batch_messages) {
        const size_t size = outgoing_.front().ByteSizeLong();
        if (!messages->empty() && bytes + size > options_.max_batch_bytes) break;
        bytes += size;
        *messages->Add() = std::move(outgoing_.front());
        outgoing_.pop_front();
      }
    }
    // More queued behind it (a batch hit its bounds, or the controller does
    // not read batches): gRPC may hold this write and flush the run at once.
    grpc::WriteOptions write_options;
    if (!outgoing_.empty()) write_options.set_buffer_hint();
    writing_ = true;
    write_mu_.Unlock();
    const bool ok = stream->Write(message, write_options);
    write_mu_.Lock();
    writing_ = false;
    if (!ok && stream_ == stream) {
      // The stream is broken: the session thread sees its read fail and
      // starts a new session; until then, drop as when no session is up.
      write_failed_ = true;
      outgoing_.clear();
    }
  }
}

void ControllerSession::HeartbeatLoop() {
  absl::MutexLock lock(&mu_);
  while (!stopping_) {
    const int64_t period_ns = heartbeat_period_ns_.load();
    const absl::Duration period = period_ns > 0 ? absl::Nanoseconds(period_ns) : absl::Seconds(1);
    const absl::Time beat = clock_->Now() + period;
    // Until the beat is due, also wake at the connect deadline of each
    // attempt that has one.
    while (!stopping_) {
      const uint64_t attempt = attempt_;
      auto woken = [this, attempt]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
        return stopping_ || attempt_ != attempt;
      };
      clock_->AwaitWithDeadline(&mu_, absl::Condition(&woken), std::min(beat, connect_deadline_));
      if (stopping_) break;
      const absl::Time now = clock_->Now();
      if (attempt_ == attempt && connect_deadline_ <= now) {
        connect_deadline_ = absl::InfiniteFuture();
        mu_.Unlock();
        CancelUnconnected(attempt);
        mu_.Lock();
      }
      if (now >= beat) break;
    }
    if (stopping_ || period_ns == 0) continue;
    mu_.Unlock();
    AgentMessage heartbeat;
    heartbeat.mutable_heartbeat()->set_sent_unix_nanos(absl::ToUnixNanos(clock_->Now()));
    Write(std::move(heartbeat));
    const absl::Time last_heard = absl::FromUnixNanos(last_heard_ns_.load());
    if (clock_->Now() - last_heard > 3 * period) {
      absl::MutexLock write_lock(&write_mu_);
      if (context_ != nullptr && stream_ != nullptr) {
        LOG(WARNING) << "controller silent for 3 heartbeat periods: reconnecting";
        context_->TryCancel();
      }
    }
    mu_.Lock();
  }
}

void ControllerSession::CancelUnconnected(uint64_t attempt) {
  absl::MutexLock write_lock(&write_mu_);
  absl::MutexLock lock(&mu_);
  // Another attempt, one that got its Welcome, or one without a bound.
  if (attempt_ != attempt || context_ == nullptr || stream_ != nullptr ||
      attempt_channel_ == nullptr) {
    return;
  }
  // Connected: the controller is there, and answers in its own time.
  if (attempt_channel_->GetState(/*try_to_connect=*/false) == GRPC_CHANNEL_READY) return;
  connect_timed_out_ = true;
  context_->TryCancel();
}

std::shared_ptr<grpc::ChannelInterface> ControllerSession::ChannelTo(const std::string& address) {
  auto it = channels_.find(address);
  if (it == channels_.end()) it = channels_.emplace(address, options_.channels(address)).first;
  return it->second;
}

void ControllerSession::SessionLoop() {
  const std::vector<std::string>& list = options_.controllers;
  // The address to try, and the position in the list of the last listed
  // address tried (a leader's address may not be listed).
  std::string address = list.front();
  size_t position = 0;
  auto next_in_list = [&] {
    position = (position + 1) % list.size();
    address = list[position];
  };
  size_t failed_in_row = 0;   // attempts failed since the last Welcome or backoff
  int redirects_in_row = 0;   // redirects followed since the last Welcome or backoff
  uint64_t failures = 0;      // backoffs since the last session that got a Welcome
  // Since the last Welcome or backoff: addresses that failed, and whether
  // a standby answered.
  std::set<std::string> failed_in_pass;
  bool standby_answered = false;
  while (true) {
    if (stopping()) return;
    const Attempt attempt = RunSession(address);
    if (stopping()) return;
    standby_answered = standby_answered || attempt.standby_answered;
    switch (attempt.result) {
      case Attempt::kWelcomed:
        // Back off as little as possible, then the same controller first.
        failures = 0;
        failed_in_row = 0;
        redirects_in_row = 0;
        failed_in_pass.clear();
        standby_answered = false;
        break;
      case Attempt::kRedirected:
        if (failed_in_pass.count(attempt.leader) != 0) {
          // The leader it names just failed here (dead, its lease not run
          // out yet): as if this one had failed.
          LOG(INFO) << "controller " << address << " is not the leader and names "
                    << attempt.leader << ", which did not answer: trying the next one";
          failed_in_pass.insert(address);
          if (++failed_in_row < list.size()) {
            next_in_list();
            continue;
          }
          break;
        }
        if (++redirects_in_row <= kMaxRedirectsInRow) {
          LOG(INFO) << "controller " << address << " is not the leader; going to the leader at "
                    << attempt.leader;
          address = attempt.leader;
          if (auto it = std::find(list.begin(), list.end(), address); it != list.end()) {
            position = static_cast<size_t>(it - list.begin());
          }
          continue;
        }
        LOG(WARNING) << "controller " << address << " is not the leader and names " << attempt.leader
                     << ", after " << kMaxRedirectsInRow
                     << " redirects in a row without a session: backing off";
        break;
      case Attempt::kFailed:
        failed_in_pass.insert(address);
        if (++failed_in_row < list.size()) {
          next_in_list();
          continue;
        }
        break;
    }
    const bool election = standby_answered;
    if (attempt.result != Attempt::kWelcomed) {
      // Every address failed in a row, or the redirects went round: back
      // off, then go on with the next address.
      failed_in_row = 0;
      redirects_in_row = 0;
      failed_in_pass.clear();
      standby_answered = false;
      next_in_list();
    }
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    // Once a controller has named its heartbeat period, try at least once
    // per period: a restarted controller holds events for 3 periods while
    // the agents of its previous run come back.
    absl::Duration cap = options_.reconnect_max_backoff;
    if (const int64_t period_ns = heartbeat_period_ns_.load(); period_ns > 0) {
      cap = std::max(options_.reconnect_min_backoff,
                     std::min(cap, absl::Nanoseconds(period_ns)));
    }
    // A standby answered: a leader is being elected; look again soon.
    if (election) cap = std::max(options_.reconnect_min_backoff, std::min(cap, kElectionBackoff));
    const absl::Duration wait = EqualJitter(
        FullJitterBound(absl::ZeroDuration(), options_.reconnect_min_backoff, cap, ++failures),
        [this](int64_t n) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // mu_ is held
          return absl::Uniform<int64_t>(bitgen_, 0, n);
        });
    clock_->AwaitWithDeadline(&mu_, absl::Condition(&stopping_), clock_->Now() + wait);
  }
}

ControllerSession::Attempt ControllerSession::RunSession(const std::string& address) {
  std::shared_ptr<grpc::ChannelInterface> channel = ChannelTo(address);
  if (channel == nullptr) {
    options_.metrics->RecordSessionAttempt(AgentMetricsRecorder::SessionResult::kFailed);
    LOG(WARNING) << "no channel to the controller at " << address;
    return {};
  }
  grpc::ClientContext context;
  // Wait for the channel to connect rather than fail at once while it backs
  // off after a failure: a restarted controller must see its agents back
  // within its start-up grace, or it routes their subscribers' events
  // without them. Stop() still cancels the wait; with several controllers,
  // so does the heartbeat thread once connect_timeout has passed, and the
  // next one is tried.
  context.set_wait_for_ready(true);
  // With several controllers, one whose channel already failed to connect
  // (a dead replica) fails at once rather than after connect_timeout.
  if (options_.controllers.size() > 1 &&
      channel->GetState(/*try_to_connect=*/true) == GRPC_CHANNEL_TRANSIENT_FAILURE) {
    context.set_wait_for_ready(false);
  }
  absl::Duration connect_timeout = absl::InfiniteDuration();
  {
    absl::MutexLock write_lock(&write_mu_);
    absl::MutexLock lock(&mu_);
    // Checked under write_mu_: Stop() either sees context_ and cancels it,
    // or has set stopping_ before this looks.
    if (stopping_) return {};
    context_ = &context;
    ++attempt_;
    connect_timed_out_ = false;
    if (options_.controllers.size() > 1) {
      connect_timeout = options_.connect_timeout;
      if (const int64_t period_ns = heartbeat_period_ns_.load(); period_ns > 0) {
        connect_timeout = std::min(connect_timeout, absl::Nanoseconds(period_ns));
      }
      connect_deadline_ = clock_->Now() + connect_timeout;
      attempt_channel_ = channel;
    }
  }
  // Published above: a cancellation before the call starts still ends it.
  const std::unique_ptr<dispatch::v1::AgentSession::Stub> stub =
      dispatch::v1::AgentSession::NewStub(channel);
  std::unique_ptr<Stream> stream = stub->Session(&context);
  auto clear_context = [&] {
    ready_.store(false);
    options_.metrics->SetSessionUp(false);
    absl::MutexLock lock(&write_mu_);
    stream_ = nullptr;
    context_ = nullptr;
    address_.clear();
    outgoing_.clear();
    {
      absl::MutexLock attempt_lock(&mu_);
      connect_deadline_ = absl::InfiniteFuture();
      attempt_channel_ = nullptr;
    }
    // The stream is about to be finished and destroyed: no write may be in
    // flight on it. Cancelling makes a write blocked by flow control return.
    if (writing_) {
      context.TryCancel();
      write_mu_.Await(absl::Condition(
          +[](ControllerSession* s) ABSL_NO_THREAD_SAFETY_ANALYSIS { return !s->writing_; }, this));
    }
  };
  AgentMessage hello;
  hello.mutable_hello()->set_agent_id(options_.agent_id);
  hello.mutable_hello()->set_host(options_.host);
  hello.mutable_hello()->set_version("dispatchd");
  hello.mutable_hello()->set_token(options_.token);
  hello.mutable_hello()->set_accepts_batches(true);
  ControllerMessage welcome;
  if (!stream->Write(hello) || !stream->Read(&welcome) || !welcome.has_welcome()) {
    clear_context();
    options_.metrics->RecordSessionAttempt(AgentMetricsRecorder::SessionResult::kFailed);
    grpc::Status status = stream->Finish();
    Attempt attempt;
    bool timed_out;
    {
      absl::MutexLock lock(&mu_);
      if (stopping_) return attempt;
      timed_out = connect_timed_out_;
    }
    attempt.standby_answered = status.error_code() == grpc::StatusCode::FAILED_PRECONDITION;
    // A replica that does not lead names the one that does.
    if (std::string leader = RedirectedTo(context, status); !leader.empty()) {
      attempt.result = Attempt::kRedirected;
      attempt.leader = std::move(leader);
    } else if (timed_out) {
      LOG(WARNING) << "controller at " << address << " not connected within "
                   << absl::FormatDuration(connect_timeout);
    } else {
      LOG(WARNING) << "controller session failed to open at " << address << ": "
                   << status.error_message() << " (" << CodeName(status) << ")";
    }
    return attempt;
  }
  heartbeat_period_ns_.store(
      absl::ToInt64Nanoseconds(absl::Milliseconds(welcome.welcome().heartbeat_period_ms())));
  last_heard_ns_.store(absl::ToUnixNanos(clock_->Now()));
  LOG(INFO) << "session " << welcome.welcome().session_id() << " with the controller at "
            << address << " is up";
  {
    absl::MutexLock lock(&write_mu_);
    stream_ = stream.get();
    address_ = address;
    peer_reads_batches_ = welcome.welcome().accepts_batches();
    write_failed_ = false;
    {
      absl::MutexLock attempt_lock(&mu_);
      connect_deadline_ = absl::InfiniteFuture();
      attempt_channel_ = nullptr;
    }
    // The inventory first, queued in the critical section that opens the
    // queue to Write(), so that nothing overtakes it.
    if (callbacks_.inventory) outgoing_.push_back(callbacks_.inventory());
  }
  // Counted before up() says so, so whoever sees the session up sees it
  // counted.
  options_.metrics->RecordSessionAttempt(AgentMetricsRecorder::SessionResult::kOpened);
  options_.metrics->SetSessionUp(true);
  ready_.store(true);
  // Then every unsettled event (the controller de-duplicates).
  if (callbacks_.resend) {
    for (AgentMessage& message : callbacks_.resend()) Write(std::move(message));
  }

  ControllerMessage message;
  while (stream->Read(&message)) {
    last_heard_ns_.store(absl::ToUnixNanos(clock_->Now()));
    Handle(message);
  }
  clear_context();
  grpc::Status status = stream->Finish();
  if (!stopping()) {
    LOG(WARNING) << "controller session ended at " << address << ": " << status.error_message()
                 << " (" << CodeName(status) << "); reconnecting";
  }
  if (callbacks_.on_session_end) callbacks_.on_session_end();
  return {Attempt::kWelcomed, ""};
}

void ControllerSession::Handle(const ControllerMessage& message) {
  switch (message.msg_case()) {
    case ControllerMessage::kBatch:
      for (const ControllerMessage& m : message.batch().messages()) {
        if (!m.has_batch()) Handle(m);  // a batch never nests
      }
      break;
    case ControllerMessage::kWriteEvent:
    case ControllerMessage::kDeadLetterRequest:
      if (callbacks_.on_file_request) callbacks_.on_file_request(message);
      break;
    case ControllerMessage::kCommand:
      if (callbacks_.on_command) callbacks_.on_command(message.command());
      break;
    case ControllerMessage::kSettled:
      if (callbacks_.on_settled) callbacks_.on_settled(message.settled());
      break;
    case ControllerMessage::kDelivered:
      if (callbacks_.on_delivered) callbacks_.on_delivered(message.delivered());
      break;
    default:
      break;
  }
}

}  // namespace agent
}  // namespace dispatchd
