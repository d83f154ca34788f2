// ApiService: the controller's public gRPC API (dispatch.v1.Dispatch in
// proto/dispatch/v1/api.proto) on gRPC's callback API. Each handler copies
// the Dispatcher's current view (subscriptions, invalid subscriptions,
// agents, counters) into the response; it decides nothing itself.
//
// With tokens configured (ApiServiceOptions::access), every call must carry
// the metadata `authorization: Bearer <token>` with a token that grants it
// (controller/access_policy.h): UNAUTHENTICATED without one or with an
// unknown one, PERMISSION_DENIED with a token of another role.
//
// Thread-safe. Does not own the Dispatcher, which must outlive the
// grpc::Server this service is registered on.
#ifndef DISPATCHD_CONTROLLER_API_SERVICE_H_
#define DISPATCHD_CONTROLLER_API_SERVICE_H_

#include <memory>
#include <optional>
#include <string>

#include "absl/status/status.h"
#include "controller/access_policy.h"
#include "controller/api_backend.h"
#include "controller/dispatcher.h"
#include "controller/leadership.h"
#include "proto/dispatch/v1/api.grpc.pb.h"

namespace dispatchd {
namespace controller {

struct ApiServiceOptions {
  // The tokens callers may present (AccessPolicy decides).
  AccessTokens access;
  // The event calls (Emit, Watch, ListEvents, GetEvent, Explain, dead
  // letters). Not owned; must outlive the server.
  ApiBackend* backend = nullptr;
  // Under leader election: every call but GetStatus is served by the
  // current term's Dispatcher while this replica leads, and turned away
  // with the leader's address while it does not (common/leader_redirect.h);
  // GetStatus says which replica answered and who leads. The constructor's
  // dispatcher and `backend` are then not used. Not owned.
  const Leadership* leadership = nullptr;
};

class ApiService final : public dispatch::v1::Dispatch::CallbackService {
 public:
  ApiService(const Dispatcher* dispatcher, ApiServiceOptions options);

  grpc::ServerUnaryReactor* ListSubscriptions(
      grpc::CallbackServerContext* context, const dispatch::v1::ListSubscriptionsRequest* request,
      dispatch::v1::ListSubscriptionsResponse* response) override;
  grpc::ServerUnaryReactor* ListAgents(grpc::CallbackServerContext* context,
                                       const dispatch::v1::ListAgentsRequest* request,
                                       dispatch::v1::ListAgentsResponse* response) override;
  grpc::ServerUnaryReactor* GetStatus(grpc::CallbackServerContext* context,
                                      const dispatch::v1::GetStatusRequest* request,
                                      dispatch::v1::GetStatusResponse* response) override;
  grpc::ServerUnaryReactor* Emit(grpc::CallbackServerContext* context,
                                 const dispatch::v1::EmitRequest* request,
                                 dispatch::v1::EmitResponse* response) override;
  grpc::ServerWriteReactor<dispatch::v1::WatchUpdate>* Watch(
      grpc::CallbackServerContext* context, const dispatch::v1::WatchRequest* request) override;
  grpc::ServerUnaryReactor* ListEvents(grpc::CallbackServerContext* context,
                                       const dispatch::v1::ListEventsRequest* request,
                                       dispatch::v1::ListEventsResponse* response) override;
  grpc::ServerUnaryReactor* GetEvent(grpc::CallbackServerContext* context,
                                     const dispatch::v1::GetEventRequest* request,
                                     dispatch::v1::EventInfo* response) override;
  grpc::ServerUnaryReactor* Explain(grpc::CallbackServerContext* context,
                                    const dispatch::v1::ExplainRequest* request,
                                    dispatch::v1::ExplainResponse* response) override;
  grpc::ServerUnaryReactor* ListDeadLetters(
      grpc::CallbackServerContext* context, const dispatch::v1::ListDeadLettersRequest* request,
      dispatch::v1::ListDeadLettersResponse* response) override;
  grpc::ServerUnaryReactor* ReplayDeadLetter(
      grpc::CallbackServerContext* context, const dispatch::v1::ReplayDeadLetterRequest* request,
      dispatch::v1::ReplayDeadLetterResponse* response) override;
  grpc::ServerUnaryReactor* PurgeDeadLetter(
      grpc::CallbackServerContext* context, const dispatch::v1::PurgeDeadLetterRequest* request,
      dispatch::v1::PurgeDeadLetterResponse* response) override;

 private:
  // OK when the call's bearer token grants `needed`.
  absl::Status Authorize(const grpc::CallbackServerContext& context, Permission needed) const;

  // What serves a call: the current term's Dispatcher under leader
  // election (held for the call), or the constructor's.
  struct Serving {
    std::shared_ptr<Dispatcher> hold;
    const Dispatcher* dispatcher = nullptr;
    ApiBackend* backend = nullptr;
  };
  // std::nullopt when this replica does not lead: the call is to be
  // finished with *redirect (the leader's address is already in the
  // context's trailing metadata).
  std::optional<Serving> Serve(grpc::CallbackServerContext* context,
                               grpc::Status* redirect) const;

  const Dispatcher* const dispatcher_;
  const ApiServiceOptions options_;
  const AccessPolicy access_;
};

// The gRPC status for an absl::Status (the codes map one to one).
grpc::Status ToGrpcStatus(const absl::Status& status);

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_API_SERVICE_H_
