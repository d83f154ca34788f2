#include "common/process_metrics.h"

#include <fcntl.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cstdio>
#include <cstdlib>
#include <fstream>
#include <string>

#include "absl/strings/str_cat.h"
#include "absl/time/clock.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace dispatchd {
namespace {

using ::testing::HasSubstr;

// Finds the value of the unlabelled sample `name` in exposition `text`.
double SampleValue(const std::string& text, const std::string& name) {
  const std::string prefix = absl::StrCat("\n", name, " ");
  size_t pos = text.find(prefix);
  EXPECT_NE(pos, std::string::npos) << name << " missing from\n" << text;
  if (pos == std::string::npos) return -1;
  return std::stod(text.substr(pos + prefix.size()));
}

TEST(ProcessStatsTest, ValuesAreSane) {
  absl::StatusOr<ProcessStats> stats = ReadProcessStats();
  ASSERT_TRUE(stats.ok()) << stats.status();
  EXPECT_GT(stats->resident_memory_bytes, 0);
  EXPECT_GE(stats->virtual_memory_bytes, stats->resident_memory_bytes);
  EXPECT_LT(stats->start_time, absl::Now());
  EXPECT_GT(stats->start_time, absl::Now() - absl::Hours(24));
  EXPECT_GE(stats->open_fds, 3);  // at least stdin, stdout, stderr
  EXPECT_GE(stats->cpu_time, absl::ZeroDuration());
  EXPECT_TRUE(stats->max_fds == -1 || stats->max_fds >= stats->open_fds);
}

TEST(ProcessStatsTest, OpenFdsFollowsRealDescriptors) {
  absl::StatusOr<ProcessStats> before = ReadProcessStats();
  ASSERT_TRUE(before.ok()) << before.status();
  int fds[2];
  ASSERT_EQ(pipe(fds), 0);
  absl::StatusOr<ProcessStats> after = ReadProcessStats();
  close(fds[0]);
  close(fds[1]);
  ASSERT_TRUE(after.ok()) << after.status();
  EXPECT_EQ(after->open_fds, before->open_fds + 2);
}

TEST(ParseProcStatTest, CommandWithSpacesAndParens) {
  // Fields 1..24 of proc(5), with an awkward command name.
  const std::string line =
      "4242 (my (odd) proc) S 1 4242 4242 0 -1 4194560 100 0 0 0 "
      "250 50 0 0 20 0 3 0 123456 104857600 2560 18446744073709551615 1 1 0 0 0 0 0\n";
  absl::StatusOr<ProcStat> stat = ParseProcStat(line);
  ASSERT_TRUE(stat.ok()) << stat.status();
  EXPECT_EQ(stat->utime_ticks, 250u);
  EXPECT_EQ(stat->stime_ticks, 50u);
  EXPECT_EQ(stat->start_time_ticks, 123456u);
  EXPECT_EQ(stat->vsize_bytes, 104857600u);
  EXPECT_EQ(stat->rss_pages, 2560);
}

TEST(ParseProcStatTest, MalformedIsInvalidArgument) {
  EXPECT_EQ(ParseProcStat("no parens").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseProcStat("1 (x) S 1 2 3").status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(ParseProcStat("1 (x) S 1 1 1 0 -1 0 0 0 0 0 abc 0 0 0 20 0 1 0 1 1 1")
                .status()
                .code(),
            absl::StatusCode::kInvalidArgument);
}

TEST(ProcessMetricsTest, ExposedThroughRegistry) {
  Registry registry;
  RegisterProcessMetrics(registry);
  RegisterBuildInfo(registry, "1.2.3-test");
  const std::string text = "\n" + SerializeText(registry);

  EXPECT_THAT(text, HasSubstr("# TYPE process_cpu_seconds_total counter\n"));
  EXPECT_THAT(text, HasSubstr("# TYPE process_resident_memory_bytes gauge\n"));
  EXPECT_GT(SampleValue(text, "process_resident_memory_bytes"), 0);
  EXPECT_GT(SampleValue(text, "process_virtual_memory_bytes"), 0);
  EXPECT_GE(SampleValue(text, "process_cpu_seconds_total"), 0);
  EXPECT_GT(SampleValue(text, "process_open_fds"), 0);
  EXPECT_GT(SampleValue(text, "process_max_fds"), 0);
  const double start = SampleValue(text, "process_start_time_seconds");
  EXPECT_GT(start, 0);
  EXPECT_LE(start, absl::ToDoubleSeconds(absl::Now() - absl::UnixEpoch()));
  EXPECT_THAT(text, HasSubstr("\ndispatchd_build_info{version=\"1.2.3-test\"} 1\n"));
}

TEST(ProcessMetricsTest, CpuCounterNeverGoesBack) {
  // Burn CPU until the kernel has charged at least one tick to this process.
  volatile double sink = 0;
  for (int round = 0; round < 10000; ++round) {
    absl::StatusOr<ProcessStats> stats = ReadProcessStats();
    ASSERT_TRUE(stats.ok()) << stats.status();
    if (stats->cpu_time > absl::ZeroDuration()) break;
    for (int j = 0; j < 1000000; ++j) sink = sink + j;
  }
  Registry registry;
  RegisterProcessMetrics(registry);
  double last = 0;
  for (int i = 0; i < 5; ++i) {
    for (int j = 0; j < 1000000; ++j) sink = sink + j;
    const double now = SampleValue("\n" + SerializeText(registry), "process_cpu_seconds_total");
    EXPECT_GE(now, last);
    last = now;
  }
  EXPECT_GT(last, 0);
}

TEST(ProcessMetricsTest, PassesPromtoolLint) {
  ASSERT_EQ(access("/usr/bin/promtool", X_OK), 0)
      << "promtool is required (Debian package `prometheus`)";
  Registry registry;
  RegisterProcessMetrics(registry);
  RegisterBuildInfo(registry, "1.2.3");
  const char* tmp = std::getenv("TEST_TMPDIR");
  const std::string path = absl::StrCat(tmp != nullptr ? tmp : ".", "/process.prom");
  const std::string text = SerializeText(registry);
  {
    std::ofstream out(path, std::ios::binary | std::ios::trunc);
    out << text;
  }
  FILE* pipe = popen(absl::StrCat("/usr/bin/promtool check metrics < '", path, "' 2>&1").c_str(), "r");
  ASSERT_NE(pipe, nullptr);
  std::string output;
  char buf[4096];
  size_t n;
  while ((n = fread(buf, 1, sizeof(buf), pipe)) > 0) output.append(buf, n);
  const int status = pclose(pipe);
  EXPECT_TRUE(WIFEXITED(status) && WEXITSTATUS(status) == 0) << output << "\n" << text;
  EXPECT_EQ(output, "") << text;
}

}  // namespace
}  // namespace dispatchd
