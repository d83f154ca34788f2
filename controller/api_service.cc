#include "controller/api_service.h"

#include <utility>

#include "absl/strings/strip.h"
#include "absl/strings/string_view.h"
#include "absl/time/time.h"

namespace dispatchd {
namespace controller {
namespace {

using dispatch::v1::AgentInfo;
using dispatch::v1::ContainerState;
using dispatch::v1::InvalidSubscriptionInfo;
using dispatch::v1::SubscriptionInfo;

constexpr absl::string_view kBearerPrefix = "Bearer ";

ContainerState ToApiState(dispatch::v1::Container::State state) {
  switch (state) {
    case dispatch::v1::Container::CREATED: return dispatch::v1::CONTAINER_STATE_CREATED;
    case dispatch::v1::Container::RUNNING: return dispatch::v1::CONTAINER_STATE_RUNNING;
    case dispatch::v1::Container::PAUSED: return dispatch::v1::CONTAINER_STATE_PAUSED;
    case dispatch::v1::Container::RESTARTING: return dispatch::v1::CONTAINER_STATE_RESTARTING;
    case dispatch::v1::Container::REMOVING: return dispatch::v1::CONTAINER_STATE_REMOVING;
    case dispatch::v1::Container::EXITED: return dispatch::v1::CONTAINER_STATE_EXITED;
    case dispatch::v1::Container::DEAD: return dispatch::v1::CONTAINER_STATE_DEAD;
    default: return dispatch::v1::CONTAINER_STATE_UNSPECIFIED;
  }
}

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
                                 const absl::Status& status) {
  grpc::ServerUnaryReactor* reactor = context->DefaultReactor();
  reactor->Finish(ToGrpcStatus(status));
  return reactor;
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

grpc::ServerUnaryReactor* ApiService::ListSubscriptions(
    grpc::CallbackServerContext* context, const dispatch::v1::ListSubscriptionsRequest* /*request*/,
    dispatch::v1::ListSubscriptionsResponse* response) {
  if (absl::Status status = Authorize(*context, Permission::kApiRead); !status.ok()) {
    return Finish(context, status);
  }
  for (const Target& target : dispatcher_->Subscriptions()) {
    FillSubscription(target, response->add_subscriptions());
  }
  for (const InvalidEntry& entry : dispatcher_->InvalidSubscriptions()) {
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
  for (const controller::AgentInfo& agent : dispatcher_->Agents()) {
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
  FillStatus(dispatcher_->stats(), response);
  return Finish(context, absl::OkStatus());
}

}  // namespace controller
}  // namespace dispatchd
