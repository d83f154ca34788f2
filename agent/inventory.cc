#include "agent/inventory.h"

#include <algorithm>

#include "absl/strings/match.h"
#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "common/backoff.h"
#include "common/logging.h"
#include "common/status_macros.h"

namespace dispatchd {
namespace agent {

Inventory::Inventory(DockerApi* docker, Clock* clock, InventoryOptions options,
                     Callbacks callbacks)
    : docker_(docker), clock_(clock), options_(options), callbacks_(std::move(callbacks)) {
  CHECK(docker_ != nullptr);
  CHECK(clock_ != nullptr);
  CHECK(options_.min_backoff > absl::ZeroDuration() &&
        options_.max_backoff >= options_.min_backoff)
      << "backoff must satisfy 0 < min <= max";
}

Inventory::~Inventory() { Stop(); }

void Inventory::Start() {
  absl::MutexLock thread_lock(&thread_mu_);
  {
    absl::MutexLock lock(&mu_);
    CHECK(!started_) << "Inventory::Start called twice";
    started_ = true;
    if (stop_) return;
  }
  thread_ = std::thread([this] { Run(); });
}

void Inventory::Stop() {
  absl::MutexLock thread_lock(&thread_mu_);
  {
    absl::MutexLock lock(&mu_);
    stop_ = true;
  }
  if (thread_.joinable()) thread_.join();
}

bool Inventory::stopping() const {
  absl::MutexLock lock(&mu_);
  return stop_;
}

bool Inventory::fresh() const {
  absl::MutexLock lock(&mu_);
  return fresh_;
}

std::string Inventory::last_error() const {
  absl::MutexLock lock(&mu_);
  return fresh_ ? std::string() : last_error_;
}

std::optional<ContainerInfo> Inventory::Get(absl::string_view id) const {
  absl::MutexLock lock(&mu_);
  auto it = containers_.find(id);
  if (it == containers_.end()) return std::nullopt;
  return it->second;
}

std::pair<uint64_t, std::vector<ContainerInfo>> Inventory::Snapshot() const {
  absl::MutexLock lock(&mu_);
  std::vector<ContainerInfo> all;
  all.reserve(containers_.size());
  for (const auto& [id, info] : containers_) all.push_back(info);
  return {seq_, std::move(all)};
}

absl::Duration Inventory::Backoff(int failures) {
  // Doubling from min to max, equal jitter, never under the minimum.
  const absl::Duration bound =
      FullJitterBound(absl::ZeroDuration(), options_.min_backoff, options_.max_backoff,
                      static_cast<uint64_t>(failures) + 1);
  return std::max(options_.min_backoff,
                  EqualJitter(bound, [this](int64_t n) {
                    return absl::Uniform<int64_t>(bitgen_, 0, n);
                  }));
}

void Inventory::Run() {
  int failures = 0;
  bool stale_reported = false;
  while (!stopping()) {
    const uint64_t seq_before = Snapshot().first;
    absl::Status ended = RunSession();
    if (stopping()) break;
    {
      absl::MutexLock lock(&mu_);
      fresh_ = false;
      last_error_ = std::string(ended.message());
      // A session that got as far as a snapshot was a success: the outage
      // starts now, so backoff starts over.
      if (seq_ != seq_before) {
        failures = 0;
        stale_reported = false;
      }
    }
    if (!stale_reported) {
      stale_reported = true;
      if (callbacks_.on_stale) callbacks_.on_stale(ended.ToString());
    }
    const absl::Duration delay = Backoff(failures++);
    LOG(WARNING) << "container inventory is stale (" << ended << "); retrying in " << delay;
    absl::MutexLock lock(&mu_);
    clock_->AwaitWithDeadline(&mu_, absl::Condition(&stop_), clock_->Now() + delay);
  }
  absl::MutexLock lock(&mu_);
  fresh_ = false;
}

absl::Status Inventory::RunSession() {
  absl::StatusOr<std::unique_ptr<DockerEventStream>> stream = docker_->OpenEventStream();
  if (!stream.ok()) return stream.status();
  absl::StatusOr<std::vector<ContainerInfo>> all = docker_->ListContainers();
  if (!all.ok()) return all.status();

  uint64_t seq;
  {
    absl::MutexLock lock(&mu_);
    if (stop_) return absl::OkStatus();
    containers_.clear();
    for (const ContainerInfo& info : *all) containers_[info.id] = info;
    seq = ++seq_;
    fresh_ = true;
    last_error_.clear();
  }
  if (callbacks_.on_snapshot) callbacks_.on_snapshot(seq, *std::move(all));

  while (!stopping()) {
    absl::StatusOr<std::optional<DockerEvent>> next = (*stream)->Next(options_.poll);
    if (!next.ok()) return next.status();
    if (!next->has_value()) continue;
    RETURN_IF_ERROR(HandleEvent(**next));
  }
  return absl::OkStatus();
}

absl::Status Inventory::HandleEvent(const DockerEvent& event) {
  if (event.type != "container" || event.id.empty()) return absl::OkStatus();
  if (absl::StartsWith(event.action, "exec_")) {
    if (event.action != "exec_die" || !callbacks_.on_exec_die) return absl::OkStatus();
    auto exec_id = event.attributes.find("execID");
    if (exec_id == event.attributes.end()) return absl::OkStatus();
    int exit_code = -1;
    auto code = event.attributes.find("exitCode");
    if (code == event.attributes.end() || !absl::SimpleAtoi(code->second, &exit_code)) {
      exit_code = -1;
    }
    callbacks_.on_exec_die(exec_id->second, exit_code, event.time);
    return absl::OkStatus();
  }

  absl::StatusOr<ContainerInfo> info = docker_->InspectContainer(event.id);
  std::vector<ContainerInfo> upserted;
  std::vector<std::string> removed;
  uint64_t seq;
  if (info.ok()) {
    absl::MutexLock lock(&mu_);
    // Events carry the full id; key by what inspect says all the same.
    auto it = containers_.find(info->id);
    if (it != containers_.end() && it->second == *info) return absl::OkStatus();
    containers_[info->id] = *info;
    upserted.push_back(*std::move(info));
    seq = ++seq_;
  } else if (absl::IsNotFound(info.status())) {
    absl::MutexLock lock(&mu_);
    auto it = containers_.find(event.id);
    if (it == containers_.end()) return absl::OkStatus();
    containers_.erase(it);
    removed.push_back(event.id);
    seq = ++seq_;
  } else {
    // Missing a change would leave the view wrong until the next relist:
    // treat it as an outage, which ends in a relist.
    return info.status();
  }
  if (callbacks_.on_delta) callbacks_.on_delta(seq, std::move(upserted), std::move(removed));
  return absl::OkStatus();
}

}  // namespace agent
}  // namespace dispatchd
