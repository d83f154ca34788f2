#include "bench/backlog_bench.h"

#include <fcntl.h>
#include <grpcpp/grpcpp.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <memory>
#include <utility>

#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/time/clock.h"
#include "agent/agent.h"
#include "bench/bench_util.h"
#include "bench/instant_docker_api.h"
#include "common/clock.h"
#include "common/logging.h"
#include "controller/dispatcher.h"
#include "controller/session_service.h"
#include "nlohmann/json.hpp"
#include "tests/testing/dispatchd_process.h"

namespace dispatchd {
namespace bench {
namespace {

absl::Status WriteWhole(const std::string& path, const std::string& content) {
  const int fd = open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return absl::InternalError(absl::StrCat("cannot create ", path));
  const bool ok = write(fd, content.data(), content.size()) == static_cast<ssize_t>(content.size());
  if (close(fd) != 0 || !ok) return absl::InternalError(absl::StrCat("cannot write ", path));
  return absl::OkStatus();
}

// The files, and the containers whose labels subscribe to every Nth.
absl::StatusOr<std::vector<agent::ContainerInfo>> MakeBacklog(const BacklogBenchOptions& o,
                                                              const std::string& events,
                                                              int64_t* subscribed) {
  std::vector<agent::ContainerInfo> containers(std::max(1, o.containers));
  for (size_t c = 0; c < containers.size(); ++c) {
    containers[c].id = absl::StrFormat("%064x", c + 1);
    containers[c].name = absl::StrFormat("handler-%03d", c);
  }
  if (mkdir(events.c_str(), 0755) != 0) {
    return absl::InternalError(absl::StrCat("cannot create ", events));
  }
  const int directories = std::max(1, o.directories);
  for (int d = 0; d < directories; ++d) {
    const std::string dir = absl::StrFormat("%s/d%03d", events, d);
    if (mkdir(dir.c_str(), 0755) != 0) {
      return absl::InternalError(absl::StrCat("cannot create ", dir));
    }
  }
  std::string content(static_cast<size_t>(std::max<int64_t>(0, o.payload_bytes)), 'x');
  *subscribed = 0;
  for (int64_t i = 0; i < o.files; ++i) {
    const std::string dir = absl::StrFormat("d%03d", i % directories);
    const std::string name = absl::StrFormat("f%07d", i);
    const std::string stamp = absl::StrCat(i, "\n");
    std::copy(stamp.begin(), stamp.begin() + std::min(stamp.size(), content.size()),
              content.begin());
    if (absl::Status s = WriteWhole(absl::StrCat(events, "/", dir, "/", name), content); !s.ok()) {
      return s;
    }
    if (o.subscribed_every > 0 && i % o.subscribed_every == 0) {
      agent::ContainerInfo& c = containers[*subscribed % containers.size()];
      c.labels[absl::StrCat("subscription.", dir, ".", name, ".container.command")] = "true";
      ++*subscribed;
    }
  }
  return containers;
}

}  // namespace

absl::StatusOr<BacklogResult> RunBacklogBenchmark(const BacklogBenchOptions& o) {
  LogLevel level;
  if (!ParseLogLevel(o.log_level, &level)) {
    return absl::InvalidArgumentError(absl::StrCat("unknown log level ", o.log_level));
  }
  SetMinLogLevel(level);
  BacklogResult r;
  r.files = o.files;
  r.payload_bytes = o.payload_bytes;
  const std::string events = absl::StrCat(o.work_dir, "/backlog-events");

  absl::Time t = absl::Now();
  absl::StatusOr<std::vector<agent::ContainerInfo>> containers =
      MakeBacklog(o, events, &r.subscribed);
  if (!containers.ok()) {
    testing::RemoveTree(events);
    return containers.status();
  }
  r.create_seconds = absl::ToDoubleSeconds(absl::Now() - t);

  const pid_t self = getpid();
  r.rss_start_kib = ResidentKib(self);
  r.heap_start_bytes = HeapAllocatedBytes();
  r.rss_peak_reset = ResetPeakResident();
  int64_t rss_sampled = r.rss_start_kib;
  r.heap_peak_bytes = r.heap_start_bytes;

  // As `dispatchd all-in-one` wires them (cmd/dispatchd/main.cc), without
  // the metrics and the API.
  InstantDockerApi docker(*std::move(containers));
  auto dispatcher =
      std::make_unique<controller::Dispatcher>(controller::DispatcherOptions(), Clock::Real());
  dispatcher->Start();
  controller::SessionService service(dispatcher.get(), controller::SessionServiceOptions());
  grpc::ServerBuilder builder;
  builder.RegisterService(&service);
  std::unique_ptr<grpc::Server> server = builder.BuildAndStart();
  if (server == nullptr) return absl::InternalError("cannot start the in-process gRPC server");
  agent::AgentOptions agent_options;
  agent_options.agent_id = "backlog";
  agent_options.host = "backlog";
  agent_options.events_dir = events;
  auto agent = std::make_unique<agent::Agent>(agent_options, &docker, Clock::Real(),
                                              server->InProcessChannel(grpc::ChannelArguments()));

  const absl::Time start = absl::Now();
  absl::Status status = agent->Start();
  while (status.ok()) {
    const controller::DispatcherStats stats = dispatcher->stats();
    const uint64_t settled = stats.events_settled_delivered + stats.events_settled_no_subscribers +
                             stats.events_settled_dead_letter;
    const int64_t unsettled = static_cast<int64_t>(agent->unsettled());
    r.peak_agent_unsettled = std::max(r.peak_agent_unsettled, unsettled);
    r.peak_controller_in_flight =
        std::max(r.peak_controller_in_flight, static_cast<int64_t>(stats.events_in_flight));
    rss_sampled = std::max(rss_sampled, ResidentKib(self));
    r.heap_peak_bytes = std::max(r.heap_peak_bytes, HeapAllocatedBytes());
    if (static_cast<int64_t>(settled) >= o.files && unsettled == 0) break;
    if (absl::Now() - start > o.timeout) {
      status = absl::DeadlineExceededError(
          absl::StrCat("backlog not drained after ", absl::FormatDuration(o.timeout), ": ", settled,
                       " of ", o.files, " events settled, ", unsettled, " files unsettled"));
      break;
    }
    absl::SleepFor(o.sample_period);
  }
  r.drain_seconds = absl::ToDoubleSeconds(absl::Now() - start);
  r.rss_peak_kib = r.rss_peak_reset ? std::max(PeakResidentKib(self), rss_sampled) : rss_sampled;
  r.execs = static_cast<int64_t>(docker.execs_started());

  agent->Stop();
  server->Shutdown(std::chrono::system_clock::now() + std::chrono::seconds(2));
  dispatcher->Stop();
  agent.reset();
  server.reset();
  dispatcher.reset();
  r.files_left = static_cast<int64_t>(CountFiles(events));
  testing::RemoveTree(events);
  if (!status.ok()) return status;
  return r;
}

absl::StatusOr<BacklogResult> RunBacklogBenchmarkProcess(const std::string& binary,
                                                         const BacklogBenchOptions& o,
                                                         const std::string& log_path) {
  const std::string command = absl::StrFormat(
      "'%s' --files=%d --directories=%d --payload-bytes=%d --subscribed-every=%d "
      "--containers=%d --log-level=%s --work-dir='%s' 2>'%s'",
      binary, o.files, o.directories, o.payload_bytes, o.subscribed_every, o.containers,
      o.log_level, o.work_dir, log_path);
  FILE* child = popen(command.c_str(), "r");
  if (child == nullptr) return absl::InternalError(absl::StrCat("cannot run ", binary));
  std::string out;
  char buffer[4096];
  while (size_t n = fread(buffer, 1, sizeof(buffer), child)) out.append(buffer, n);
  const int status = pclose(child);
  if (status != 0) {
    std::string log = testing::ReadFile(log_path);
    if (log.size() > 2000) log = log.substr(log.size() - 2000);
    return absl::InternalError(
        absl::StrCat(binary, " failed (status ", status, "); the end of its log:\n", log));
  }
  return BacklogResultFromJson(out);
}

std::string BacklogResultToJson(const BacklogResult& r) {
  nlohmann::ordered_json j = {
      {"files", r.files},
      {"subscribed", r.subscribed},
      {"payload_bytes", r.payload_bytes},
      {"execs", r.execs},
      {"files_left", r.files_left},
      {"create_seconds", r.create_seconds},
      {"drain_seconds", r.drain_seconds},
      {"rss_start_kib", r.rss_start_kib},
      {"rss_peak_kib", r.rss_peak_kib},
      {"rss_peak_reset", r.rss_peak_reset},
      {"heap_start_bytes", r.heap_start_bytes},
      {"heap_peak_bytes", r.heap_peak_bytes},
      {"peak_agent_unsettled", r.peak_agent_unsettled},
      {"peak_controller_in_flight", r.peak_controller_in_flight},
  };
  return j.dump();
}

absl::StatusOr<BacklogResult> BacklogResultFromJson(const std::string& text) {
  const nlohmann::json j = nlohmann::json::parse(text, nullptr, /*allow_exceptions=*/false);
  if (j.is_discarded() || !j.is_object()) {
    return absl::InvalidArgumentError(absl::StrCat("not a backlog result: ", text));
  }
  BacklogResult r;
  try {
    r.files = j.at("files");
    r.subscribed = j.at("subscribed");
    r.payload_bytes = j.at("payload_bytes");
    r.execs = j.at("execs");
    r.files_left = j.at("files_left");
    r.create_seconds = j.at("create_seconds");
    r.drain_seconds = j.at("drain_seconds");
    r.rss_start_kib = j.at("rss_start_kib");
    r.rss_peak_kib = j.at("rss_peak_kib");
    r.rss_peak_reset = j.at("rss_peak_reset");
    r.heap_start_bytes = j.at("heap_start_bytes");
    r.heap_peak_bytes = j.at("heap_peak_bytes");
    r.peak_agent_unsettled = j.at("peak_agent_unsettled");
    r.peak_controller_in_flight = j.at("peak_controller_in_flight");
  } catch (const nlohmann::json::exception& e) {
    return absl::InvalidArgumentError(
        absl::StrCat("not a backlog result (", e.what(), "): ", text));
  }
  return r;
}

std::string BacklogResultsMarkdown(const std::vector<BacklogResult>& results) {
  if (results.empty()) return "";
  std::string out = absl::StrFormat(
      "### 7. Backlog at start (agent and controller in one process, instant Docker; %d-byte "
      "files)\n\n"
      "| files (with a subscriber) | drain | events/s | peak RSS (VmHWM) | RSS before | peak heap "
      "over the start | most unsettled: agent / controller | heap per file unsettled in the "
      "agent | files left |\n"
      "|---|---|---|---|---|---|---|---|---|\n",
      results.front().payload_bytes);
  for (const BacklogResult& r : results) {
    const double heap = static_cast<double>(r.heap_peak_bytes - r.heap_start_bytes);
    absl::StrAppend(
        &out, absl::StrFormat(
                  "| %d (%d) | %.2f s | %.0f | %.1f MiB | %.1f MiB | %.1f MiB | %d / %d | "
                  "%.0f B | %d |\n",
                  r.files, r.subscribed, r.drain_seconds, r.events_per_second(),
                  r.rss_peak_kib / 1024.0, r.rss_start_kib / 1024.0, heap / 1048576.0,
                  r.peak_agent_unsettled, r.peak_controller_in_flight,
                  r.peak_agent_unsettled > 0 ? heap / r.peak_agent_unsettled : 0.0, r.files_left));
  }
  absl::StrAppend(&out,
                  "\nThe agent reads files ahead of their settling without a bound, so the peak "
                  "follows how far it got (most unsettled), not the backlog's size alone.\n\n");
  return out;
}

}  // namespace bench
}  // namespace dispatchd
