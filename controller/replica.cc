#include "controller/replica.h"

#include <utility>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "common/logging.h"

namespace dispatchd {
namespace controller {

Replica::Replica(EtcdApi* etcd, Clock* clock, ReplicaOptions options)
    : etcd_(etcd),
      clock_(clock),
      options_(std::move(options)),
      dispatcher_(std::make_shared<Dispatcher>(options_.dispatcher, clock)),
      elector_(etcd, clock, options_.election,
               LeaderElector::Callbacks{
                   .started_leading = [this](absl::Time deadline) { BeginTerm(deadline); },
                   .stopped_leading = [this](const std::string& why) { EndTerm(why); },
                   .renewed = [this](absl::Time deadline) { SyncMembership(deadline); },
               }) {
  if (options_.registry != nullptr) {
    leader_gauge_ = &BuildGauge()
                         .Name("dispatchd_leader")
                         .Help("1 while this controller replica leads, 0 while it stands by.")
                         .Register(*options_.registry)
                         .Add({});
    Family<Counter>& transitions =
        BuildCounter()
            .Name("dispatchd_leader_transitions_total")
            .Help("Times this controller replica started leading (to=leader) and stopped "
                  "(to=standby).")
            .Register(*options_.registry);
    became_leader_ = &transitions.Add({{"to", "leader"}});
    became_standby_ = &transitions.Add({{"to", "standby"}});
    // The gauge follows Leading() itself, which turns false at the renew
    // deadline even before the elector's thread notices.
    options_.registry->AddCollectHook([this] { leader_gauge_->Set(Leading() ? 1 : 0); });
  }
}

Replica::~Replica() { Stop(); }

void Replica::Start() { elector_.Start(); }

void Replica::Stop() { elector_.Stop(); }

std::shared_ptr<Dispatcher> Replica::dispatcher() const {
  absl::MutexLock lock(&mu_);
  return dispatcher_;
}

std::string Replica::MemberKey(const std::string& agent_id) const {
  return absl::StrCat(options_.prefix, "/agents/", agent_id);
}

void Replica::BeginTerm(absl::Time deadline) {
  DispatcherOptions options = options_.dispatcher;
  options.may_command = [this] { return elector_.Leading(); };
  // A new agent goes on the membership list at once, not at the next
  // renewal: a successor must wait for it even if this leader dies now.
  options.on_agents_changed = [this] { elector_.Nudge(); };
  members_.clear();
  const std::string prefix = MemberKey("");
  absl::StatusOr<std::vector<EtcdKeyValue>> listed = etcd_->GetPrefix(prefix, deadline);
  if (!listed.ok()) {
    LOG(WARNING) << "cannot read the agents' membership list (" << listed.status()
                 << "): routing waits the full start-up grace of "
                 << absl::FormatDuration(options.startup_grace);
  } else {
    for (const EtcdKeyValue& kv : *listed) {
      members_[kv.key.substr(prefix.size())] = kv.value;
    }
    if (!members_.empty()) {
      options.expected_agents = members_;
      options.startup_grace = absl::ZeroDuration();
    }
    LOG(INFO) << "new term: waiting for " << members_.size()
              << " agents of the membership list"
              << (members_.empty() ? absl::StrCat(" (none: the full start-up grace of ",
                                                  absl::FormatDuration(options.startup_grace),
                                                  ")")
                                   : "");
  }
  auto term = std::make_shared<Dispatcher>(options, clock_);
  term->Start();
  std::shared_ptr<Dispatcher> idle;
  {
    absl::MutexLock lock(&mu_);
    idle = std::exchange(dispatcher_, term);
    retired_.push_back(idle);
  }
  idle->EndTerm("this replica's standby state is over");
  idle.reset();
  Prune();
  if (became_leader_ != nullptr) became_leader_->Increment();
}

void Replica::EndTerm(const std::string& why) {
  auto idle = std::make_shared<Dispatcher>(options_.dispatcher, clock_);
  std::shared_ptr<Dispatcher> ended;
  {
    absl::MutexLock lock(&mu_);
    ended = std::exchange(dispatcher_, idle);
    retired_.push_back(ended);
  }
  ended->EndTerm(absl::StrCat("this controller replica no longer leads (", why, ")"));
  ended->Stop();
  ended.reset();
  Prune();
  members_.clear();
  if (became_standby_ != nullptr) became_standby_->Increment();
}

void Replica::Prune() {
  std::vector<std::shared_ptr<Dispatcher>> done;
  {
    absl::MutexLock lock(&mu_);
    for (auto it = retired_.begin(); it != retired_.end();) {
      if (it->use_count() == 1) {
        done.push_back(std::move(*it));
        it = retired_.erase(it);
      } else {
        ++it;
      }
    }
  }
  // Destroyed here, outside the lock.
}

void Replica::SyncMembership(absl::Time deadline) {
  Prune();
  const std::map<std::string, std::string> known = dispatcher()->KnownAgents();
  for (const auto& [id, host] : known) {
    auto it = members_.find(id);
    if (it != members_.end() && it->second == host) continue;
    if (clock_->Now() >= deadline) return;  // the rest at the next renewal
    if (absl::Status put = etcd_->Put(MemberKey(id), host, deadline); !put.ok()) {
      LOG(DEBUG) << "cannot add agent " << id << " to the membership list: " << put;
      return;
    }
    members_[id] = host;
  }
  for (auto it = members_.begin(); it != members_.end();) {
    if (known.count(it->first) != 0) {
      ++it;
      continue;
    }
    if (clock_->Now() >= deadline) return;
    if (absl::Status deleted = etcd_->Delete(MemberKey(it->first), deadline); !deleted.ok()) {
      LOG(DEBUG) << "cannot remove agent " << it->first << " from the membership list: "
                 << deleted;
      return;
    }
    LOG(INFO) << "agent " << it->first << " left the membership list";
    it = members_.erase(it);
  }
}

}  // namespace controller
}  // namespace dispatchd
