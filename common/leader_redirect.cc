#include "common/leader_redirect.h"

#include "absl/strings/str_cat.h"

namespace dispatchd {

grpc::Status NotLeaderStatus(const std::string& leader_id, const std::string& leader_address) {
  std::string message = "not the leader";
  if (!leader_address.empty()) {
    absl::StrAppend(&message, "; the leader is ", leader_id.empty() ? "" : leader_id,
                    leader_id.empty() ? "" : " at ", leader_address);
  } else {
    absl::StrAppend(&message, "; no replica leads at the moment");
  }
  return grpc::Status(grpc::StatusCode::FAILED_PRECONDITION, message);
}

void AddLeaderMetadata(grpc::ServerContextBase* context, const std::string& leader_address) {
  if (!leader_address.empty()) context->AddTrailingMetadata(kLeaderMetadataKey, leader_address);
}

std::string RedirectedTo(const grpc::ClientContext& context, const grpc::Status& status) {
  if (status.error_code() != grpc::StatusCode::FAILED_PRECONDITION) return "";
  const auto& trailers = context.GetServerTrailingMetadata();
  auto it = trailers.find(kLeaderMetadataKey);
  if (it == trailers.end()) return "";
  return std::string(it->second.data(), it->second.size());
}

}  // namespace dispatchd
