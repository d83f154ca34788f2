#include "controller/leader_election.h"

#include <algorithm>
#include <utility>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace dispatchd {
namespace controller {

std::string EncodeLeader(const LeaderInfo& info) {
  return absl::StrCat(info.identity, "\n", info.address);
}

LeaderInfo DecodeLeader(const std::string& value) {
  LeaderInfo info;
  const size_t newline = value.find('\n');
  info.identity = value.substr(0, newline);
  if (newline != std::string::npos) info.address = value.substr(newline + 1);
  return info;
}

absl::Status ValidateLeaderElectionOptions(const LeaderElectionOptions& o) {
  if (o.key.empty()) return absl::InvalidArgumentError("the leader key is empty");
  if (o.identity.empty()) return absl::InvalidArgumentError("the replica identity is empty");
  if (o.identity.find('\n') != std::string::npos || o.address.find('\n') != std::string::npos) {
    return absl::InvalidArgumentError("the replica identity and address must be one line each");
  }
  if (o.lease_duration < absl::Seconds(2)) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the leader lease duration (", absl::FormatDuration(o.lease_duration),
        ") must be at least 2s: etcd does not keep shorter leases"));
  }
  if (o.renew_deadline >= o.lease_duration) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the renew deadline (", absl::FormatDuration(o.renew_deadline),
        ") must be shorter than the lease duration (", absl::FormatDuration(o.lease_duration),
        "), so a leader stops before its lease can expire"));
  }
  if (o.retry_period <= absl::ZeroDuration() || o.retry_period >= o.renew_deadline) {
    return absl::InvalidArgumentError(absl::StrCat(
        "the retry period (", absl::FormatDuration(o.retry_period),
        ") must be positive and shorter than the renew deadline (",
        absl::FormatDuration(o.renew_deadline), ")"));
  }
  return absl::OkStatus();
}

LeaderElector::LeaderElector(EtcdApi* etcd, Clock* clock, LeaderElectionOptions options,
                             Callbacks callbacks)
    : etcd_(etcd), clock_(clock), options_(std::move(options)), callbacks_(std::move(callbacks)) {}

LeaderElector::~LeaderElector() { Stop(); }

bool LeaderElector::Leading() const {
  if (!leading_.load()) return false;
  return clock_->Now() <
         absl::FromUnixNanos(renewed_at_ns_.load()) + options_.renew_deadline;
}

LeaderInfo LeaderElector::leader() const {
  absl::MutexLock lock(&mu_);
  return leader_;
}

void LeaderElector::SetLeader(LeaderInfo info) {
  absl::MutexLock lock(&mu_);
  if (info.identity != leader_.identity && !info.identity.empty() &&
      info.identity != options_.identity) {
    LOG(INFO) << "the leader is " << info.identity << " at " << info.address;
  }
  leader_ = std::move(info);
}

absl::Time LeaderElector::Step() {
  const absl::Time now = clock_->Now();
  return leading_.load() ? Renew(now) : Campaign(now);
}

absl::Time LeaderElector::Campaign(absl::Time now) {
  const absl::Time deadline = now + options_.retry_period;
  absl::StatusOr<std::optional<EtcdKeyValue>> current = etcd_->Get(options_.key, deadline);
  if (!current.ok()) {
    LOG(DEBUG) << "cannot read the leader key " << options_.key << ": " << current.status();
    SetLeader({});  // not known any more
    return std::max(clock_->Now(), deadline);
  }
  if (current->has_value()) {
    SetLeader(DecodeLeader((*current)->value));
    return std::max(clock_->Now(), deadline);
  }
  // Nobody leads: campaign.
  const absl::Time sent = clock_->Now();
  absl::StatusOr<int64_t> lease = etcd_->Grant(options_.lease_duration, deadline);
  if (!lease.ok()) {
    LOG(WARNING) << "cannot campaign for leadership (lease grant): " << lease.status();
    return std::max(clock_->Now(), deadline);
  }
  const LeaderInfo self{options_.identity, options_.address};
  absl::StatusOr<EtcdApi::CreateResult> created =
      etcd_->CreateIfAbsent(options_.key, EncodeLeader(self), *lease, deadline);
  // A transaction retried after a lost answer finds the key it created
  // itself: bound to this lease, it is ours.
  if (created.ok() && !created->created && created->current.lease == *lease) {
    created->created = true;
  }
  if (!created.ok() || !created->created) {
    if (created.ok()) SetLeader(DecodeLeader(created->current.value));  // another was first
    if (!created.ok()) LOG(WARNING) << "cannot campaign for leadership: " << created.status();
    (void)etcd_->Revoke(*lease, clock_->Now() + options_.retry_period);
    return std::max(clock_->Now(), deadline);
  }
  lease_ = *lease;
  renewed_at_ns_.store(absl::ToUnixNanos(sent));
  const absl::Time renew_due = sent + options_.retry_period;
  if (callbacks_.started_leading) callbacks_.started_leading(renew_due);
  SetLeader(self);
  transitions_.fetch_add(1);
  leading_.store(true);
  LOG(INFO) << "this replica (" << options_.identity << ") leads: lease " << *lease << ", "
            << absl::FormatDuration(options_.lease_duration) << ", renewed every "
            << absl::FormatDuration(options_.retry_period) << ", given up "
            << absl::FormatDuration(options_.renew_deadline) << " after the last renewal";
  return renew_due;
}

absl::Time LeaderElector::Renew(absl::Time now) {
  const absl::Time gate =
      absl::FromUnixNanos(renewed_at_ns_.load()) + options_.renew_deadline;
  if (now >= gate) {
    StepDown(absl::StrCat("could not renew the lease within the renew deadline (",
                          absl::FormatDuration(options_.renew_deadline), ")"));
    return clock_->Now() + options_.retry_period;
  }
  const absl::Time sent = now;
  absl::StatusOr<absl::Duration> ttl = etcd_->KeepAliveOnce(lease_, gate);
  if (!ttl.ok()) {
    if (absl::IsNotFound(ttl.status())) {
      StepDown(absl::StrCat("the lease is gone: ", ttl.status().message()));
      return clock_->Now() + options_.retry_period;
    }
    LOG(WARNING) << "cannot renew the leader lease: " << ttl.status() << "; leading for "
                 << absl::FormatDuration(gate - clock_->Now()) << " more at most";
    // Another try before the gate closes.
    return std::min(clock_->Now() + options_.retry_period / 2, gate);
  }
  renewed_at_ns_.store(absl::ToUnixNanos(sent));
  const absl::Time renew_due = sent + options_.retry_period;
  // Still our key? (Someone may have deleted it by hand.)
  absl::StatusOr<std::optional<EtcdKeyValue>> current = etcd_->Get(options_.key, renew_due);
  if (current.ok()) {
    if (!current->has_value()) {
      absl::StatusOr<EtcdApi::CreateResult> created = etcd_->CreateIfAbsent(
          options_.key, EncodeLeader({options_.identity, options_.address}), lease_, renew_due);
      if (created.ok() && !created->created) current = std::optional(created->current);
      if (created.ok() && created->created) {
        LOG(WARNING) << "the leader key " << options_.key << " had been deleted: written again";
      }
    }
    if (current->has_value() && (*current)->lease != lease_) {
      StepDown(absl::StrCat("the leader key is held by ",
                            DecodeLeader((*current)->value).identity, " (lease ",
                            (*current)->lease, ")"));
      return clock_->Now() + options_.retry_period;
    }
  }
  if (callbacks_.renewed) callbacks_.renewed(renew_due);
  return renew_due;
}

void LeaderElector::StepDown(const std::string& why) {
  leading_.store(false);
  transitions_.fetch_add(1);
  LOG(WARNING) << "this replica (" << options_.identity << ") no longer leads: " << why;
  if (callbacks_.stopped_leading) callbacks_.stopped_leading(why);
  SetLeader({});
  if (lease_ != 0) {
    // Hands over at once when etcd can be reached; otherwise the lease
    // expires by itself.
    (void)etcd_->Revoke(lease_, clock_->Now() + options_.retry_period);
    lease_ = 0;
  }
}

void LeaderElector::Start() {
  absl::MutexLock lock(&mu_);
  if (thread_ != nullptr) return;
  stopping_ = false;
  thread_ = std::make_unique<std::thread>([this] {
    while (true) {
      const absl::Time next = Step();
      absl::MutexLock lock(&mu_);
      if (stopping_) return;
      clock_->AwaitWithDeadline(
          &mu_,
          absl::Condition(
              +[](LeaderElector* e) ABSL_NO_THREAD_SAFETY_ANALYSIS {
                return e->stopping_ || e->nudged_;
              },
              this),
          next);
      if (stopping_) return;
      nudged_ = false;
    }
  });
}

void LeaderElector::Nudge() {
  absl::MutexLock lock(&mu_);
  nudged_ = true;
}

void LeaderElector::Stop() {
  std::unique_ptr<std::thread> thread;
  {
    absl::MutexLock lock(&mu_);
    stopping_ = true;
    thread = std::move(thread_);
  }
  if (thread != nullptr) thread->join();
  if (leading_.load()) StepDown("shutting down");
}

}  // namespace controller
}  // namespace dispatchd
