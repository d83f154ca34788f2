#include "common/metrics.h"

#include <sys/wait.h>

#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace {

using ::testing::HasSubstr;

TEST(CounterTest, IncrementsAndReads) {
  Registry registry;
  Counter& c = registry.AddCounter("requests_total", "Requests.").Add({});
  EXPECT_EQ(c.Value(), 0);
  c.Increment();
  c.Increment(2.5);
  EXPECT_EQ(c.Value(), 3.5);
}

TEST(GaugeTest, SetIncrementDecrement) {
  Gauge g;
  g.Set(10);
  g.Increment();
  g.Decrement(4);
  EXPECT_EQ(g.Value(), 7);
  g.Increment(-10);
  EXPECT_EQ(g.Value(), -3);
}

TEST(FamilyTest, SameLabelsGiveSameMetric) {
  Registry registry;
  Family<Counter>& family = registry.AddCounter("ops_total", "Ops.");
  Counter& a = family.Add({{"kind", "a"}, {"host", "x"}});
  Counter& b = family.Add({{"host", "x"}, {"kind", "a"}});
  Counter& other = family.Add({{"kind", "b"}, {"host", "x"}});
  EXPECT_EQ(&a, &b);
  EXPECT_NE(&a, &other);
  // Adding more children does not move existing ones.
  for (int i = 0; i < 100; ++i) family.Add({{"kind", absl::StrCat(i)}});
  EXPECT_EQ(&family.Add({{"kind", "a"}, {"host", "x"}}), &a);
}

TEST(FamilyTest, RemoveDropsTheSeries) {
  Registry registry;
  Family<Gauge>& family = registry.AddGauge("queue_depth", "Depth.");
  family.Add({{"q", "a"}}).Set(1);
  Gauge& b = family.Add({{"q", "b"}});
  b.Set(2);
  family.Remove(&b);
  EXPECT_EQ(SerializeText(registry),
            "# HELP queue_depth Depth.\n"
            "# TYPE queue_depth gauge\n"
            "queue_depth{q=\"a\"} 1\n");
}

TEST(RegistryTest, SameNameAndTypeReturnsSameFamily) {
  Registry registry;
  Family<Gauge>& a = registry.AddGauge("g", "help");
  Family<Gauge>& b = BuildGauge().Name("g").Help("help").Register(registry);
  EXPECT_EQ(&a, &b);
}

TEST(HistogramTest, BucketsAreCumulativeWithInf) {
  Histogram h({1, 2, 5});
  for (double v : {0.5, 1.0, 1.5, 2.0, 3.0, 7.0, -1.0}) h.Observe(v);
  Histogram::Snapshot s = h.Collect();
  EXPECT_EQ(s.bounds, (BucketBoundaries{1, 2, 5}));
  // le=1: 0.5, 1.0, -1.0; le=2: +1.5, 2.0; le=5: +3.0; +Inf: +7.0.
  EXPECT_EQ(s.cumulative, (std::vector<uint64_t>{3, 5, 6, 7}));
  EXPECT_EQ(s.count, 7u);
  EXPECT_DOUBLE_EQ(s.sum, 14.0);
}

TEST(HistogramTest, TrailingInfBoundIsImplicit) {
  Histogram h({0.1, std::numeric_limits<double>::infinity()});
  EXPECT_EQ(h.bounds(), (BucketBoundaries{0.1}));
  h.Observe(std::nan(""));
  EXPECT_EQ(h.Collect().cumulative, (std::vector<uint64_t>{0, 1}));
}

TEST(HistogramTest, BucketHelpers) {
  EXPECT_EQ(ExponentialBuckets(0.001, 10, 4), (BucketBoundaries{0.001, 0.01, 0.1, 1}));
  EXPECT_EQ(LinearBuckets(1, 2, 3), (BucketBoundaries{1, 3, 5}));
}

TEST(ExpositionTest, GoldenCounterGaugeHistogram) {
  Registry registry;
  Family<Counter>& events = BuildCounter()
                                .Name("dispatchd_events_total")
                                .Help("Events seen.\nSecond line with a \\ backslash and \"quotes\".")
                                .Labels({{"host", "a"}})
                                .Register(registry);
  events.Add({{"kind", "created"}}).Increment(3);
  events.Add({{"kind", "moved \"in\"\n\\x"}}).Increment();

  registry.AddGauge("dispatchd_agents", "Connected agents.").Add({}).Set(2);
  registry.AddGauge("dispatchd_empty", "No children yet.");

  Family<Histogram>& latency =
      registry.AddHistogram("dispatchd_exec_duration_seconds", "Exec latency.");
  Histogram& h = latency.Add({{"result", "ok"}}, BucketBoundaries{0.005, 0.25, 1});
  h.Observe(0.001);
  h.Observe(0.25);
  h.Observe(3);

  EXPECT_EQ(SerializeText(registry),
            "# HELP dispatchd_agents Connected agents.\n"
            "# TYPE dispatchd_agents gauge\n"
            "dispatchd_agents 2\n"
            "# HELP dispatchd_empty No children yet.\n"
            "# TYPE dispatchd_empty gauge\n"
            "# HELP dispatchd_events_total Events seen.\\nSecond line with a \\\\ backslash and "
            "\"quotes\".\n"
            "# TYPE dispatchd_events_total counter\n"
            "dispatchd_events_total{host=\"a\",kind=\"created\"} 3\n"
            "dispatchd_events_total{host=\"a\",kind=\"moved \\\"in\\\"\\n\\\\x\"} 1\n"
            "# HELP dispatchd_exec_duration_seconds Exec latency.\n"
            "# TYPE dispatchd_exec_duration_seconds histogram\n"
            "dispatchd_exec_duration_seconds_bucket{result=\"ok\",le=\"0.005\"} 1\n"
            "dispatchd_exec_duration_seconds_bucket{result=\"ok\",le=\"0.25\"} 2\n"
            "dispatchd_exec_duration_seconds_bucket{result=\"ok\",le=\"1\"} 2\n"
            "dispatchd_exec_duration_seconds_bucket{result=\"ok\",le=\"+Inf\"} 3\n"
            "dispatchd_exec_duration_seconds_sum{result=\"ok\"} 3.251\n"
            "dispatchd_exec_duration_seconds_count{result=\"ok\"} 3\n");
}

TEST(ExpositionTest, NumberFormats) {
  Registry registry;
  Family<Gauge>& g = registry.AddGauge("v", "Values.");
  g.Add({{"k", "a_pos_inf"}}).Set(std::numeric_limits<double>::infinity());
  g.Add({{"k", "b_neg_inf"}}).Set(-std::numeric_limits<double>::infinity());
  g.Add({{"k", "c_nan"}}).Set(std::nan(""));
  g.Add({{"k", "d_int"}}).Set(1234567890123);
  g.Add({{"k", "e_neg"}}).Set(-42);
  g.Add({{"k", "f_frac"}}).Set(0.1);
  g.Add({{"k", "g_big"}}).Set(1e20);
  g.Add({{"k", "h_small"}}).Set(1.5e-9);
  g.Add({{"k", "i_neg_zero"}}).Set(-0.0);
  EXPECT_EQ(SerializeText(registry),
            "# HELP v Values.\n"
            "# TYPE v gauge\n"
            "v{k=\"a_pos_inf\"} +Inf\n"
            "v{k=\"b_neg_inf\"} -Inf\n"
            "v{k=\"c_nan\"} NaN\n"
            "v{k=\"d_int\"} 1234567890123\n"
            "v{k=\"e_neg\"} -42\n"
            "v{k=\"f_frac\"} 0.1\n"
            "v{k=\"g_big\"} 1e+20\n"
            "v{k=\"h_small\"} 1.5e-09\n"
            "v{k=\"i_neg_zero\"} 0\n");
}

TEST(ExpositionTest, CollectHookRunsBeforeSnapshot) {
  Registry registry;
  Gauge& depth = registry.AddGauge("queue_depth", "Depth.").Add({});
  int calls = 0;
  registry.AddCollectHook([&] { depth.Set(++calls * 10); });
  EXPECT_THAT(SerializeText(registry), HasSubstr("queue_depth 10\n"));
  EXPECT_THAT(SerializeText(registry), HasSubstr("queue_depth 20\n"));
  EXPECT_EQ(calls, 2);
}

TEST(ExpositionTest, HookMayAddChildren) {
  Registry registry;
  Family<Gauge>& family = registry.AddGauge("sinks", "Sinks.");
  registry.AddCollectHook([&] { family.Add({{"name", "late"}}).Set(1); });
  EXPECT_THAT(SerializeText(registry), HasSubstr("sinks{name=\"late\"} 1\n"));
}

TEST(ConcurrencyTest, ThreadsIncrementingOneCounterSumExactly) {
  Registry registry;
  Family<Counter>& family = registry.AddCounter("hits_total", "Hits.");
  Family<Histogram>& hist = registry.AddHistogram("lat_seconds", "Latency.");
  constexpr int kThreads = 8;
  constexpr int kPerThread = 50000;
  std::vector<std::thread> threads;
  for (int t = 0; t < kThreads; ++t) {
    threads.emplace_back([&, t] {
      // Every thread also races on Add for the same and for its own labels.
      Counter& shared = family.Add({{"who", "all"}});
      Counter& own = family.Add({{"who", absl::StrCat("t", t)}});
      Histogram& h = hist.Add({}, BucketBoundaries{1, 2});
      for (int i = 0; i < kPerThread; ++i) {
        shared.Increment();
        own.Increment(2);
        h.Observe(i % 3);
      }
    });
  }
  // Collect concurrently with the writers; it must not block or crash.
  for (int i = 0; i < 20; ++i) SerializeText(registry);
  for (auto& t : threads) t.join();
  EXPECT_EQ(family.Add({{"who", "all"}}).Value(), kThreads * kPerThread);
  for (int t = 0; t < kThreads; ++t) {
    EXPECT_EQ(family.Add({{"who", absl::StrCat("t", t)}}).Value(), 2 * kPerThread);
  }
  Histogram::Snapshot s = hist.Add({}, BucketBoundaries{1, 2}).Collect();
  EXPECT_EQ(s.count, static_cast<uint64_t>(kThreads) * kPerThread);
  EXPECT_EQ(s.cumulative.back(), s.count);
}

TEST(NameTest, Validation) {
  EXPECT_TRUE(IsValidMetricName("dispatchd_events_total"));
  EXPECT_TRUE(IsValidMetricName("job:rate5m"));
  EXPECT_TRUE(IsValidMetricName("_x"));
  EXPECT_FALSE(IsValidMetricName(""));
  EXPECT_FALSE(IsValidMetricName("1abc"));
  EXPECT_FALSE(IsValidMetricName("a-b"));
  EXPECT_FALSE(IsValidMetricName("__reserved"));
  EXPECT_TRUE(IsValidLabelName("kind"));
  EXPECT_FALSE(IsValidLabelName("a:b"));
  EXPECT_FALSE(IsValidLabelName("__name__"));
  EXPECT_FALSE(IsValidLabelName("9"));
}

using MetricsDeathTest = ::testing::Test;

TEST_F(MetricsDeathTest, ProgrammingErrorsCheckFail) {
  GTEST_FLAG_SET(death_test_style, "threadsafe");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("bad-name", "x");
      },
      "invalid metric name");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("__x", "x");
      },
      "invalid metric name");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("c_total", "x").Add({{"__k", "v"}});
      },
      "invalid label name");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddGauge("g", "x", {{"bad-label", "v"}});
      },
      "invalid label name");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddHistogram("h", "x").Add({{"le", "1"}}, BucketBoundaries{1});
      },
      "\"le\" is reserved");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddHistogram("h", "x", {{"le", "1"}});
      },
      "\"le\" is reserved");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("m", "x");
        r.AddGauge("m", "x");
      },
      "already registered as counter");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddHistogram("m", "x");
        r.AddCounter("m_count", "x");
      },
      "collides with series m_count");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddCounter("c_total", "x").Add({}).Increment(-1);
      },
      "must be >= 0");
  EXPECT_DEATH(
      {
        Registry r;
        r.AddGauge("g", "x", {{"host", "a"}}).Add({{"host", "b"}});
      },
      "already a constant label");
  EXPECT_DEATH({ Histogram h({2, 1}); }, "strictly increasing");
  EXPECT_DEATH(
      {
        Registry r;
        Family<Histogram>& f = r.AddHistogram("h", "x");
        f.Add({}, BucketBoundaries{1});
        f.Add({}, BucketBoundaries{2});
      },
      "other bucket boundaries");
}

// Runs `promtool check metrics` on `text`; returns its exit status and output.
std::pair<int, std::string> Promtool(const std::string& text) {
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(tmp != nullptr ? tmp : ".", "/metrics.prom");
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  const std::string cmd = absl::StrCat("/usr/bin/promtool check metrics < '", path, "' 2>&1");
  FILE* pipe = popen(cmd.c_str(), "r");
  if (pipe == nullptr) return {-1, "popen failed"};
  std::string output;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  int status = pclose(pipe);
  return {WIFEXITED(status) ? WEXITSTATUS(status) : -1, output};
}

TEST(PromtoolTest, ExpositionPassesCheckMetrics) {
  ASSERT_EQ(access("/usr/bin/promtool", X_OK), 0)
      << "promtool is required (Debian package `prometheus`)";
  Registry registry;
  Family<Counter>& events = registry.AddCounter(
      "dispatchd_events_total", "Events seen.\nWith a newline, a \\ and \"quotes\".",
      {{"host", "a"}});
  events.Add({{"kind", "created"}}).Increment(3);
  events.Add({{"kind", "odd \"value\"\nwith \\ escapes"}}).Increment();
  registry.AddCounter("dispatchd_unused_total", "A family without children.");
  Family<Gauge>& values = registry.AddGauge("dispatchd_values", "Special values.");
  values.Add({{"k", "inf"}}).Set(std::numeric_limits<double>::infinity());
  values.Add({{"k", "neg_inf"}}).Set(-std::numeric_limits<double>::infinity());
  values.Add({{"k", "nan"}}).Set(std::nan(""));
  values.Add({{"k", "tiny"}}).Set(1.5e-300);
  values.Add({{"k", "big"}}).Set(1.7e308);
  Family<Histogram>& hist =
      registry.AddHistogram("dispatchd_exec_duration_seconds", "Exec latency.");
  Histogram& h = hist.Add({{"result", "ok"}}, ExponentialBuckets(0.0005, 2, 12));
  for (double v : {0.0001, 0.003, 0.02, 0.5, 9.0}) h.Observe(v);
  hist.Add({{"result", "error"}}, ExponentialBuckets(0.0005, 2, 12));

  const std::string text = SerializeText(registry);
  auto [status, output] = Promtool(text);
  EXPECT_EQ(status, 0) << output << "\n--- input ---\n" << text;
  EXPECT_EQ(output, "") << "--- input ---\n" << text;
}

TEST(PromtoolTest, RejectsBrokenInput) {
  // Guards the helper above: it must see promtool's verdict, not just run.
  ASSERT_EQ(access("/usr/bin/promtool", X_OK), 0);
  auto [status, output] = Promtool("# TYPE x counter\nx{a=\"unterminated} 1\n");
  EXPECT_NE(status, 0) << output;
}

}  // namespace
}  // namespace dispatchd
