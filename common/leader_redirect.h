// How a controller replica that does not lead turns callers away, and how
// callers find the leader (docs/ha.md).
//
// With leader election (controller --etcd-endpoints), only the leader takes
// agent sessions and the API's calls; a standby answers them with
// FAILED_PRECONDITION, a message naming the leader ("not the leader; the
// leader is ctl-b at 10.0.0.2:7700") and the leader's address in the
// trailing metadata `dispatchd-leader` (absent while no replica leads).
// Agents and dispatchctl go to that address; any gRPC client can do the
// same. GetStatus alone is answered by every replica, saying which replica
// answered and who leads.
#ifndef DISPATCHD_COMMON_LEADER_REDIRECT_H_
#define DISPATCHD_COMMON_LEADER_REDIRECT_H_

#include <grpcpp/grpcpp.h>

#include <string>

namespace dispatchd {

// The trailing metadata key carrying the leader's address.
inline constexpr char kLeaderMetadataKey[] = "dispatchd-leader";

// The status a standby answers with. `leader_id` and `leader_address` may be
// empty (no leader known).
grpc::Status NotLeaderStatus(const std::string& leader_id, const std::string& leader_address);

// Adds the leader's address to the trailing metadata of a call a standby
// turns away (nothing when it is empty).
void AddLeaderMetadata(grpc::ServerContextBase* context, const std::string& leader_address);

// The leader's address a finished call was redirected to: the status is
// FAILED_PRECONDITION and the trailing metadata names it; "" otherwise.
std::string RedirectedTo(const grpc::ClientContext& context, const grpc::Status& status);

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_LEADER_REDIRECT_H_
