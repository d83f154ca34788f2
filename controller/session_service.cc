#include "controller/session_service.h"

#include <deque>
#include <utility>

#include "absl/synchronization/mutex.h"
#include "common/leader_redirect.h"
#include "common/logging.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::ControllerMessage;

class SessionReactor final
    : public grpc::ServerBidiReactor<AgentMessage, ControllerMessage>,
      public AgentLink {
 public:
  SessionReactor(Dispatcher* fixed, const SessionServiceOptions* options,
                 const AccessPolicy* access, grpc::CallbackServerContext* context)
      : fixed_(fixed), options_(options), access_(access), context_(context),
        peer_(context->peer()) {
    StartRead(&incoming_);
  }

  // AgentLink. gRPC may run a reaction inline from StartWrite/Finish, so no
  // lock is held across them.
  void Send(ControllerMessage message) override {
    {
      absl::MutexLock lock(&mu_);
      if (finishing_) return;
      outgoing_.push_back(std::move(message));
      // While a write is in flight, or while an incoming message is being
      // handled, what is sent queues up and leaves as one batch.
      if (writing_ || handling_) return;
    }
    Flush();
  }

  void Close(const std::string& reason) override {
    RequestFinish(grpc::Status(grpc::StatusCode::UNAVAILABLE, reason));
  }

  // Reactor.
  void OnReadDone(bool ok) override {
    if (!ok) {
      // The agent half-closed or the stream broke.
      EndSession();
      RequestFinish(grpc::Status::OK);
      return;
    }
    if (agent_id_.empty()) {
      if (!incoming_.has_hello() || incoming_.hello().agent_id().empty()) {
        LOG(WARNING) << "session from " << peer_ << " did not start with a Hello naming its agent";
        RequestFinish(grpc::Status(grpc::StatusCode::INVALID_ARGUMENT,
                                   "the first message must be a Hello with an agent id"));
        StartRead(&incoming_);
        return;
      }
      if (absl::Status access = access_->Check(Permission::kAgentSession, incoming_.hello().token());
          !access.ok()) {
        LOG(WARNING) << "session from " << peer_ << " (agent " << incoming_.hello().agent_id()
                     << ") refused: " << access.message();
        RequestFinish(grpc::Status(static_cast<grpc::StatusCode>(access.code()),
                                   std::string(access.message())));
        StartRead(&incoming_);
        return;
      }
      if (const Leadership* leadership = options_->leadership; leadership != nullptr) {
        if (!leadership->Leading()) {
          const LeaderInfo leader = leadership->leader();
          LOG(DEBUG) << "agent " << incoming_.hello().agent_id() << " at " << peer_
                     << " sent to the leader "
                     << (leader.address.empty() ? "(none known)" : leader.address);
          AddLeaderMetadata(context_, leader.address);
          RequestFinish(NotLeaderStatus(leader.identity, leader.address));
          StartRead(&incoming_);
          return;
        }
        // Held for the session's life: a term that ends meanwhile stays
        // alive until its sessions are done.
        dispatcher_ = leadership->dispatcher();
      } else {
        dispatcher_ = std::shared_ptr<Dispatcher>(fixed_, [](Dispatcher*) {});
      }
      agent_id_ = incoming_.hello().agent_id();
      const std::string host =
          incoming_.hello().host().empty() ? agent_id_ : incoming_.hello().host();
      {
        absl::MutexLock lock(&mu_);
        connected_ = true;
        batches_ = incoming_.hello().accepts_batches();
      }
      dispatcher_->AgentConnected(agent_id_, host, this);
    } else if (IsConnected()) {
      // Everything the Dispatcher sends back while it handles this message
      // (a Command and a Settled per event of a batch, say) goes out in one
      // write after it, not the first message alone and the rest behind it.
      {
        absl::MutexLock lock(&mu_);
        handling_ = true;
      }
      dispatcher_->OnAgentMessage(agent_id_, incoming_);
      {
        absl::MutexLock lock(&mu_);
        handling_ = false;
      }
      Flush();
    }
    StartRead(&incoming_);
  }

  void OnWriteDone(bool ok) override {
    bool write_next = false;
    bool more = false;
    bool finish = false;
    grpc::Status status;
    {
      absl::MutexLock lock(&mu_);
      writing_ = false;
      if (!ok) {
        // The stream is gone; the pending read fails too and ends the session.
        finishing_ = true;
        outgoing_.clear();
      }
      if (!finishing_ && !outgoing_.empty()) {
        writing_ = true;
        more = TakeNextWrite();
        write_next = true;
      } else if (finishing_ && !finished_) {
        finished_ = true;
        finish = true;
        status = finish_status_;
      }
    }
    if (write_next) StartWrite(&current_, WriteOptionsFor(more));
    if (finish) Finish(status);
  }

  void OnCancel() override { EndSession(); }

  void OnDone() override {
    EndSession();
    delete this;
  }

 private:
  // Starts a write of what is queued unless one is in flight.
  void Flush() {
    bool more = false;
    {
      absl::MutexLock lock(&mu_);
      if (finishing_ || writing_ || outgoing_.empty()) return;
      writing_ = true;
      more = TakeNextWrite();
    }
    StartWrite(&current_, WriteOptionsFor(more));
  }

  // While more messages wait behind this one (a batch hit its bounds, or the
  // agent does not read batches), gRPC may hold it in its buffer and send
  // the run in one flush (the last one of the run has no hint).
  static grpc::WriteOptions WriteOptionsFor(bool more) {
    grpc::WriteOptions options;
    if (more) options.set_buffer_hint();
    return options;
  }

  // Moves the next write into current_: the first queued message alone, or
  // as many queued messages as the bounds allow as one batch. Returns
  // whether messages remain queued.
  bool TakeNextWrite() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
    if (!batches_ || outgoing_.size() == 1) {
      current_ = std::move(outgoing_.front());
      outgoing_.pop_front();
      return !outgoing_.empty();
    }
    current_.Clear();
    auto* messages = current_.mutable_batch()->mutable_messages();
    size_t bytes = 0;
    while (!outgoing_.empty() && static_cast<size_t>(messages->size()) <
                                     options_->max_batch_messages) {
      const size_t size = outgoing_.front().ByteSizeLong();
      if (!messages->empty() && bytes + size > options_->max_batch_bytes) break;
      bytes += size;
      *messages->Add() = std::move(outgoing_.front());
      outgoing_.pop_front();
    }
    return !outgoing_.empty();
  }

  bool IsConnected() {
    absl::MutexLock lock(&mu_);
    return connected_;
  }

  void EndSession() {
    bool was_connected = false;
    {
      absl::MutexLock lock(&mu_);
      was_connected = connected_;
      connected_ = false;
    }
    if (was_connected) dispatcher_->AgentDisconnected(agent_id_, this);
  }

  // Finishes the call once the write in flight (if any) is done. Idempotent:
  // the first status wins.
  void RequestFinish(grpc::Status status) {
    {
      absl::MutexLock lock(&mu_);
      if (!finishing_) finish_status_ = std::move(status);
      finishing_ = true;
      outgoing_.clear();
      if (writing_ || finished_) return;
      finished_ = true;
      status = finish_status_;
    }
    Finish(status);
  }

  Dispatcher* const fixed_;  // without leader election
  const SessionServiceOptions* const options_;
  const AccessPolicy* const access_;
  grpc::CallbackServerContext* const context_;
  const std::string peer_;
  // Set by the Hello, then constant.
  std::shared_ptr<Dispatcher> dispatcher_;
  AgentMessage incoming_;  // only touched by the read path
  std::string agent_id_;   // set by the first read, then constant

  absl::Mutex mu_;
  std::deque<ControllerMessage> outgoing_ ABSL_GUARDED_BY(mu_);
  ControllerMessage current_ ABSL_GUARDED_BY(mu_);
  bool writing_ ABSL_GUARDED_BY(mu_) = false;
  // An incoming message is being handled (reads come one at a time).
  bool handling_ ABSL_GUARDED_BY(mu_) = false;
  bool connected_ ABSL_GUARDED_BY(mu_) = false;
  bool batches_ ABSL_GUARDED_BY(mu_) = false;  // the agent reads ControllerBatch
  bool finishing_ ABSL_GUARDED_BY(mu_) = false;
  bool finished_ ABSL_GUARDED_BY(mu_) = false;
  grpc::Status finish_status_ ABSL_GUARDED_BY(mu_);
};

}  // namespace

SessionService::SessionService(Dispatcher* dispatcher, SessionServiceOptions options)
    : dispatcher_(dispatcher), options_(std::move(options)), access_(options_.access) {}

grpc::ServerBidiReactor<AgentMessage, ControllerMessage>* SessionService::Session(
    grpc::CallbackServerContext* context) {
  return new SessionReactor(dispatcher_, &options_, &access_, context);
}

}  // namespace controller
}  // namespace dispatchd
