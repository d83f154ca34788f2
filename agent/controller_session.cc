#include "agent/controller_session.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "common/backoff.h"
#include "common/logging.h"

namespace dispatchd {
namespace agent {

using dispatch::v1::AgentMessage;
using dispatch::v1::ControllerMessage;

namespace {

std::string CodeName(const grpc::Status& status) {
  return absl::StatusCodeToString(static_cast<absl::StatusCode>(status.error_code()));
}

}  // namespace

ControllerSession::ControllerSession(ControllerSessionOptions options, Clock* clock,
                                     std::shared_ptr<grpc::ChannelInterface> channel,
                                     Callbacks callbacks)
    : options_(std::move(options)),
      clock_(clock),
      stub_(dispatch::v1::AgentSession::NewStub(std::move(channel))),
      callbacks_(std::move(callbacks)) {
  CHECK(clock_ != nullptr);
  CHECK(options_.metrics != nullptr) << "use NullAgentMetrics() for no metrics";
}

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
    clock_->AwaitWithDeadline(&mu_, absl::Condition(&stopping_), clock_->Now() + period);
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

void ControllerSession::SessionLoop() {
  uint64_t failures = 0;  // since the last session that got a Welcome
  while (true) {
    if (stopping()) return;
    const bool had_session = RunSession();
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    if (had_session) failures = 0;
    // Once a controller has named its heartbeat period, try at least once
    // per period: a restarted controller holds events for 3 periods while
    // the agents of its previous run come back.
    absl::Duration cap = options_.reconnect_max_backoff;
    if (const int64_t period_ns = heartbeat_period_ns_.load(); period_ns > 0) {
      cap = std::max(options_.reconnect_min_backoff,
                     std::min(cap, absl::Nanoseconds(period_ns)));
    }
    const absl::Duration wait = EqualJitter(
        FullJitterBound(absl::ZeroDuration(), options_.reconnect_min_backoff, cap, ++failures),
        [this](int64_t n) ABSL_NO_THREAD_SAFETY_ANALYSIS {  // mu_ is held
          return absl::Uniform<int64_t>(bitgen_, 0, n);
        });
    clock_->AwaitWithDeadline(&mu_, absl::Condition(&stopping_), clock_->Now() + wait);
  }
}

bool ControllerSession::RunSession() {
  grpc::ClientContext context;
  // Wait for the channel to connect rather than fail at once while it backs
  // off after a failure: a restarted controller must see its agents back
  // within its start-up grace, or it routes their subscribers' events
  // without them. Stop() still cancels the wait.
  context.set_wait_for_ready(true);
  std::unique_ptr<Stream> stream;
  {
    absl::MutexLock lock(&write_mu_);
    // Checked under write_mu_: Stop() either sees context_ and cancels it,
    // or has set stopping_ before this looks.
    if (stopping()) return false;
    stream = stub_->Session(&context);
    context_ = &context;
  }
  auto clear_context = [&] {
    ready_.store(false);
    options_.metrics->SetSessionUp(false);
    absl::MutexLock lock(&write_mu_);
    stream_ = nullptr;
    context_ = nullptr;
    outgoing_.clear();
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
    LOG(WARNING) << "controller session failed to open: " << status.error_message() << " ("
                 << CodeName(status) << ")";
    return false;
  }
  heartbeat_period_ns_.store(
      absl::ToInt64Nanoseconds(absl::Milliseconds(welcome.welcome().heartbeat_period_ms())));
  last_heard_ns_.store(absl::ToUnixNanos(clock_->Now()));
  LOG(INFO) << "session " << welcome.welcome().session_id() << " with the controller is up";
  {
    absl::MutexLock lock(&write_mu_);
    stream_ = stream.get();
    peer_reads_batches_ = welcome.welcome().accepts_batches();
    write_failed_ = false;
    // The inventory first, queued in the critical section that opens the
    // queue to Write(), so that nothing overtakes it.
    if (callbacks_.inventory) outgoing_.push_back(callbacks_.inventory());
  }
  ready_.store(true);
  options_.metrics->RecordSessionAttempt(AgentMetricsRecorder::SessionResult::kOpened);
  options_.metrics->SetSessionUp(true);
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
    LOG(WARNING) << "controller session ended: " << status.error_message() << " ("
                 << CodeName(status) << "); reconnecting";
  }
  if (callbacks_.on_session_end) callbacks_.on_session_end();
  return true;
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
