// A kill during a burst repeats no more than was running: 200 events
// written at once on host-0, a handler on each of two hosts, and kill -9 of
// the controller, then of host-0's agent, while the deliveries are going
// on. Every event must reach both handlers, and the runs beyond the first
// must stay within the execs that could be running at the kill (exec
// workers per agent whose work was cut). Before events kept their identity
// and deliveries with their files, the controller kill repeated about 133
// deliveries and the agent kill 134 to 141.
#include <map>
#include <memory>
#include <set>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gtest/gtest.h"
#include "tests/chaos/cluster.h"
#include "tests/testing/dispatchd_process.h"

namespace dispatchd::chaos {
namespace {

constexpr int kWorkers = 8;

class KillTest : public ::testing::Test {
 protected:
  void SetUp() override {
    dir_ = testing::MakeTempDir("dispatchd-kill");
    ClusterOptions options;
    options.all_in_one = false;
    options.hosts = 2;
    options.exec_workers = kWorkers;
    options.debounced = false;
    options.starter = false;
    options.churn = false;
    options.forward = false;
    auto cluster = ChaosCluster::Start(dir_, options);
    ASSERT_TRUE(cluster.ok()) << cluster.status();
    cluster_ = *std::move(cluster);
  }
  void TearDown() override {
    if (HasFailure() && cluster_ != nullptr) std::cerr << cluster_->Logs();
    cluster_.reset();
    testing::RemoveTree(dir_);
  }

  // Writes one event per id on host-0 (renamed into place); returns the
  // payloads.
  std::set<std::string> Burst() {
    std::set<std::string> payloads;
    const std::string root = cluster_->events_dir(0);
    const std::string scratch = dir_ + "/scratch";
    for (int d = 0; d < kDirs; ++d) {
      for (int n = 0; n < kNames; ++n) {
        const std::string payload = absl::StrCat("burst-", d, "-", n);
        testing::WriteFileAtomically(absl::StrCat(root, "/", EventPath(d, n)), payload, scratch);
        payloads.insert(payload);
      }
    }
    return payloads;
  }

  int64_t RunsSoFar() {
    int64_t runs = 0;
    for (const auto& [handler, payloads] : cluster_->Runs()) runs += payloads.size();
    return runs;
  }

  // Waits for every file to settle; then every payload must have run on
  // both handlers, and the repeats are returned.
  int64_t DrainAndCountRepeats(const std::set<std::string>& payloads) {
    EXPECT_TRUE(testing::WaitFor([&] { return cluster_->Unsettled().empty(); },
                                 absl::Seconds(120)));
    std::map<std::string, std::vector<std::string>> runs;
    auto complete = [&] {
      runs = cluster_->Runs();
      for (const char* handler : {"plain-0", "plain-1"}) {
        const std::set<std::string> ran(runs[handler].begin(), runs[handler].end());
        if (ran != payloads) return false;
      }
      return true;
    };
    EXPECT_TRUE(testing::WaitFor(complete, absl::Seconds(30)))
        << "plain-0 ran " << runs["plain-0"].size() << ", plain-1 ran " << runs["plain-1"].size()
        << " of " << payloads.size();
    absl::SleepFor(absl::Seconds(1));  // execs started last finish their echo
    runs = cluster_->Runs();
    int64_t repeats = 0;
    for (const char* handler : {"plain-0", "plain-1"}) {
      repeats += static_cast<int64_t>(runs[handler].size()) -
                 static_cast<int64_t>(std::set<std::string>(runs[handler].begin(),
                                                            runs[handler].end())
                                          .size());
    }
    EXPECT_TRUE(cluster_->DeadLetters().empty());
    return repeats;
  }

  std::string dir_;
  std::unique_ptr<ChaosCluster> cluster_;
};

TEST_F(KillTest, AControllerKilledDuringABurstRepeatsOnlyWhatWasRunning) {
  absl::SleepFor(absl::Seconds(2));  // both agents connected and listed
  const std::set<std::string> payloads = Burst();
  ASSERT_TRUE(testing::WaitFor([&] { return RunsSoFar() >= 100; }, absl::Seconds(60)));
  ASSERT_TRUE(cluster_->KillController(absl::Milliseconds(500)).ok());
  const int64_t at_kill = RunsSoFar();
  const int64_t repeats = DrainAndCountRepeats(payloads);
  std::cout << "controller kill after " << at_kill << " of 400 runs: " << repeats
            << " repeated (bound " << kWorkers * 2 << ")\n";
  EXPECT_LE(repeats, kWorkers * 2);  // the execs running on both agents
}

TEST_F(KillTest, TheAgentOfTheFilesKilledDuringABurstRepeatsOnlyWhatWasRunning) {
  absl::SleepFor(absl::Seconds(2));
  const std::set<std::string> payloads = Burst();
  ASSERT_TRUE(testing::WaitFor([&] { return RunsSoFar() >= 100; }, absl::Seconds(60)));
  ASSERT_TRUE(cluster_->KillAgent(0, absl::Milliseconds(500)).ok());
  const int64_t at_kill = RunsSoFar();
  const int64_t repeats = DrainAndCountRepeats(payloads);
  std::cout << "agent kill after " << at_kill << " of 400 runs: " << repeats
            << " repeated (bound " << kWorkers << ")\n";
  EXPECT_LE(repeats, kWorkers);  // the execs running on that agent
}

}  // namespace
}  // namespace dispatchd::chaos
