#include "agent/agent.h"

#include <sys/stat.h>
#include <unistd.h>

#include <random>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "contract/event_id.h"
#include "common/logging.h"

namespace dispatchd {
namespace agent {
namespace {

using dispatch::v1::AgentMessage;
using dispatch::v1::CommandResult;

std::string HostName() {
  char buf[256] = {};
  if (gethostname(buf, sizeof(buf) - 1) != 0 || buf[0] == '\0') return "localhost";
  return buf;
}

dispatch::v1::Container::State ToProtoState(ContainerState state) {
  switch (state) {
    case ContainerState::kCreated: return dispatch::v1::Container::CREATED;
    case ContainerState::kRunning: return dispatch::v1::Container::RUNNING;
    case ContainerState::kPaused: return dispatch::v1::Container::PAUSED;
    case ContainerState::kRestarting: return dispatch::v1::Container::RESTARTING;
    case ContainerState::kRemoving: return dispatch::v1::Container::REMOVING;
    case ContainerState::kExited: return dispatch::v1::Container::EXITED;
    case ContainerState::kDead: return dispatch::v1::Container::DEAD;
    default: return dispatch::v1::Container::STATE_UNSPECIFIED;
  }
}

void ToProto(const ContainerInfo& info, dispatch::v1::Container* out) {
  out->set_id(info.id);
  out->set_name(info.name);
  out->set_state(ToProtoState(info.state));
  for (const auto& [k, v] : info.labels) (*out->mutable_labels())[k] = v;
}

AgentMessage SnapshotMessage(uint64_t seq, const std::vector<ContainerInfo>& all) {
  AgentMessage message;
  auto* snapshot = message.mutable_inventory_snapshot();
  snapshot->set_seq(seq);
  for (const ContainerInfo& info : all) ToProto(info, snapshot->add_containers());
  return message;
}

AgentMetrics::CommandOutcome MetricOutcome(CommandResult::Outcome outcome) {
  switch (outcome) {
    case CommandResult::DELIVERED: return AgentMetrics::CommandOutcome::kDelivered;
    case CommandResult::CONTAINER_GONE: return AgentMetrics::CommandOutcome::kContainerGone;
    case CommandResult::NOT_RUNNING: return AgentMetrics::CommandOutcome::kNotRunning;
    case CommandResult::REJECTED: return AgentMetrics::CommandOutcome::kRejected;
    default: return AgentMetrics::CommandOutcome::kFailed;
  }
}

int64_t Nanos(const struct timespec& ts) {
  return static_cast<int64_t>(ts.tv_sec) * 1000000000 + ts.tv_nsec;
}

uint64_t FirstGeneration() {
  std::random_device random;
  return (static_cast<uint64_t>(random()) << 32) | 1;
}

constexpr size_t kRecentDeliveries = 65536;

// The identity of one delivery: an event (its origin agent, key and
// generation) to one container. Empty for a controller that sends none.
std::string DeliveryKey(const dispatch::v1::Command& command) {
  if (command.origin_agent().empty()) return "";
  return absl::StrCat(command.origin_agent(), "\x1f", command.key(), "\x1f", command.generation(),
                      "\x1f", command.container_id());
}

bool SameRecipient(const dispatch::v1::DeliveredTo& a, const dispatch::v1::DeliveredTo& b) {
  return a.agent_id() == b.agent_id() && a.container_id() == b.container_id();
}

}  // namespace

Agent::FileIdentity Agent::FileIdentity::Of(const struct stat& st) {
  FileIdentity id;
  id.device = st.st_dev;
  id.inode = st.st_ino;
  id.size = st.st_size;
  id.mtime_ns = Nanos(st.st_mtim);
  id.ctime_ns = Nanos(st.st_ctim);
  return id;
}

std::optional<Agent::FileIdentity> Agent::Identify(const std::string& relative_path) const {
  struct stat st;
  const std::string path = absl::StrCat(options_.events_dir, "/", relative_path);
  if (lstat(path.c_str(), &st) != 0 || !S_ISREG(st.st_mode)) return std::nullopt;
  return FileIdentity::Of(st);
}

Agent::Agent(AgentOptions options, DockerApi* docker, Clock* clock,
             std::shared_ptr<grpc::ChannelInterface> channel)
    : Agent(
          [&options, &channel] {
            options.controllers = {ControllerSession::kChannelAddress};
            options.channels = ControllerSession::OnlyChannel(std::move(channel));
            return std::move(options);
          }(),
          docker, clock) {}

Agent::Agent(AgentOptions options, DockerApi* docker, Clock* clock)
    : options_([&options] {
        if (options.host.empty()) options.host = HostName();
        if (options.agent_id.empty()) options.agent_id = options.host;
        return std::move(options);
      }()),
      docker_(docker),
      clock_(clock),
      metrics_(options_.metrics != nullptr ? options_.metrics : NullAgentMetrics()),
      spool_(options_.events_dir),
      emit_memory_(clock_),
      file_requests_(&spool_, &emit_memory_, clock_,
                     FileRequestsOptions{.event_namespace = options_.event_namespace,
                                         .max_payload_bytes = options_.max_payload_bytes}),
      runner_(docker_, clock_,
              CommandRunnerOptions{.label_namespace = options_.label_namespace,
                                   .start_timeout = options_.start_timeout},
              // Commands arrive only after Start() has made the inventory.
              [this](absl::string_view id) { return inventory_->Get(id); }),
      session_(
          ControllerSessionOptions{
              .agent_id = options_.agent_id,
              .host = options_.host,
              .token = options_.token,
              .reconnect_min_backoff = options_.reconnect_min_backoff,
              .reconnect_max_backoff = options_.reconnect_max_backoff,
              .max_batch_messages = options_.max_batch_messages,
              .max_batch_bytes = options_.max_batch_bytes,
              .metrics = metrics_,
              .controllers = options_.controllers,
              .channels = options_.channels,
          },
          clock_, SessionCallbacks()),
      next_generation_(FirstGeneration()) {}

ControllerSession::Callbacks Agent::SessionCallbacks() {
  ControllerSession::Callbacks callbacks;
  // Runs with the session's queue locked, after Start() made the inventory.
  callbacks.inventory = [this] {
    if (inventory_->fresh()) {
      auto [seq, all] = inventory_->Snapshot();
      return SnapshotMessage(seq, all);
    }
    AgentMessage stale;
    stale.mutable_inventory_stale()->set_reason("Docker inventory not listed yet");
    return stale;
  };
  callbacks.resend = [this] {
    std::vector<AgentMessage> resend;
    absl::MutexLock lock(&mu_);
    for (const auto& [key, pending] : pending_) {
      AgentMessage message;
      *message.mutable_event() = pending.event;
      resend.push_back(std::move(message));
    }
    return resend;
  };
  callbacks.on_command = [this](dispatch::v1::Command command) {
    absl::MutexLock lock(&mu_);
    commands_.push_back(std::move(command));
  };
  callbacks.on_settled = [this](const dispatch::v1::Settled& settled) { HandleSettled(settled); };
  callbacks.on_delivered = [this](const dispatch::v1::Delivered& delivered) {
    HandleDelivered(delivered);
  };
  // Commands not started yet belong to a session that is gone: its
  // controller sends them again once the agent is back (or, if it was
  // restarted, routes the events again), so running them now would run
  // them twice.
  callbacks.on_session_end = [this] {
    absl::MutexLock lock(&mu_);
    if (!commands_.empty()) {
      LOG(WARNING) << "session ended: dropping " << commands_.size()
                   << " commands not started yet (the controller sends them again)";
      commands_.clear();
    }
  };
  // Small file operations (a write and fsync, a listing): answered inline.
  callbacks.on_file_request = [this](const dispatch::v1::ControllerMessage& request) {
    AgentMessage answer = request.has_write_event()
                              ? file_requests_.Handle(request.write_event())
                              : file_requests_.Handle(request.dead_letter_request());
    session_.Write(std::move(answer));
  };
  return callbacks;
}

Agent::~Agent() { Stop(); }

absl::Status Agent::Start() {
  {
    absl::MutexLock lock(&mu_);
    if (started_) return absl::FailedPreconditionError("agent already started");
    started_ = true;
  }
  Inventory::Callbacks callbacks;
  callbacks.on_snapshot = [this](uint64_t seq, std::vector<ContainerInfo> all) {
    metrics_->SetInventoryFresh(true);
    session_.Write(SnapshotMessage(seq, all));
  };
  callbacks.on_delta = [this](uint64_t seq, std::vector<ContainerInfo> upserted,
                              std::vector<std::string> removed) {
    AgentMessage message;
    auto* delta = message.mutable_inventory_delta();
    delta->set_seq(seq);
    for (const ContainerInfo& info : upserted) ToProto(info, delta->add_upserted());
    for (std::string& id : removed) delta->add_removed_ids(std::move(id));
    session_.Write(std::move(message));
  };
  callbacks.on_stale = [this](std::string reason) {
    metrics_->SetInventoryFresh(false);
    metrics_->RecordInventoryStale();
    AgentMessage message;
    message.mutable_inventory_stale()->set_reason(reason);
    session_.Write(std::move(message));
    LOG(WARNING) << "Docker events stream lost (" << reason
                 << "): events are held until the inventory is fresh again";
  };
  callbacks.on_exec_die = [this](std::string exec_id, int exit_code, absl::Time time) {
    OnExecDie(exec_id, exit_code, time);
  };
  inventory_ = std::make_unique<Inventory>(docker_, clock_, options_.inventory, callbacks);
  inventory_->Start();

  for (int i = 0; i < std::max(1, options_.exec_workers); ++i) {
    workers_.emplace_back([this] { ExecWorker(); });
  }
  session_.Start();

  Watcher::Options watcher_options{.root = options_.events_dir};
  watcher_options.on_unwatched_change = [this](size_t n) {
    metrics_->SetUnwatchedDirectories(n);
  };
  absl::StatusOr<std::unique_ptr<Watcher>> watcher = Watcher::Start(
      std::move(watcher_options),
      [this](const std::string& relative_path, absl::Time observed) {
        return OnFile(relative_path, observed);
      });
  if (!watcher.ok()) {
    Stop();
    return watcher.status();
  }
  watcher_ = *std::move(watcher);
  LOG(INFO) << "agent " << options_.agent_id << " watching " << options_.events_dir;
  return absl::OkStatus();
}

void Agent::Stop() {
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return;
    stopping_ = true;
  }
  if (watcher_ != nullptr) watcher_->Stop();
  if (inventory_ != nullptr) inventory_->Stop();
  session_.Stop();
  for (std::thread& t : workers_) t.join();
  workers_.clear();
  absl::MutexLock lock(&mu_);
  if (!pending_.empty()) {
    LOG(INFO) << pending_.size() << " unsettled event files stay in " << options_.events_dir
              << " for the next start";
  }
}

size_t Agent::unsettled() const {
  absl::MutexLock lock(&mu_);
  return pending_.size();
}

bool Agent::session_up() const { return session_.up(); }

std::string Agent::controller_address() const { return session_.controller_address(); }

std::string Agent::NotReadyReason() const {
  if (inventory_ == nullptr) return "agent: not started";
  std::vector<std::string> reasons;
  if (!inventory_->fresh()) {
    const std::string error = inventory_->last_error();
    reasons.push_back(absl::StrCat("agent: Docker inventory not fresh",
                                   error.empty() ? " (listing containers)" : ": ", error));
  }
  if (!session_.ready()) reasons.push_back("agent: no session with the controller");
  if (const size_t unwatched = watcher_ != nullptr ? watcher_->unwatched_directories() : 0;
      unwatched != 0) {
    reasons.push_back(absl::StrCat(
        "agent: ", unwatched,
        " directories have no inotify watch (raise fs.inotify.max_user_watches); they are "
        "scanned every 10s instead"));
  }
  return absl::StrJoin(reasons, "; ");
}

Watcher::Report Agent::OnFile(const std::string& relative_path, absl::Time observed) {
  std::optional<FileIdentity> identity = Identify(relative_path);
  if (!identity.has_value()) return Watcher::Report::kDone;  // gone, or not a regular file
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return Watcher::Report::kDone;
    auto it = pending_.find(relative_path);
    if (it != pending_.end() && it->second.identity == *identity) {
      return Watcher::Report::kDone;  // seen already
    }
    if (pending_.size() >= options_.max_unsettled_events ||
        pending_bytes_ >= options_.max_unsettled_bytes) {
      // The file is the durable copy: it waits on disk, and a rescan picks
      // it up once unsettled events have made room.
      if (!over_bound_) {
        over_bound_ = true;
        LOG(WARNING) << pending_.size() << " unsettled events (" << pending_bytes_
                     << " payload bytes) are held: new event files wait on disk until half "
                        "of them are settled";
      }
      return Watcher::Report::kDone;
    }
  }
  // Read and marked through one descriptor.
  absl::StatusOr<EventFile> file = spool_.Open(relative_path);
  absl::StatusOr<Payload> payload =
      file.ok() ? file->Read(options_.max_payload_bytes) : file.status();
  if (absl::IsUnavailable(payload.status())) {
    LOG(DEBUG) << relative_path << " is still open for writing: looked at again when it is closed";
    return Watcher::Report::kStillOpen;
  }
  if (!payload.ok()) {
    if (!absl::IsNotFound(payload.status())) {
      metrics_->RecordFileError(AgentMetrics::FileOperation::kRead);
      LOG(WARNING) << "cannot read event file " << relative_path << ": " << payload.status()
                   << " (left in place)";
    }
    return Watcher::Report::kDone;
  }
  // A mark left by an earlier run for this very file: the same event.
  dispatch::v1::EventMark mark;
  FileIdentity marked_file;
  const bool parsed = !payload->mark.empty() && mark.ParseFromString(payload->mark);
  if (parsed) {
    marked_file.inode = mark.inode();
    marked_file.size = mark.size();
    marked_file.mtime_ns = mark.mtime_unix_nanos();
  }
  const bool marked = parsed && mark.generation() != 0 && marked_file.SameContent(*identity);
  Pending pending;
  dispatch::v1::ObservedEvent& event = pending.event;
  event.set_key(relative_path);
  event.set_event_id(contract::EventIdFromRelativePath(relative_path, options_.event_namespace));
  event.set_payload(std::move(payload->data));
  event.set_payload_truncated(payload->truncated);
  event.set_observed_unix_nanos(absl::ToUnixNanos(observed));
  event.set_size(payload->size);
  if (payload->truncated) {
    LOG(WARNING) << "event file " << relative_path << " is " << payload->size
                 << " bytes; payload truncated to " << options_.max_payload_bytes;
  }
  if (marked) {
    event.set_generation(mark.generation());
    *event.mutable_delivered() = mark.delivered();
  } else {
    // A first sight, or the file was written again while its event is in
    // flight: either way a new event (generation), kept with the file.
    {
      absl::MutexLock lock(&mu_);
      event.set_generation(next_generation_++);
    }
    if (std::optional<FileIdentity> now =
            WriteMark(relative_path, identity->Mark(event.generation()), &*file);
        now.has_value() && now->SameContent(*identity)) {
      identity = now;
    }
  }
  pending.identity = *identity;
  AgentMessage message;
  {
    absl::MutexLock lock(&mu_);
    if (stopping_) return Watcher::Report::kDone;
    auto it = pending_.find(relative_path);
    if (it != pending_.end() && it->second.identity == *identity) return Watcher::Report::kDone;
    if (it != pending_.end()) pending_bytes_ -= it->second.event.payload().size();
    *message.mutable_event() = event;
    pending_bytes_ += event.payload().size();
    pending_[relative_path] = std::move(pending);
    metrics_->RecordFileObserved();
    metrics_->SetUnsettled(pending_.size());
  }
  LOG(DEBUG) << "observed " << relative_path << " as event " << message.event().event_id()
             << " (generation " << message.event().generation()
             << (marked ? ", from an earlier run" : "") << ")";
  session_.Write(std::move(message));
  return Watcher::Report::kDone;
}

std::optional<Agent::FileIdentity> Agent::WriteMark(const std::string& key,
                                                    const dispatch::v1::EventMark& mark,
                                                    EventFile* file) {
  absl::StatusOr<struct stat> st = file != nullptr
                                       ? file->WriteMark(mark.SerializeAsString())
                                       : spool_.WriteMark(key, mark.SerializeAsString());
  if (!st.ok()) {
    if (!absl::IsNotFound(st.status()) && !marks_unavailable_logged_.exchange(true)) {
      LOG(WARNING) << "cannot keep the state of event " << key << " with its file ("
                   << st.status()
                   << "); events in flight when this agent restarts may run again";
    }
    return std::nullopt;
  }
  return FileIdentity::Of(*st);
}

void Agent::HandleDelivered(const dispatch::v1::Delivered& delivered) {
  // One at a time from building the mark to writing it: a later write
  // always holds every delivery an earlier one did.
  absl::MutexLock mark_lock(&mark_mu_);
  dispatch::v1::EventMark mark;
  FileIdentity before;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(delivered.key());
    if (it == pending_.end() || it->second.event.generation() != delivered.generation()) return;
    dispatch::v1::ObservedEvent& event = it->second.event;
    for (const dispatch::v1::DeliveredTo& to : event.delivered()) {
      if (SameRecipient(to, delivered.to())) return;
    }
    *event.add_delivered() = delivered.to();
    before = it->second.identity;
    mark = before.Mark(event.generation());
    *mark.mutable_delivered() = event.delivered();
  }
  std::optional<FileIdentity> now = WriteMark(delivered.key(), mark);
  if (!now.has_value()) return;
  absl::MutexLock lock(&mu_);
  auto it = pending_.find(delivered.key());
  if (it == pending_.end() || it->second.event.generation() != delivered.generation()) return;
  // Only the attribute changed (the ctime): still the same file.
  FileIdentity& identity = it->second.identity;
  if (identity == before && now->SameContent(before)) {
    identity = *now;
  }
}

void Agent::HandleSettled(const dispatch::v1::Settled& settled) {
  FileIdentity identity;
  bool rescan = false;
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(settled.key());
    // Unknown: settled twice (re-sent after a reconnect). Older generation:
    // the file was written again and its newer event is still in flight.
    if (it == pending_.end() || it->second.event.generation() != settled.generation()) return;
    identity = it->second.identity;
  }
  std::optional<FileIdentity> now = Identify(settled.key());
  const bool same_file = now.has_value() && *now == identity;
  if (same_file) {
    absl::Status status;
    const bool dead_letter = settled.disposition() == dispatch::v1::Settled::DEAD_LETTER;
    if (dead_letter) {
      status = spool_.DeadLetter(settled.key(), settled.error_json());
      LOG(WARNING) << "moved " << settled.key() << " to .dead-letter/";
    } else {
      status = spool_.Delete(settled.key());
    }
    if (status.ok() || absl::IsNotFound(status)) {
      metrics_->RecordSettled(dead_letter ? AgentMetrics::Disposition::kDeadLettered
                                          : AgentMetrics::Disposition::kDeleted);
    } else {
      metrics_->RecordFileError(dead_letter ? AgentMetrics::FileOperation::kDeadLetter
                                            : AgentMetrics::FileOperation::kDelete);
    }
    if (!status.ok() && !absl::IsNotFound(status)) {
      LOG(ERROR) << "cannot remove settled event file " << settled.key() << ": " << status;
    }
  }
  {
    absl::MutexLock lock(&mu_);
    auto it = pending_.find(settled.key());
    if (it != pending_.end() && it->second.event.generation() == settled.generation()) {
      pending_bytes_ -= it->second.event.payload().size();
      pending_.erase(it);
    }
    metrics_->SetUnsettled(pending_.size());
    if (over_bound_ && pending_.size() <= options_.max_unsettled_events / 2 &&
        pending_bytes_ <= options_.max_unsettled_bytes / 2) {
      over_bound_ = false;
      rescan = true;
    }
  }
  if (rescan && watcher_ != nullptr) {
    LOG(INFO) << "unsettled events below half of the bound: looking for the files that waited";
    watcher_->Rescan();
  }
  // Written again since it was read: that is a new event, left in place.
  if (!same_file && now.has_value()) OnFile(settled.key(), clock_->Now());
}

void Agent::ExecWorker() {
  while (true) {
    dispatch::v1::Command command;
    std::string key;
    bool repeat = false;
    {
      absl::MutexLock lock(&mu_);
      mu_.Await(absl::Condition(
          +[](Agent* a) ABSL_NO_THREAD_SAFETY_ANALYSIS {
            return a->stopping_ || !a->commands_.empty();
          },
          this));
      if (stopping_) return;
      command = std::move(commands_.front());
      commands_.pop_front();
      key = DeliveryKey(command);
      if (!key.empty()) {
        // The same delivery already running on another worker: its outcome
        // decides.
        auto done = [this, &key]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) {
          return stopping_ || running_.count(key) == 0;
        };
        mu_.Await(absl::Condition(&done));
        if (stopping_) return;
        repeat = delivered_recently_.count(key) != 0;
        if (!repeat) running_.insert(key);
      }
    }
    AgentMessage message;
    if (repeat) {
      LOG(INFO) << "event " << command.event_id() << " was delivered to container "
                << command.container_id().substr(0, 12)
                << " lately: not running it again (command " << command.command_id() << ")";
      CommandResult* result = message.mutable_command_result();
      result->set_command_id(command.command_id());
      result->set_outcome(CommandResult::DELIVERED);
      session_.Write(std::move(message));
      continue;
    }
    *message.mutable_command_result() = runner_.Run(command);
    metrics_->RecordCommand(MetricOutcome(message.command_result().outcome()));
    if (message.command_result().outcome() == CommandResult::DELIVERED &&
        command.origin_agent() == options_.agent_id) {
      // One of this agent's own events: kept with its file now, rather than
      // when the controller's Delivered notice comes back, so a kill in
      // between does not run it again.
      dispatch::v1::Delivered delivered;
      delivered.set_key(command.key());
      delivered.set_generation(command.generation());
      delivered.mutable_to()->set_agent_id(options_.agent_id);
      delivered.mutable_to()->set_container_id(command.container_id());
      HandleDelivered(delivered);
    }
    if (!key.empty()) {
      absl::MutexLock lock(&mu_);
      running_.erase(key);
      if (message.command_result().outcome() == CommandResult::DELIVERED &&
          delivered_recently_.insert(key).second) {
        delivered_order_.push_back(key);
        if (delivered_order_.size() > kRecentDeliveries) {
          delivered_recently_.erase(delivered_order_.front());
          delivered_order_.pop_front();
        }
      }
    }
    const std::string exec_id = message.command_result().exec_id();
    session_.Write(std::move(message));
    if (!exec_id.empty()) {
      // An exit that overtook the result (a short command) follows it.
      if (std::optional<dispatch::v1::ExecExit> exit = runner_.ResultSent(exec_id)) {
        AgentMessage exit_message;
        *exit_message.mutable_exec_exit() = *std::move(exit);
        session_.Write(std::move(exit_message));
      }
    }
  }
}

void Agent::OnExecDie(const std::string& exec_id, int exit_code, absl::Time time) {
  std::optional<dispatch::v1::ExecExit> exit = runner_.ExecExited(exec_id, exit_code, time);
  if (!exit.has_value()) return;  // not ours
  AgentMessage message;
  *message.mutable_exec_exit() = *std::move(exit);
  session_.Write(std::move(message));
}

}  // namespace agent
}  // namespace dispatchd
