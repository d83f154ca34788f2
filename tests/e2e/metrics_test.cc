// End to end for the operator's view: the real dispatchd (all-in-one) against
// a private real dockerd serves /metrics, /healthz and /readyz; its live
// exposition passes promtool; its counters move as events flow; and a real
// Prometheus scraping it evaluates every query of the Grafana dashboards in
// deploy/ to data.
#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <spawn.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/time.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <fstream>
#include <memory>
#include <regex>
#include <sstream>
#include <string>
#include <vector>

#include "absl/strings/numbers.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_replace.h"
#include "absl/strings/str_split.h"
#include "absl/strings/strip.h"
#include "gmock/gmock.h"
#include "common/testing/exposition.h"
#include "gtest/gtest.h"
#include "nlohmann/json.hpp"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"
#include "tests/testing/e2e_fixture.h"

extern char** environ;

namespace dispatchd {
namespace testing {
namespace {

using ::testing::HasSubstr;

constexpr char kAgentId[] = "metrics-host";

std::string UrlEncode(const std::string& s) {
  std::string out;
  for (unsigned char c : s) {
    if (isalnum(c) || c == '-' || c == '_' || c == '.' || c == '~') {
      out.push_back(static_cast<char>(c));
    } else {
      out += absl::StrCat("%", absl::Hex(c, absl::kZeroPad2));
    }
  }
  return out;
}

using ::dispatchd::testing::Sample;


// Runs a command line through the shell; returns exit status and output.
std::pair<int, std::string> Shell(const std::string& command) {
  std::string output;
  FILE* pipe = popen(absl::StrCat(command, " 2>&1").c_str(), "r");
  if (pipe == nullptr) return {-1, ""};
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  const int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

// Every "expr" string in a Grafana dashboard, with its panel title.
void CollectExprs(const nlohmann::json& node, const std::string& title,
                  std::vector<std::pair<std::string, std::string>>* out) {
  if (node.is_object()) {
    const std::string here =
        node.contains("title") && node["title"].is_string() ? node["title"].get<std::string>()
                                                            : title;
    for (const auto& [key, value] : node.items()) {
      if (key == "expr" && value.is_string()) {
        out->emplace_back(here, value.get<std::string>());
      } else {
        CollectExprs(value, here, out);
      }
    }
  } else if (node.is_array()) {
    for (const auto& item : node) CollectExprs(item, title, out);
  }
}

// Grafana's variables, as a dashboard user on this set-up would have them.
std::string Substitute(std::string expr) {
  return absl::StrReplaceAll(expr, {{"$__rate_interval", "30s"},
                                    {"$__interval", "15s"},
                                    {"$__range", "5m"},
                                    {"${host}", kAgentId},
                                    {"$host", kAgentId}});
}

class MetricsTest : public DockerHostTest {
 protected:
  void TearDown() override {
    StopPrometheus();
    if (HasFailure() && prometheus_pid_ == -2) {
      std::cerr << "---- prometheus log ----\n" << ReadFile(dir_ + "/prometheus.log") << "----\n";
    }
    DockerHostTest::TearDown();
  }

  // Starts dispatchd and waits until its log names the metrics port.
  void StartDispatchd(const std::vector<std::string>& extra = {}) {
    std::vector<std::string> args = {"--agent-id", kAgentId, "--metrics-listen", "127.0.0.1:0"};
    args.insert(args.end(), extra.begin(), extra.end());
    DockerHostTest::StartDispatchd(args);
    if (HasFatalFailure()) return;
    const std::regex listening("metrics listening on 127\\.0\\.0\\.1:([0-9]+)");
    ASSERT_TRUE(WaitFor([&] {
      std::smatch m;
      const std::string log = dispatchd_->Log();
      if (!std::regex_search(log, m, listening)) return false;
      port_ = std::stoi(m[1]);
      return true;
    })) << dispatchd_->Log();
    ASSERT_GT(port_, 0);
  }

  std::string Metrics() { return HttpGet(port_, "/metrics").body; }

  void RunHandler(const std::string& name, const std::string& event_id) {
    auto out = daemon_->Docker({"run", "-d", "--network", "none", "--name", name, "--label",
                                absl::StrCat("subscription.", event_id,
                                             ".container.command=touch /handled"),
                                PrivateDockerd::kBusyboxImage, "sleep", "86400"});
    ASSERT_TRUE(out.ok()) << out.status();
  }

  // Writes `n` event files load/<i> for event id "load.<i>"-style ids under
  // one subscribed id: files load/e0 .. are distinct events of id "load".
  void WriteEvents(int n, const std::string& dir) {
    ASSERT_EQ(mkdir((events_ + "/" + dir).c_str(), 0755), 0);
    for (int i = 0; i < n; ++i) {
      WriteFileAtomically(absl::StrCat(events_, "/", dir, "/ev"), absl::StrCat("payload ", i),
                          dir_);
      // The same file name again only after the previous one is settled, so
      // every write is delivered (no debounce here, nothing coalesced).
      ASSERT_TRUE(WaitFor([&] { return !FileExists(absl::StrCat(events_, "/", dir, "/ev")); }))
          << dispatchd_->Log();
    }
  }

  void StartPrometheus() {
    const int port = FreePort();
    // The shipped all-in-one configuration, pointed at this dispatchd and
    // scraping every second.
    std::string config = ReadFile("deploy/prometheus/prometheus-all-in-one.yml");
    ASSERT_THAT(config, HasSubstr("127.0.0.1:9477"));
    config = absl::StrReplaceAll(config, {{"127.0.0.1:9477", absl::StrCat("127.0.0.1:", port_)},
                                          {"15s", "1s"}});
    WriteFile(dir_ + "/prometheus.yml", config);
    ASSERT_EQ(mkdir((dir_ + "/tsdb").c_str(), 0755), 0);
    std::vector<std::string> args = {
        "/usr/bin/prometheus",
        absl::StrCat("--config.file=", dir_, "/prometheus.yml"),
        absl::StrCat("--storage.tsdb.path=", dir_, "/tsdb"),
        absl::StrCat("--web.listen-address=127.0.0.1:", port),
        "--log.level=warn",
    };
    std::vector<char*> argv;
    for (std::string& a : args) argv.push_back(a.data());
    argv.push_back(nullptr);
    const std::string log = dir_ + "/prometheus.log";
    posix_spawn_file_actions_t actions;
    posix_spawn_file_actions_init(&actions);
    posix_spawn_file_actions_addopen(&actions, 0, "/dev/null", O_RDONLY, 0);
    posix_spawn_file_actions_addopen(&actions, 1, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    posix_spawn_file_actions_addopen(&actions, 2, log.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0644);
    pid_t pid = -1;
    const int rc = posix_spawn(&pid, argv[0], &actions, nullptr, argv.data(), environ);
    posix_spawn_file_actions_destroy(&actions);
    ASSERT_EQ(rc, 0) << "cannot start prometheus";
    prometheus_pid_ = pid;
    prometheus_port_ = port;
    ASSERT_TRUE(WaitFor([&] { return HttpGet(port, "/-/ready").status == 200; }))
        << ReadFile(log);
  }

  void StopPrometheus() {
    if (prometheus_pid_ <= 0) return;
    kill(prometheus_pid_, SIGTERM);
    int status = 0;
    if (!WaitFor([&] { return waitpid(prometheus_pid_, &status, WNOHANG) == prometheus_pid_; },
                 absl::Seconds(20))) {
      kill(prometheus_pid_, SIGKILL);
      waitpid(prometheus_pid_, &status, 0);
    }
    prometheus_pid_ = -2;  // stopped; its log is still there
  }

  // An instant query; the parsed response (empty object when unreachable).
  nlohmann::json Query(const std::string& promql) {
    HttpResult r = HttpGet(prometheus_port_, "/api/v1/query?query=" + UrlEncode(promql));
    if (r.status == 0) return nlohmann::json::object();
    return nlohmann::json::parse(r.body, nullptr, /*allow_exceptions=*/false);
  }

  int port_ = 0;
  pid_t prometheus_pid_ = -1;
  int prometheus_port_ = 0;
};


TEST_F(MetricsTest, EndpointsAnswerAndTheExpositionPassesPromtool) {
  StartDispatchd();
  EXPECT_EQ(HttpGet(port_, "/healthz").status, 200);
  ASSERT_TRUE(WaitFor([&] { return HttpGet(port_, "/readyz").status == 200; }))
      << HttpGet(port_, "/readyz").body << dispatchd_->Log();
  EXPECT_EQ(HttpGet(port_, "/nope").status, 404);
  EXPECT_EQ(HttpGet(port_, "/metrics/").status, 404);

  const std::string text = Metrics();
  EXPECT_THAT(text, HasSubstr("dispatchd_build_info{version=\""));
  EXPECT_THAT(text, HasSubstr("process_resident_memory_bytes "));
  EXPECT_EQ(Sample(text, "dispatchd_agents_connected"), 1) << text;
  EXPECT_EQ(Sample(text, absl::StrCat("dispatchd_agent_session_up{agent=\"", kAgentId, "\"}")), 1);
  EXPECT_GE(Sample(text, absl::StrCat("dispatchd_docker_requests_total{agent=\"", kAgentId,
                                      "\",operation=\"list_containers\",outcome=\"ok\"}")),
            1);
  // Known label values exist at 0 before anything happened.
  EXPECT_EQ(Sample(text, "dispatchd_events_settled_total{outcome=\"dead_lettered\"}"), 0);
  EXPECT_EQ(Sample(text, "workqueue_depth{name=\"dispatchd_deliveries\"}"), 0);

  WriteFile(dir_ + "/metrics.txt", text);
  auto [status, output] = Shell(absl::StrCat("/usr/bin/promtool check metrics < ", dir_,
                                             "/metrics.txt"));
  EXPECT_EQ(status, 0) << output;
}

TEST_F(MetricsTest, CountersMoveAsEventsFlow) {
  const std::string handler = Name("handler");
  RunHandler(handler, "load.ev");
  StartDispatchd();
  ASSERT_TRUE(WaitFor([&] { return Sample(Metrics(), "dispatchd_subscriptions{state=\"valid\"}") == 1; }))
      << Metrics();
  const std::string before = Metrics();
  const double delivered = Sample(before, "dispatchd_deliveries_total{outcome=\"delivered\"}");
  const double settled = Sample(before, "dispatchd_events_settled_total{outcome=\"delivered\"}");
  const double observed = Sample(before, "dispatchd_events_observed_total");
  const double latency_count = Sample(before, "dispatchd_delivery_latency_seconds_count");
  ASSERT_GE(delivered, 0) << before;

  WriteEvents(10, "load");

  ASSERT_TRUE(WaitFor([&] {
    return Sample(Metrics(), "dispatchd_deliveries_total{outcome=\"delivered\"}") >= delivered + 10;
  })) << Metrics();
  const std::string after = Metrics();
  EXPECT_EQ(Sample(after, "dispatchd_deliveries_total{outcome=\"delivered\"}"), delivered + 10);
  EXPECT_EQ(Sample(after, "dispatchd_events_settled_total{outcome=\"delivered\"}"), settled + 10);
  EXPECT_EQ(Sample(after, "dispatchd_events_observed_total"), observed + 10);
  EXPECT_EQ(Sample(after, "dispatchd_delivery_latency_seconds_count"), latency_count + 10);
  EXPECT_EQ(Sample(after, "workqueue_adds_total{name=\"dispatchd_deliveries\"}"), 10);
  // The agent deletes the last file once the controller's Settled reaches
  // it, a moment after that delivery counted.
  EXPECT_TRUE(WaitFor([&] {
    return Sample(Metrics(), absl::StrCat("dispatchd_agent_files_settled_total{agent=\"", kAgentId,
                                          "\",disposition=\"deleted\"}")) == 10;
  })) << Metrics();
  EXPECT_GE(Sample(after, absl::StrCat("dispatchd_docker_requests_total{agent=\"", kAgentId,
                                       "\",operation=\"start_exec\",outcome=\"ok\"}")),
            10);
  // The execs' exits arrive after the deliveries.
  EXPECT_TRUE(WaitFor([&] {
    return Sample(Metrics(), "dispatchd_exec_exits_total{status=\"success\"}") == 10;
  })) << Metrics();
}

TEST_F(MetricsTest, PrometheusEvaluatesEveryDashboardQuery) {
  const std::string handler = Name("handler");
  RunHandler(handler, "load.ev");
  // A forwarding destination, so the forwarding panels have a destination.
  StartDispatchd({"--forward-destination", absl::StrCat("file:", dir_, "/forwarded.jsonl")});
  ASSERT_TRUE(WaitFor([&] { return HttpGet(port_, "/readyz").status == 200; }));
  StartPrometheus();
  ASSERT_TRUE(WaitFor([&] {
    nlohmann::json r = Query("up{job=\"dispatchd\"} == 1");
    return r.value("status", "") == "success" && !r["data"]["result"].empty();
  })) << ReadFile(dir_ + "/prometheus.log");

  WriteEvents(5, "load");
  // The load is in Prometheus, with a few samples after it.
  ASSERT_TRUE(WaitFor([&] {
    nlohmann::json r = Query("count_over_time(dispatchd_deliveries_total{outcome=\"delivered\"}[1m]) >= 5 "
                             "and dispatchd_deliveries_total{outcome=\"delivered\"} >= 5");
    return r.value("status", "") == "success" && !r["data"]["result"].empty();
  })) << Metrics();
  EXPECT_TRUE(WaitFor([&] {
    return Sample(Metrics(), absl::StrCat("dispatchd_forward_events_total{destination=\"file:", dir_,
                                          "/forwarded.jsonl\",result=\"sent\"}")) == 5;
  })) << Metrics();

  std::vector<std::pair<std::string, std::string>> exprs;
  for (const char* file : {"deploy/grafana/dashboards/dispatchd-overview.json",
                           "deploy/grafana/dashboards/dispatchd-host.json"}) {
    nlohmann::json dashboard = nlohmann::json::parse(ReadFile(file), nullptr, false);
    ASSERT_FALSE(dashboard.is_discarded()) << file << " is not JSON";
    const size_t before = exprs.size();
    CollectExprs(dashboard["panels"], "", &exprs);
    EXPECT_GT(exprs.size(), before) << file << " has no queries";
    // The host variable lists this agent.
    for (const auto& variable : dashboard["templating"]["list"]) {
      if (variable.value("name", "") != "host") continue;
      nlohmann::json r = Query("dispatchd_agent_session_up");
      ASSERT_EQ(r.value("status", ""), "success");
      ASSERT_FALSE(r["data"]["result"].empty());
      EXPECT_EQ(r["data"]["result"][0]["metric"].value("agent", ""), kAgentId);
    }
  }
  ASSERT_GE(exprs.size(), 30u);
  for (const auto& [panel, raw] : exprs) {
    const std::string expr = Substitute(raw);
    EXPECT_EQ(expr.find('$'), std::string::npos) << panel << ": unknown variable in " << raw;
    nlohmann::json r = Query(expr);
    EXPECT_EQ(r.value("status", ""), "success") << panel << ": " << expr << "\n" << r.dump();
    if (r.value("status", "") != "success") continue;
    EXPECT_FALSE(r["data"]["result"].empty()) << panel << ": no data for " << expr;
  }
  // The latency panel shows a real number once deliveries happened.
  nlohmann::json p99 = Query(Substitute(
      "histogram_quantile(0.99, sum by (le) (rate(dispatchd_delivery_latency_seconds_bucket[1m])))"));
  ASSERT_FALSE(p99["data"]["result"].empty());
  double value = -1;
  ASSERT_TRUE(absl::SimpleAtod(p99["data"]["result"][0]["value"][1].get<std::string>(), &value));
  EXPECT_GT(value, 0);
}

}  // namespace
}  // namespace testing
}  // namespace dispatchd
