#include "controller/api_service.h"

#include <deque>
#include <memory>
#include <optional>
#include <utility>
#include <vector>

#include "absl/strings/strip.h"
#include "absl/strings/string_view.h"
#include "absl/synchronization/mutex.h"
#include "absl/time/time.h"
#include "common/leader_redirect.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentInfo;
using dispatch::v1::ContainerState;
using dispatch::v1::InvalidSubscriptionInfo;
using dispatch::v1::SubscriptionInfo;

constexpr absl::string_view kBearerPrefix = "Bearer ";


void FillSubscription(const Target& target, SubscriptionInfo* out) {
  const contract::Subscription& s = target.subscription;
  out->set_event_id(s.event_id);
  out->set_agent_id(target.agent_id);
  out->set_container_id(target.container_id);
  out->set_container_name(target.container_name);
  out->set_container_state(ToApiState(target.state));
  for (const std::string& word : s.argv) out->add_argv(word);
  out->set_start_container(s.start == contract::StartPolicy::kStartIfStopped);
  out->set_debounce_ms(absl::ToInt64Milliseconds(s.debounce));
  out->set_scope(s.scope == contract::Scope::kHost ? SubscriptionInfo::SCOPE_HOST
                                         : SubscriptionInfo::SCOPE_CLUSTER);
  for (const auto& [key, value] : s.labels) (*out->mutable_labels())[key] = value;
}

void FillInvalid(const InvalidEntry& entry, InvalidSubscriptionInfo* out) {
  out->set_agent_id(entry.agent_id);
  out->set_container_id(entry.container_id);
  out->set_container_name(entry.container_name);
  out->set_event_id(entry.invalid.event_id);
  out->set_label(entry.invalid.label);
  out->set_reason(entry.invalid.reason);
}

void FillAgent(const controller::AgentInfo& agent, AgentInfo* out) {
  out->set_agent_id(agent.agent_id);
  out->set_host(agent.host);
  out->set_inventory_fresh(agent.inventory_fresh);
  out->set_inventory_seq(agent.inventory_seq);
  out->set_last_heard_unix_nanos(absl::ToUnixNanos(agent.last_heard));
}

void FillStatus(const DispatcherStats& stats, dispatch::v1::GetStatusResponse* out) {
  out->set_events_observed(stats.events_observed);
  out->set_events_duplicate(stats.events_duplicate);
  out->set_events_settled_delivered(stats.events_settled_delivered);
  out->set_events_settled_no_subscribers(stats.events_settled_no_subscribers);
  out->set_events_settled_dead_letter(stats.events_settled_dead_letter);
  auto count = [&stats](DeliveryOutcome outcome) -> uint64_t {
    auto it = stats.deliveries.find(outcome);
    return it == stats.deliveries.end() ? 0 : it->second;
  };
  dispatch::v1::DeliveryCounts* d = out->mutable_deliveries();
  d->set_delivered(count(DeliveryOutcome::kDelivered));
  d->set_coalesced(count(DeliveryOutcome::kCoalesced));
  d->set_skipped_gone(count(DeliveryOutcome::kSkippedGone));
  d->set_skipped_not_running(count(DeliveryOutcome::kSkippedNotRunning));
  d->set_skipped_rejected(count(DeliveryOutcome::kSkippedRejected));
  d->set_skipped_unsubscribed(count(DeliveryOutcome::kSkippedUnsubscribed));
  d->set_failed(count(DeliveryOutcome::kFailed));
  out->set_commands_sent(stats.commands_sent);
  out->set_retries(stats.retries);
  out->set_events_in_flight(stats.events_in_flight);
  out->set_events_held(stats.events_held);
  out->set_debounce_pending(stats.debounce_pending);
  out->set_agents_connected(stats.agents_connected);
  out->set_subscriptions_valid(stats.subscriptions_valid);
  out->set_subscriptions_invalid(stats.subscriptions_invalid);
}

// Finishes a unary call with `status`; the reactor deletes itself when done.
grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context,
                                 const grpc::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(status);
  return reactor;
}

grpc::ServerUnaryReactor* Finish(grpc::CallbackServerContext* context,
                                 const absl::Status& status) {
  return Finish(context, ToGrpcStatus(status));
}

// `done`, keeping `hold` (a term's Dispatcher) alive until it has run.
template <typename T>
ApiBackend::Done<T> Holding(ApiBackend::Done<T> done, std::shared_ptr<Dispatcher> hold) {
  if (hold == nullptr) return done;
  return [done = std::move(done), hold = std::move(hold)](absl::StatusOr<T> result) {
    done(std::move(result));
  };
}

}  // namespace

grpc::Status ToGrpcStatus(const absl::Status& status) {
  if (status.ok()) return grpc::Status::OK;
  return grpc::Status(static_cast<grpc::StatusCode>(status.code()), std::string(status.message()));
}

ApiService::ApiService(const Dispatcher* dispatcher, ApiServiceOptions options)
    : dispatcher_(dispatcher), options_(std::move(options)), access_(options_.access) {}

absl::Status ApiService::Authorize(const grpc::CallbackServerContext& context,
                                   Permission needed) const {
  if (access_.api_open()) return absl::OkStatus();
  const auto& metadata = context.client_metadata();
  auto it = metadata.find("authorization");
  absl::string_view value;
  if (it != metadata.end()) {
    value = absl::string_view(it->second.data(), it->second.size());
    if (!absl::ConsumePrefix(&value, kBearerPrefix)) {
      return absl::UnauthenticatedError("the authorization metadata must be 'Bearer <token>'");
    }
  }
  return access_.Check(needed, value);
}

std::optional<ApiService::Serving> ApiService::Serve(grpc::CallbackServerContext* context,
                                                     grpc::Status* redirect) const {
  if (options_.leadership == nullptr) return Serving{nullptr, dispatcher_, options_.backend};
  if (!options_.leadership->Leading()) {
    const LeaderInfo leader = options_.leadership->leader();
    AddLeaderMetadata(context, leader.address);
    *redirect = NotLeaderStatus(leader.identity, leader.address);
    return std::nullopt;
  }
  Serving serving;
  serving.hold = options_.leadership->dispatcher();
  serving.dispatcher = serving.hold.get();
  serving.backend = serving.hold.get();
  return serving;
}

grpc::ServerUnaryReactor* ApiService::ListSubscriptions(
    grpc::CallbackServerContext* context, const dispatch::v1::ListSubscriptionsRequest* /*request*/,
    dispatch::v1::ListSubscriptionsResponse* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiRead); !status.ok()) {
    return Finish(context, status);
  }
  grpc::Status redirect;
  const std::optional<Serving> serving = Serve(context, &redirect);
  if (!serving.has_value()) return Finish(context, redirect);
  for (const Target& target : serving->dispatcher->Subscriptions()) {
    FillSubscription(target, response->add_subscriptions());
  }
  for (const InvalidEntry& entry : serving->dispatcher->InvalidSubscriptions()) {
    FillInvalid(entry, response->add_invalid());
  }
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ApiService::ListAgents(grpc::CallbackServerContext* context,
                                                 const dispatch::v1::ListAgentsRequest* /*request*/,
                                                 dispatch::v1::ListAgentsResponse* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiRead); !status.ok()) {
    return Finish(context, status);
  }
  grpc::Status redirect;
  const std::optional<Serving> serving = Serve(context, &redirect);
  if (!serving.has_value()) return Finish(context, redirect);
  for (const controller::AgentInfo& agent : serving->dispatcher->Agents()) {
    FillAgent(agent, response->add_agents());
  }
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ApiService::GetStatus(grpc::CallbackServerContext* context,
                                                const dispatch::v1::GetStatusRequest* /*request*/,
                                                dispatch::v1::GetStatusResponse* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiRead); !status.ok()) {
    return Finish(context, status);
  }
  // Every replica answers, saying who it is and who leads.
  const Leadership* leadership = options_.leadership;
  if (leadership == nullptr) {
    FillStatus(dispatcher_->stats(), response);
    response->set_leading(true);
    return Finish(context, absl::OkStatus());
  }
  FillStatus(leadership->dispatcher()->stats(), response);
  const LeaderInfo leader = leadership->leader();
  response->set_leader_election(true);
  response->set_replica_id(leadership->identity());
  response->set_leading(leadership->Leading());
  response->set_leader_id(leader.identity);
  response->set_leader_address(leader.address);
  return Finish(context, absl::OkStatus());
}

namespace {

// Finishes `reactor` with `result` once the backend answers, copying the
// value into the call's response first.
template <typename T>
ApiBackend::Done<T> FinishWith(grpc::ServerUnaryReactor* reactor, T* response) {
  return [reactor, response](absl::StatusOr<T> result) {
    if (result.ok()) *response = *std::move(result);
    reactor->Finish(ToGrpcStatus(result.status()));
  };
}

absl::Status NoBackend() {
  return absl::UnimplementedError("this controller serves no event calls");
}

// One Watch stream: drains the watcher into the stream, one write at a
// time, and ends the stream with the watcher's status (RESOURCE_EXHAUSTED
// when it fell behind). gRPC may run a reaction inline from StartWrite or
// Finish, so no lock is held across them. The watcher's wake callback
// reaches the reactor through `Shared`, which keeps the reactor alive while
// the callback pumps it; OnDone drops that reference, and the reactor is
// destroyed by whoever holds the last one.
class WatchReactor final : public grpc::ServerWriteReactor<dispatch::v1::WatchUpdate> {
 public:
  // Creates the reactor and subscribes it; gRPC gets the raw pointer.
  // `hold` (a term's Dispatcher, or null) is kept until the stream is done.
  static WatchReactor* Start(ApiBackend* backend, const dispatch::v1::WatchRequest& request,
                             std::shared_ptr<Dispatcher> hold) {
    auto shared = std::make_shared<Shared>();
    auto reactor = std::shared_ptr<WatchReactor>(new WatchReactor(shared));
    reactor->hold_ = std::move(hold);
    WatchFilter filter;
    filter.event_id = request.event_id();
    filter.event_id_prefix = request.event_id_prefix();
    for (int kind : request.kinds()) {
      filter.kinds.insert(static_cast<dispatch::v1::WatchUpdate::Kind>(kind));
    }
    std::weak_ptr<Shared> weak = shared;
    reactor->watcher_ = backend->Watch(std::move(filter), request.buffer(), [weak] {
      std::shared_ptr<WatchReactor> r;
      if (std::shared_ptr<Shared> s = weak.lock()) {
        absl::MutexLock lock(&s->mu);
        r = s->self;
      }
      if (r != nullptr) r->Pump();
    });
    {
      absl::MutexLock lock(&shared->mu);
      shared->self = reactor;
    }
    // The watcher is registered: a client may now act and miss nothing.
    reactor->StartSendInitialMetadata();
    reactor->Pump();
    return reactor.get();
  }

  void OnWriteDone(bool ok) override {
    bool finish = false;
    {
      absl::MutexLock lock(&shared_->mu);
      writing_ = false;
      queue_.pop_front();
      if (!ok || cancelled_) finish = !std::exchange(finished_, true);
    }
    if (finish) {
      Finish(grpc::Status(grpc::StatusCode::CANCELLED, "the watcher went away"));
    } else {
      Pump();
    }
  }

  void OnCancel() override {
    bool finish = false;
    {
      absl::MutexLock lock(&shared_->mu);
      cancelled_ = true;
      // With a write in flight, OnWriteDone finishes.
      if (!writing_) finish = !std::exchange(finished_, true);
    }
    if (finish) Finish(grpc::Status(grpc::StatusCode::CANCELLED, "cancelled"));
  }

  void OnDone() override {
    std::shared_ptr<Shared> shared = shared_;  // outlives `this`
    std::shared_ptr<WatchReactor> self;
    {
      absl::MutexLock lock(&shared->mu);
      self = std::move(shared->self);
    }
    // `this` may be destroyed when `self` goes out of scope here.
  }

 private:
  struct Shared {
    absl::Mutex mu;
    std::shared_ptr<WatchReactor> self ABSL_GUARDED_BY(mu);
  };

  explicit WatchReactor(std::shared_ptr<Shared> shared) : shared_(std::move(shared)) {}

  // Takes what the watcher has; writes the next update, or ends the stream
  // once the queue is empty and the watcher has ended. Called with no lock.
  void Pump() {
    const dispatch::v1::WatchUpdate* write = nullptr;
    std::optional<grpc::Status> finish;
    {
      absl::MutexLock lock(&shared_->mu);
      // While a write is in flight, updates wait in the watcher's bounded
      // buffer (not here), so a client that does not read overflows it.
      if (finished_ || writing_) return;
      if (queue_.empty() && end_.ok()) {
        std::vector<dispatch::v1::WatchUpdate> taken;
        end_ = watcher_->Take(&taken);
        for (auto& u : taken) queue_.push_back(std::move(u));
      }
      if (!queue_.empty()) {
        writing_ = true;
        write = &queue_.front();  // popped by OnWriteDone
      } else if (!end_.ok()) {
        finished_ = true;
        finish = ToGrpcStatus(end_);
      }
    }
    if (write != nullptr) {
      StartWrite(write);
    } else if (finish.has_value()) {
      Finish(*finish);
    }
  }

  const std::shared_ptr<Shared> shared_;
  // Declared before watcher_, so destroyed after it.
  std::shared_ptr<Dispatcher> hold_;
  std::unique_ptr<WatchHub::Watcher> watcher_;  // set before any Pump
  // Guarded by shared_->mu.
  std::deque<dispatch::v1::WatchUpdate> queue_;
  absl::Status end_;
  bool writing_ = false;
  bool cancelled_ = false;
  bool finished_ = false;
};

// A write reactor that only finishes with `status`.
class FinishedWriter final : public grpc::ServerWriteReactor<dispatch::v1::WatchUpdate> {
 public:
  explicit FinishedWriter(const absl::Status& status) { Finish(ToGrpcStatus(status)); }
  explicit FinishedWriter(const grpc::Status& status) { Finish(status); }
  void OnDone() override { delete this; }
};

}  // namespace

grpc::ServerUnaryReactor* ApiService::Emit(grpc::CallbackServerContext* context,
                                           const dispatch::v1::EmitRequest* request,
                                           dispatch::v1::EmitResponse* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiWrite); !status.ok()) {
    return Finish(context, status);
  }
  grpc::Status redirect;
  const std::optional<Serving> serving = Serve(context, &redirect);
  if (!serving.has_value()) return Finish(context, redirect);
  if (serving->backend == nullptr) return Finish(context, NoBackend());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  serving->backend->Emit(*request, Holding(FinishWith(reactor, response), serving->hold));
  return reactor;
}

grpc::ServerWriteReactor<dispatch::v1::WatchUpdate>* ApiService::Watch(
    grpc::CallbackServerContext* context, const dispatch::v1::WatchRequest* request) {
  if (absl::Status status = Authorize(*context, Permission::kApiRead); !status.ok()) {
    return new FinishedWriter(status);
  }
  grpc::Status redirect;
  const std::optional<Serving> serving = Serve(context, &redirect);
  if (!serving.has_value()) return new FinishedWriter(redirect);
  if (serving->backend == nullptr) return new FinishedWriter(NoBackend());
  return WatchReactor::Start(serving->backend, *request, serving->hold);
}

grpc::ServerUnaryReactor* ApiService::ListEvents(grpc::CallbackServerContext* context,
                                                 const dispatch::v1::ListEventsRequest* /*request*/,
                                                 dispatch::v1::ListEventsResponse* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiRead); !status.ok()) {
    return Finish(context, status);
  }
  grpc::Status redirect;
  const std::optional<Serving> serving = Serve(context, &redirect);
  if (!serving.has_value()) return Finish(context, redirect);
  if (serving->backend == nullptr) return Finish(context, NoBackend());
  *response = serving->backend->ListEvents();
  return Finish(context, absl::OkStatus());
}

grpc::ServerUnaryReactor* ApiService::GetEvent(grpc::CallbackServerContext* context,
                                               const dispatch::v1::GetEventRequest* request,
                                               dispatch::v1::EventInfo* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiRead); !status.ok()) {
    return Finish(context, status);
  }
  grpc::Status redirect;
  const std::optional<Serving> serving = Serve(context, &redirect);
  if (!serving.has_value()) return Finish(context, redirect);
  if (serving->backend == nullptr) return Finish(context, NoBackend());
  absl::StatusOr<dispatch::v1::EventInfo> event = serving->backend->GetEvent(*request);
  if (event.ok()) *response = *std::move(event);
  return Finish(context, event.status());
}

grpc::ServerUnaryReactor* ApiService::Explain(grpc::CallbackServerContext* context,
                                              const dispatch::v1::ExplainRequest* request,
                                              dispatch::v1::ExplainResponse* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiRead); !status.ok()) {
    return Finish(context, status);
  }
  grpc::Status redirect;
  const std::optional<Serving> serving = Serve(context, &redirect);
  if (!serving.has_value()) return Finish(context, redirect);
  if (serving->backend == nullptr) return Finish(context, NoBackend());
  absl::StatusOr<dispatch::v1::ExplainResponse> explained = serving->backend->Explain(*request);
  if (explained.ok()) *response = *std::move(explained);
  return Finish(context, explained.status());
}

grpc::ServerUnaryReactor* ApiService::ListDeadLetters(
    grpc::CallbackServerContext* context, const dispatch::v1::ListDeadLettersRequest* request,
    dispatch::v1::ListDeadLettersResponse* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiRead); !status.ok()) {
    return Finish(context, status);
  }
  grpc::Status redirect;
  const std::optional<Serving> serving = Serve(context, &redirect);
  if (!serving.has_value()) return Finish(context, redirect);
  if (serving->backend == nullptr) return Finish(context, NoBackend());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  serving->backend->ListDeadLetters(*request, Holding(FinishWith(reactor, response), serving->hold));
  return reactor;
}

grpc::ServerUnaryReactor* ApiService::ReplayDeadLetter(
    grpc::CallbackServerContext* context, const dispatch::v1::ReplayDeadLetterRequest* request,
    dispatch::v1::ReplayDeadLetterResponse* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiWrite); !status.ok()) {
    return Finish(context, status);
  }
  grpc::Status redirect;
  const std::optional<Serving> serving = Serve(context, &redirect);
  if (!serving.has_value()) return Finish(context, redirect);
  if (serving->backend == nullptr) return Finish(context, NoBackend());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  serving->backend->ReplayDeadLetter(*request, Holding(FinishWith(reactor, response), serving->hold));
  return reactor;
}

grpc::ServerUnaryReactor* ApiService::PurgeDeadLetter(
    grpc::CallbackServerContext* context, const dispatch::v1::PurgeDeadLetterRequest* request,
    dispatch::v1::PurgeDeadLetterResponse* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiWrite); !status.ok()) {
    return Finish(context, status);
  }
  grpc::Status redirect;
  const std::optional<Serving> serving = Serve(context, &redirect);
  if (!serving.has_value()) return Finish(context, redirect);
  if (serving->backend == nullptr) return Finish(context, NoBackend());
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  serving->backend->PurgeDeadLetter(*request, Holding(FinishWith(reactor, response), serving->hold));
  return reactor;
}

}  // namespace controller
}  // namespace dispatchd
