#include "agent/file_requests.h"

#include <utility>

#include "absl/strings/str_cat.h"
#include "contract/event_id.h"

namespace dispatchd::agent {
namespace {

using dispatch::v1::AgentMessage;

// Both results carry a status as a code and a message.
template <typename Result>
void SetError(const absl::Status& status, Result* result) {
  result->set_code(static_cast<int32_t>(status.code()));
  result->set_error(std::string(status.message()));
}

}  // namespace

FileRequests::FileRequests(Spool* spool, EmitMemory* memory, Clock* clock,
                           FileRequestsOptions options)
    : spool_(spool), memory_(memory), clock_(clock), options_(std::move(options)) {}

AgentMessage FileRequests::Handle(const dispatch::v1::WriteEvent& request) {
  AgentMessage message;
  dispatch::v1::WriteEventResult* result = message.mutable_write_event_result();
  result->set_request_id(request.request_id());
  auto fail = [&](const absl::Status& status) {
    SetError(status, result);
    return message;
  };
  absl::StatusOr<std::string> rel =
      contract::EmitRelativePath(request.event_id(), request.path(), options_.event_namespace);
  if (!rel.ok()) return fail(rel.status());
  if (static_cast<int64_t>(request.payload().size()) > options_.max_payload_bytes) {
    return fail(absl::InvalidArgumentError(absl::StrCat(
        "the payload is ", request.payload().size(), " bytes, over this agent's ",
        "--max-payload-bytes (", options_.max_payload_bytes, ")")));
  }
  const std::string event_id = contract::EventIdFromRelativePath(*rel, options_.event_namespace);
  result->set_path(*rel);
  result->set_event_id(event_id);

  const std::string& key = request.idempotency_key();
  if (key.size() > 128) {
    return fail(absl::InvalidArgumentError("the idempotency key is longer than 128 bytes"));
  }
  absl::Mutex* lock = key.empty() ? nullptr : &keyed_writes_;
  absl::MutexLockMaybe keyed(lock);
  if (!key.empty()) {
    if (std::optional<EmitMemory::Written> earlier = memory_->Find(key)) {
      if (earlier->path != *rel) {
        return fail(absl::InvalidArgumentError(absl::StrCat(
            "the idempotency key was used for another event (", earlier->path,
            ") within the last 10 minutes")));
      }
      result->set_duplicate(true);
      result->set_written_unix_nanos(absl::ToUnixNanos(earlier->written));
      return message;
    }
  }
  if (absl::Status written = spool_->Write(*rel, request.payload()); !written.ok()) {
    return fail(written);
  }
  const absl::Time now = clock_->Now();
  result->set_written_unix_nanos(absl::ToUnixNanos(now));
  if (!key.empty()) memory_->Remember(key, {*rel, event_id, now});
  return message;
}

AgentMessage FileRequests::Handle(const dispatch::v1::DeadLetterRequest& request) const {
  AgentMessage message;
  dispatch::v1::DeadLetterResult* result = message.mutable_dead_letter_result();
  result->set_request_id(request.request_id());
  absl::Status status;
  switch (request.op()) {
    case dispatch::v1::DeadLetterRequest::LIST: {
      absl::StatusOr<std::vector<DeadLetterEntry>> entries = spool_->ListDeadLetters();
      if (!entries.ok()) {
        status = entries.status();
        break;
      }
      for (const DeadLetterEntry& e : *entries) {
        dispatch::v1::DeadLetterEntry* out = result->add_entries();
        out->set_path(e.rel);
        out->set_error_json(e.error_json);
        out->set_size(e.size);
        out->set_dead_lettered_unix_nanos(absl::ToUnixNanos(e.dead_lettered));
      }
      break;
    }
    case dispatch::v1::DeadLetterRequest::REPLAY:
      status = spool_->ReplayDeadLetter(request.path());
      if (status.ok()) {
        result->set_event_id(
            contract::EventIdFromRelativePath(request.path(), options_.event_namespace));
      }
      break;
    case dispatch::v1::DeadLetterRequest::PURGE:
      status = spool_->PurgeDeadLetter(request.path());
      break;
    default:
      status = absl::InvalidArgumentError("unknown dead-letter operation");
      break;
  }
  if (!status.ok()) SetError(status, result);
  return message;
}

}  // namespace dispatchd::agent
