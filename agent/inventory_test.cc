#include "agent/inventory.h"

#include <string>
#include <vector>

#include "absl/synchronization/mutex.h"
#include "agent/testing/fake_docker_api.h"
#include "common/testing/fake_clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace agent {
namespace {

using ::testing::ElementsAre;
using ::testing::Field;
using ::testing::HasSubstr;
using ::testing::IsEmpty;
using Op = FakeDockerApi::Op;

// Bound on waiting for the inventory thread to act (real time). Only a
// broken implementation ever waits this long.
constexpr absl::Duration kPatience = absl::Seconds(10);

ContainerInfo Container(std::string id, std::string name, ContainerState state,
                        std::map<std::string, std::string> labels = {}) {
  ContainerInfo info;
  info.id = std::move(id);
  info.name = std::move(name);
  info.state = state;
  info.labels = std::move(labels);
  return info;
}

DockerEvent Event(std::string action, std::string id,
                  std::map<std::string, std::string> attributes = {}) {
  DockerEvent event;
  event.type = "container";
  event.action = std::move(action);
  event.id = std::move(id);
  event.time = absl::FromUnixSeconds(1767225600);
  event.attributes = std::move(attributes);
  return event;
}

// Everything the callbacks reported, in order.
class Recorder {
 public:
  struct Call {
    enum Kind { kSnapshot, kDelta, kStale, kExecDie } kind;
    uint64_t seq = 0;
    std::vector<ContainerInfo> containers;  // snapshot: all; delta: upserted
    std::vector<std::string> removed;
    std::string text;  // stale reason or exec id
    int exit_code = 0;
    absl::Time time;
  };

  Inventory::Callbacks callbacks() {
    Inventory::Callbacks cb;
    cb.on_snapshot = [this](uint64_t seq, std::vector<ContainerInfo> all) {
      Add({Call::kSnapshot, seq, std::move(all)});
    };
    cb.on_delta = [this](uint64_t seq, std::vector<ContainerInfo> upserted,
                         std::vector<std::string> removed) {
      Add({Call::kDelta, seq, std::move(upserted), std::move(removed)});
    };
    cb.on_stale = [this](std::string reason) {
      Call call{Call::kStale};
      call.text = std::move(reason);
      Add(std::move(call));
    };
    cb.on_exec_die = [this](std::string exec_id, int exit_code, absl::Time time) {
      Call call{Call::kExecDie};
      call.text = std::move(exec_id);
      call.exit_code = exit_code;
      call.time = time;
      Add(std::move(call));
    };
    return cb;
  }

  // Waits until at least `n` calls were made and returns call n-1 (or fails).
  Call Await(size_t n) {
    absl::MutexLock lock(&mu_);
    auto enough = [this, n]() ABSL_EXCLUSIVE_LOCKS_REQUIRED(mu_) { return calls_.size() >= n; };
    if (!mu_.AwaitWithTimeout(absl::Condition(&enough), kPatience)) {
      ADD_FAILURE() << "only " << calls_.size() << " callbacks, expected " << n;
      return Call{Call::kStale};
    }
    return calls_[n - 1];
  }

  size_t size() const {
    absl::MutexLock lock(&mu_);
    return calls_.size();
  }

  int count(Call::Kind kind) const {
    absl::MutexLock lock(&mu_);
    int n = 0;
    for (const Call& c : calls_) n += c.kind == kind;
    return n;
  }

 private:
  void Add(Call call) {
    absl::MutexLock lock(&mu_);
    calls_.push_back(std::move(call));
  }

  mutable absl::Mutex mu_;
  std::vector<Call> calls_ ABSL_GUARDED_BY(mu_);
};

// Waits (bounded, real time) until `pred` holds.
template <typename Pred>
bool Eventually(Pred pred) {
  const absl::Time deadline = absl::Now() + kPatience;
  while (!pred()) {
    if (absl::Now() > deadline) return false;
    absl::SleepFor(absl::Milliseconds(1));
  }
  return true;
}

class InventoryTest : public ::testing::Test {
 protected:
  InventoryTest() {
    options_.min_backoff = absl::Milliseconds(100);
    options_.max_backoff = absl::Seconds(5);
    options_.poll = absl::Milliseconds(5);
  }

  void StartInventory() {
    inventory_ = std::make_unique<Inventory>(&docker_, &clock_, options_, recorder_.callbacks());
    inventory_->Start();
  }

  // The inventory thread is parked on the clock (backoff).
  bool WaitingOnClock() {
    return Eventually([this] { return clock_.waiters() > 0; });
  }

  FakeDockerApi docker_;
  FakeClock clock_;
  InventoryOptions options_;
  Recorder recorder_;
  std::unique_ptr<Inventory> inventory_;
};

TEST_F(InventoryTest, SnapshotFirstThenDeltasWithIncreasingSeq) {
  docker_.AddContainer(Container("c1", "web", ContainerState::kRunning, {{"a", "1"}}));
  docker_.AddContainer(Container("c2", "worker", ContainerState::kExited));
  StartInventory();

  Recorder::Call snapshot = recorder_.Await(1);
  ASSERT_EQ(snapshot.kind, Recorder::Call::kSnapshot);
  EXPECT_EQ(snapshot.seq, 1u);
  EXPECT_THAT(snapshot.containers, ElementsAre(Field(&ContainerInfo::id, "c1"),
                                               Field(&ContainerInfo::id, "c2")));
  EXPECT_TRUE(inventory_->fresh());
  EXPECT_EQ(docker_.streams_opened(), 1);
  EXPECT_EQ(inventory_->Snapshot().first, 1u);
  ASSERT_TRUE(inventory_->Get("c1").has_value());
  EXPECT_EQ(inventory_->Get("c1")->labels.at("a"), "1");

  // start
  docker_.SetState("c2", ContainerState::kRunning);
  docker_.PushEvent(Event("start", "c2"));
  Recorder::Call started = recorder_.Await(2);
  ASSERT_EQ(started.kind, Recorder::Call::kDelta);
  EXPECT_EQ(started.seq, 2u);
  ASSERT_EQ(started.containers.size(), 1u);
  EXPECT_EQ(started.containers[0].id, "c2");
  EXPECT_EQ(started.containers[0].state, ContainerState::kRunning);
  EXPECT_THAT(started.removed, IsEmpty());

  // die
  docker_.SetState("c1", ContainerState::kExited);
  docker_.PushEvent(Event("die", "c1"));
  Recorder::Call died = recorder_.Await(3);
  ASSERT_EQ(died.kind, Recorder::Call::kDelta);
  EXPECT_EQ(died.seq, 3u);
  ASSERT_EQ(died.containers.size(), 1u);
  EXPECT_EQ(died.containers[0].state, ContainerState::kExited);
  EXPECT_EQ(inventory_->Get("c1")->state, ContainerState::kExited);

  // Nothing changed: no delta. Events are handled in order, so the rename
  // after it must be the very next callback.
  docker_.PushEvent(Event("kill", "c1"));
  docker_.PushEvent(Event("health_status: healthy", "c2"));
  docker_.Rename("c2", "worker-2");
  docker_.PushEvent(Event("rename", "c2"));
  Recorder::Call renamed = recorder_.Await(4);
  ASSERT_EQ(renamed.kind, Recorder::Call::kDelta);
  EXPECT_EQ(renamed.seq, 4u);
  ASSERT_EQ(renamed.containers.size(), 1u);
  EXPECT_EQ(renamed.containers[0].name, "worker-2");

  // Label change (e.g. a container recreated under the same id is not
  // possible, but an update shows up the same way).
  docker_.SetLabels("c2", {{"subscription.x.container.command", "true"}});
  docker_.PushEvent(Event("update", "c2"));
  Recorder::Call relabelled = recorder_.Await(5);
  EXPECT_EQ(relabelled.seq, 5u);
  ASSERT_EQ(relabelled.containers.size(), 1u);
  EXPECT_EQ(relabelled.containers[0].labels.size(), 1u);

  // destroy -> 404 -> removed
  docker_.RemoveContainer("c1");
  docker_.PushEvent(Event("destroy", "c1"));
  Recorder::Call destroyed = recorder_.Await(6);
  ASSERT_EQ(destroyed.kind, Recorder::Call::kDelta);
  EXPECT_EQ(destroyed.seq, 6u);
  EXPECT_THAT(destroyed.containers, IsEmpty());
  EXPECT_THAT(destroyed.removed, ElementsAre("c1"));
  EXPECT_FALSE(inventory_->Get("c1").has_value());

  // A container never seen and already gone: nothing to report. A new one:
  // an upsert.
  docker_.PushEvent(Event("destroy", "ghost"));
  docker_.AddContainer(Container("c3", "new", ContainerState::kCreated));
  docker_.PushEvent(Event("create", "c3"));
  Recorder::Call created = recorder_.Await(7);
  EXPECT_EQ(created.seq, 7u);
  ASSERT_EQ(created.containers.size(), 1u);
  EXPECT_EQ(created.containers[0].id, "c3");

  auto [seq, all] = inventory_->Snapshot();
  EXPECT_EQ(seq, 7u);
  EXPECT_THAT(all, ElementsAre(Field(&ContainerInfo::id, "c2"), Field(&ContainerInfo::id, "c3")));
  EXPECT_EQ(recorder_.count(Recorder::Call::kStale), 0);
  EXPECT_EQ(docker_.calls(Op::kListContainers), 1);
}

TEST_F(InventoryTest, ExecDieIsForwardedAndOtherExecEventsIgnored) {
  docker_.AddContainer(Container("c1", "web", ContainerState::kRunning));
  StartInventory();
  ASSERT_EQ(recorder_.Await(1).kind, Recorder::Call::kSnapshot);

  docker_.PushEvent(Event("exec_create: sh -c exit 3", "c1", {{"execID", "e1"}}));
  docker_.PushEvent(Event("exec_start: sh -c exit 3", "c1", {{"execID", "e1"}}));
  docker_.PushEvent(Event("exec_die", "c1", {{"execID", "e1"}, {"exitCode", "3"}}));
  Recorder::Call died = recorder_.Await(2);
  ASSERT_EQ(died.kind, Recorder::Call::kExecDie);
  EXPECT_EQ(died.text, "e1");
  EXPECT_EQ(died.exit_code, 3);
  EXPECT_EQ(died.time, absl::FromUnixSeconds(1767225600));
  // exec_* never costs an inspect and never makes a delta.
  EXPECT_EQ(docker_.calls(Op::kInspectContainer), 0);
  EXPECT_EQ(inventory_->Snapshot().first, 1u);
}

TEST_F(InventoryTest, StreamBreakGoesStaleOnceBacksOffAndRelists) {
  docker_.AddContainer(Container("c1", "web", ContainerState::kRunning));
  StartInventory();
  ASSERT_EQ(recorder_.Await(1).kind, Recorder::Call::kSnapshot);

  docker_.BreakStreams(absl::UnavailableError("daemon went away"));
  Recorder::Call stale = recorder_.Await(2);
  ASSERT_EQ(stale.kind, Recorder::Call::kStale);
  EXPECT_THAT(stale.text, HasSubstr("daemon went away"));
  EXPECT_FALSE(inventory_->fresh());

  // Parked on the clock: no reconnect until the test moves time.
  ASSERT_TRUE(WaitingOnClock());
  EXPECT_EQ(docker_.calls(Op::kOpenEventStream), 1);

  // The world changes while the inventory is blind.
  docker_.RemoveContainer("c1");
  docker_.AddContainer(Container("c9", "late", ContainerState::kRunning));

  // The first retry fails as well: still one on_stale.
  docker_.FailNext(Op::kOpenEventStream, absl::UnavailableError("connection refused"));
  clock_.Advance(options_.max_backoff);
  ASSERT_TRUE(Eventually([this] { return docker_.calls(Op::kOpenEventStream) == 2; }));
  ASSERT_TRUE(WaitingOnClock());
  EXPECT_EQ(docker_.calls(Op::kOpenEventStream), 2);
  EXPECT_FALSE(inventory_->fresh());

  clock_.Advance(options_.max_backoff);
  Recorder::Call relisted = recorder_.Await(3);
  ASSERT_EQ(relisted.kind, Recorder::Call::kSnapshot);
  EXPECT_EQ(relisted.seq, 2u);
  EXPECT_THAT(relisted.containers, ElementsAre(Field(&ContainerInfo::id, "c9")));
  EXPECT_TRUE(inventory_->fresh());
  EXPECT_FALSE(inventory_->Get("c1").has_value());
  EXPECT_EQ(recorder_.count(Recorder::Call::kStale), 1);
  EXPECT_EQ(docker_.streams_opened(), 2);

  // Deltas continue from the new snapshot's seq.
  docker_.SetState("c9", ContainerState::kExited);
  docker_.PushEvent(Event("die", "c9"));
  Recorder::Call delta = recorder_.Await(4);
  ASSERT_EQ(delta.kind, Recorder::Call::kDelta);
  EXPECT_EQ(delta.seq, 3u);

  // A second outage is reported again.
  docker_.BreakStreams();
  EXPECT_EQ(recorder_.Await(5).kind, Recorder::Call::kStale);
}

TEST_F(InventoryTest, StreamIsOpenedBeforeListing) {
  docker_.FailNext(Op::kOpenEventStream, absl::UnavailableError("no daemon"));
  StartInventory();
  Recorder::Call stale = recorder_.Await(1);
  ASSERT_EQ(stale.kind, Recorder::Call::kStale);
  EXPECT_THAT(stale.text, HasSubstr("no daemon"));
  // A list without a stream could miss changes: it never happened.
  EXPECT_EQ(docker_.calls(Op::kListContainers), 0);
  ASSERT_TRUE(WaitingOnClock());
  clock_.Advance(options_.max_backoff);
  Recorder::Call snapshot = recorder_.Await(2);
  EXPECT_EQ(snapshot.kind, Recorder::Call::kSnapshot);
  EXPECT_EQ(snapshot.seq, 1u);
  EXPECT_EQ(docker_.calls(Op::kListContainers), 1);
}

TEST_F(InventoryTest, ListFailureGoesStaleAndRetries) {
  docker_.AddContainer(Container("c1", "web", ContainerState::kRunning));
  docker_.FailNext(Op::kListContainers, absl::UnavailableError("list: HTTP 500"), 2);
  StartInventory();
  EXPECT_EQ(recorder_.Await(1).kind, Recorder::Call::kStale);
  EXPECT_FALSE(inventory_->fresh());
  for (int attempt = 2; attempt <= 3; ++attempt) {
    ASSERT_TRUE(Eventually([&] { return docker_.calls(Op::kListContainers) == attempt - 1; }));
    ASSERT_TRUE(WaitingOnClock());
    clock_.Advance(options_.max_backoff);
  }
  Recorder::Call snapshot = recorder_.Await(2);
  ASSERT_EQ(snapshot.kind, Recorder::Call::kSnapshot);
  EXPECT_EQ(snapshot.seq, 1u);
  EXPECT_EQ(recorder_.count(Recorder::Call::kStale), 1);
  EXPECT_TRUE(inventory_->fresh());
}

TEST_F(InventoryTest, InspectFailureOtherThanNotFoundForcesARelist) {
  docker_.AddContainer(Container("c1", "web", ContainerState::kRunning));
  StartInventory();
  ASSERT_EQ(recorder_.Await(1).kind, Recorder::Call::kSnapshot);
  docker_.SetState("c1", ContainerState::kExited);
  docker_.FailNext(Op::kInspectContainer, absl::DeadlineExceededError("inspect timed out"));
  docker_.PushEvent(Event("die", "c1"));
  EXPECT_EQ(recorder_.Await(2).kind, Recorder::Call::kStale);
  ASSERT_TRUE(WaitingOnClock());
  clock_.Advance(options_.max_backoff);
  Recorder::Call snapshot = recorder_.Await(3);
  ASSERT_EQ(snapshot.kind, Recorder::Call::kSnapshot);
  EXPECT_EQ(snapshot.seq, 2u);
  ASSERT_EQ(snapshot.containers.size(), 1u);
  EXPECT_EQ(snapshot.containers[0].state, ContainerState::kExited);
}

TEST_F(InventoryTest, StopIsPromptDuringBackoffAndIdempotent) {
  docker_.FailNext(Op::kOpenEventStream, absl::UnavailableError("no daemon"), 100);
  StartInventory();
  ASSERT_EQ(recorder_.Await(1).kind, Recorder::Call::kStale);
  ASSERT_TRUE(WaitingOnClock());
  // The clock never moves: Stop must not wait for the backoff to end.
  inventory_->Stop();
  inventory_->Stop();
  EXPECT_FALSE(inventory_->fresh());
  EXPECT_EQ(docker_.calls(Op::kOpenEventStream), 1);
}

TEST_F(InventoryTest, StopWhileFollowingEventsClosesTheStream) {
  StartInventory();
  ASSERT_EQ(recorder_.Await(1).kind, Recorder::Call::kSnapshot);
  EXPECT_EQ(docker_.open_streams(), 1);
  inventory_->Stop();
  EXPECT_EQ(docker_.open_streams(), 0);
  EXPECT_EQ(recorder_.count(Recorder::Call::kStale), 0);
  EXPECT_FALSE(inventory_->fresh());
}

TEST(InventoryBackoffTest, StopWithoutStartIsFine) {
  FakeDockerApi docker;
  FakeClock clock;
  Inventory inventory(&docker, &clock, InventoryOptions(), Inventory::Callbacks());
  inventory.Stop();
  EXPECT_EQ(docker.calls(Op::kOpenEventStream), 0);
}

}  // namespace
}  // namespace agent
}  // namespace dispatchd
