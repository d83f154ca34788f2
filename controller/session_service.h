// SessionService: the gRPC face of the Dispatcher. One bidirectional stream
// per agent (dispatch.v1.AgentSession/Session); each stream is a reactor that
// forwards what the agent says to the Dispatcher and writes what the
// Dispatcher sends, in order, one write at a time. What the Dispatcher sends
// while a write is in flight queues up and goes out as one ControllerBatch
// when that write completes (to agents that accept batches; bounded by the
// options below, so a long backlog takes several writes). A batch from the
// agent is handed to the Dispatcher as its messages, in order.
//
// Thin by design: all decisions are the Dispatcher's. Thread-safe.
// The Dispatcher must outlive the grpc::Server this service is registered on.
#ifndef DISPATCHD_CONTROLLER_SESSION_SERVICE_H_
#define DISPATCHD_CONTROLLER_SESSION_SERVICE_H_

#include <string>

#include "controller/access_policy.h"
#include "controller/dispatcher.h"
#include "controller/leadership.h"
#include "proto/dispatch/v1/session.grpc.pb.h"

namespace dispatchd {
namespace controller {

struct SessionServiceOptions {
  // The tokens agents may present in Hello (AccessPolicy decides).
  AccessTokens access;
  // Bounds of one ControllerBatch: at most this many messages, and no more
  // messages once it holds this many bytes (a single larger message still
  // goes, alone). Well under gRPC's 4 MiB default receive limit.
  size_t max_batch_messages = 1000;
  size_t max_batch_bytes = 1 << 20;
  // Under leader election: a session is taken only while this replica
  // leads, by the current term's Dispatcher; otherwise its Hello is
  // answered with the leader's address (common/leader_redirect.h). Null:
  // every session goes to the Dispatcher given to the constructor. Not
  // owned; must outlive the server.
  const Leadership* leadership = nullptr;
};

class SessionService final : public dispatch::v1::AgentSession::CallbackService {
 public:
  // `dispatcher` may be null when options.leadership is set.
  SessionService(Dispatcher* dispatcher, SessionServiceOptions options);

  grpc::ServerBidiReactor<dispatch::v1::AgentMessage, dispatch::v1::ControllerMessage>* Session(
      grpc::CallbackServerContext* context) override;

 private:
  Dispatcher* const dispatcher_;
  const SessionServiceOptions options_;
  const AccessPolicy access_;
};

}  // namespace controller
}  // namespace dispatchd

#endif  // DISPATCHD_CONTROLLER_SESSION_SERVICE_H_
