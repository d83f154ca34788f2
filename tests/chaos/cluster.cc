#include "tests/chaos/cluster.h"

#include <dirent.h>
#include <signal.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <sstream>
#include <utility>

#include "absl/strings/escaping.h"
#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "absl/strings/str_split.h"
#include "absl/time/clock.h"
#include "nlohmann/json.hpp"

namespace dispatchd::chaos {
namespace {

namespace fs = std::filesystem;
using testing::DispatchdProcess;
using testing::PrivateDockerd;

constexpr char kToken[] = "chaos-token";

std::vector<std::string> Lines(const std::string& path) {
  std::vector<std::string> lines;
  std::ifstream in(path);
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) lines.push_back(line);
  }
  return lines;
}

// kill -9 and reap.
void KillNow(std::unique_ptr<DispatchdProcess>& process) {
  if (process == nullptr) return;
  kill(process->pid(), SIGKILL);
  process.reset();  // reaps
}

}  // namespace

std::string EventId(int dir, int name) { return absl::StrCat("d", dir, ".e", name); }
std::string EventPath(int dir, int name) { return absl::StrCat("d", dir, "/e", name); }

absl::StatusOr<std::unique_ptr<ChaosCluster>> ChaosCluster::Start(const std::string& dir,
                                                                  ClusterOptions options) {
  if (options.all_in_one) options.hosts = 1;
  std::unique_ptr<ChaosCluster> cluster(new ChaosCluster(dir, options));
  fs::create_directories(dir + "/results");
  fs::create_directories(dir + "/logs");
  chmod((dir + "/results").c_str(), 0777);

  if (options.forward) {
    cluster->receiver_port_ = testing::FreePort();
    if (absl::Status up = cluster->ReceiverUp(); !up.ok()) return up;
  }

  std::vector<std::string> all_ids;
  std::vector<std::string> low_ids, high_ids;
  for (int d = 0; d < kDirs; ++d) {
    for (int n = 0; n < kNames; ++n) {
      all_ids.push_back(EventId(d, n));
      (d < kDirs / 2 ? low_ids : high_ids).push_back(EventId(d, n));
    }
  }
  for (int h = 0; h < options.hosts; ++h) {
    Host host;
    host.name = absl::StrCat("host-", h);
    auto docker = PrivateDockerd::Start();
    if (!docker.ok()) return docker.status();
    host.docker = *std::move(docker);
    if (absl::Status s = host.docker->EnsureBusyboxImage(); !s.ok()) return s;
    host.events = absl::StrCat(dir, "/events-", h);
    fs::create_directories(host.events);
    cluster->hosts_.push_back(std::move(host));
  }
  for (int h = 0; h < options.hosts; ++h) {
    Host& host = cluster->hosts_[h];
    absl::Status s = cluster->RunHandler(host, absl::StrCat("plain-", h), all_ids, {}, false,
                                         "always");
    if (s.ok() && options.debounced) {
      std::vector<std::string> labels;
      for (const std::string& id : low_ids) {
        labels.push_back(
            absl::StrCat("subscription.", id, ".dispatching.debounce=", options.debounce_ms));
      }
      s = cluster->RunHandler(host, absl::StrCat("debounced-", h), low_ids, labels, false,
                              "always");
      cluster->debounced_.insert(absl::StrCat("debounced-", h));
    }
    if (s.ok() && options.starter) {
      std::vector<std::string> labels;
      for (const std::string& id : high_ids) {
        labels.push_back(absl::StrCat("subscription.", id, ".container.start=true"));
      }
      s = cluster->RunHandler(host, absl::StrCat("starter-", h), high_ids, labels, false, "no");
    }
    if (s.ok() && options.churn && h == 0) {
      s = cluster->RunHandler(host, "churn-0", {EventId(0, 0), EventId(9, 19)}, {}, false,
                              "always");
      cluster->handler_ids_.erase("churn-0");  // not a lasting handler
    }
    if (!s.ok()) return s;
  }
  if (!options.all_in_one) {
    cluster->controller_address_ = absl::StrCat("127.0.0.1:", testing::FreePort());
    if (absl::Status s = cluster->StartController(); !s.ok()) return s;
  }
  for (Host& host : cluster->hosts_) {
    if (absl::Status s = cluster->StartDispatchd(host); !s.ok()) return s;
  }
  return cluster;
}

ChaosCluster::~ChaosCluster() {
  for (Host& host : hosts_) {
    if (host.agent != nullptr && host.agent->Running()) host.agent->Terminate().IgnoreError();
  }
  if (controller_ != nullptr && controller_->Running()) controller_->Terminate().IgnoreError();
  if (receiver_ != nullptr) receiver_->Stop();
  for (Host& host : hosts_) host.docker.reset();
}

absl::Status ChaosCluster::RunHandler(Host& host, const std::string& name,
                                      const std::vector<std::string>& ids,
                                      const std::vector<std::string>& extra_labels, bool start,
                                      const std::string& restart) {
  std::vector<std::string> args = {"run",  "-d",     "--network", "none", "--name", name,
                                   "--restart", restart, "-v", absl::StrCat(dir_, "/results:/results")};
  const std::string command =
      absl::StrCat("sh -c 'echo \"$DISPATCH_EVENT_PAYLOAD\" >> /results/", name,
                   ".log; sleep ", options_.handler_sleep, "'");
  for (const std::string& id : ids) {
    args.push_back("--label");
    args.push_back(absl::StrCat("subscription.", id, ".container.command=", command));
  }
  for (const std::string& label : extra_labels) {
    args.push_back("--label");
    args.push_back(label);
  }
  args.push_back(PrivateDockerd::kBusyboxImage);
  args.push_back("sleep");
  args.push_back("86400");
  (void)start;
  absl::StatusOr<std::string> out = host.docker->Docker(args);
  if (!out.ok()) return out.status();
  handler_ids_[name] = ids;
  return absl::OkStatus();
}

absl::Status ChaosCluster::StartController() {
  controller_args_ = {"controller", "--listen", controller_address_, "--token", kToken,
                      "--heartbeat", "1s", "--log-level", options_.log_level};
  if (options_.forward) {
    controller_args_.push_back("--forward-destination");
    controller_args_.push_back(absl::StrCat("http://127.0.0.1:", receiver_port_, "/events"));
  }
  auto process = DispatchdProcess::Start(
      controller_args_, absl::StrCat(dir_, "/logs/controller.", restarts_++, ".log"));
  if (!process.ok()) return process.status();
  controller_ = *std::move(process);
  return absl::OkStatus();
}

absl::Status ChaosCluster::StartDispatchd(Host& host) {
  if (host.agent_args.empty()) {
    const std::string workers = absl::StrCat(options_.exec_workers);
    if (options_.all_in_one) {
      host.agent_args = {"all-in-one", "--listen=", "--events-dir", host.events, "--docker-host",
                         host.docker->host(), "--exec-workers", workers, "--log-level",
                         options_.log_level};
      if (options_.forward) {
        host.agent_args.push_back("--forward-destination");
        host.agent_args.push_back(absl::StrCat("http://127.0.0.1:", receiver_port_, "/events"));
      }
    } else {
      host.agent_args = {"agent", "--controller", controller_address_, "--token", kToken,
                         "--agent-id", host.name, "--events-dir", host.events, "--docker-host",
                         host.docker->host(), "--exec-workers", workers, "--log-level",
                         options_.log_level};
    }
  }
  auto process = DispatchdProcess::Start(
      host.agent_args, absl::StrCat(dir_, "/logs/", host.name, ".", restarts_++, ".log"));
  if (!process.ok()) return process.status();
  host.agent = *std::move(process);
  return absl::OkStatus();
}

absl::Status ChaosCluster::KillController(absl::Duration pause) {
  if (options_.all_in_one) return absl::FailedPreconditionError("all-in-one has no controller");
  KillNow(controller_);
  absl::SleepFor(pause);
  return StartController();
}

absl::Status ChaosCluster::KillAgent(int host, absl::Duration pause) {
  KillNow(hosts_[host].agent);
  absl::SleepFor(pause);
  return StartDispatchd(hosts_[host]);
}

absl::Status ChaosCluster::KillAllInOne(absl::Duration pause) { return KillAgent(0, pause); }

absl::Status ChaosCluster::RestartDockerd(int host) { return hosts_[host].docker->Restart(); }

absl::Status ChaosCluster::RecreateChurn(const std::vector<std::string>& ids) {
  Host& host = hosts_[0];
  absl::StatusOr<std::string> removed = host.docker->Docker({"rm", "-f", "churn-0"});
  if (!removed.ok()) return removed.status();
  absl::Status s = RunHandler(host, "churn-0", ids, {}, false, "always");
  handler_ids_.erase("churn-0");
  return s;
}

absl::Status ChaosCluster::StopStarter(int host) {
  return hosts_[host]
      .docker->Docker({"stop", "-t", "0", absl::StrCat("starter-", host)})
      .status();
}

void ChaosCluster::ReceiverDown() {
  if (receiver_ != nullptr) receiver_->Stop();
  receiver_.reset();
}

absl::Status ChaosCluster::ReceiverUp() {
  HttpHandler record = [this](const HttpRequest& request) {
    nlohmann::json event = nlohmann::json::parse(request.body, nullptr, false);
    std::string payload;
    if (event.is_object() && event.contains("payload") && event["payload"].is_string()) {
      payload = event["payload"].get<std::string>();
      if (event.value("payload_encoding", "") == "base64") {
        std::string decoded;
        absl::Base64Unescape(payload, &decoded);
        payload = decoded;
      }
    }
    absl::MutexLock lock(&forwarded_mu_);
    forwarded_.push_back(payload);
    return HttpResponse{200, "text/plain", "ok"};
  };
  absl::StatusOr<std::unique_ptr<HttpServer>> server;
  // The port may linger a moment after the previous server closed it.
  for (int attempt = 0; attempt < 100; ++attempt) {
    server = HttpServer::Start(absl::StrCat("127.0.0.1:", receiver_port_),
                               {{"POST /events", record}});
    if (server.ok()) break;
    absl::SleepFor(absl::Milliseconds(100));
  }
  if (!server.ok()) {
    absl::StatusOr<std::string> holders =
        testing::RunCommand({"ss", "-tanp", absl::StrCat("( sport = :", receiver_port_, " )")});
    return absl::UnavailableError(absl::StrCat(server.status().message(), "; held by:\n",
                                               holders.ok() ? *holders : ""));
  }
  receiver_ = *std::move(server);
  return absl::OkStatus();
}

std::map<std::string, std::vector<std::string>> ChaosCluster::Runs() const {
  std::map<std::string, std::vector<std::string>> runs;
  for (const auto& entry : fs::directory_iterator(dir_ + "/results")) {
    const std::string name = entry.path().filename().string();
    if (!absl::EndsWith(name, ".log")) continue;
    runs[name.substr(0, name.size() - 4)] = Lines(entry.path().string());
  }
  return runs;
}

std::vector<std::string> ChaosCluster::Forwarded() const {
  absl::MutexLock lock(&forwarded_mu_);
  return forwarded_;
}

std::vector<std::string> ChaosCluster::Unsettled() const {
  // Files come and go while this walks: errors only skip.
  std::vector<std::string> files;
  for (int h = 0; h < hosts(); ++h) {
    const std::string root = hosts_[h].events;
    std::error_code error;
    auto it = fs::recursive_directory_iterator(root, error);
    for (; !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
      const std::string name = it->path().filename().string();
      std::error_code type_error;
      if (!name.empty() && name[0] == '.') {
        if (it->is_directory(type_error)) it.disable_recursion_pending();
        continue;
      }
      if (it->is_regular_file(type_error)) {
        files.push_back(absl::StrCat(h, ":", it->path().string().substr(root.size() + 1)));
      }
    }
  }
  return files;
}

std::map<std::pair<int, std::string>, std::string> ChaosCluster::DeadLetters() const {
  std::map<std::pair<int, std::string>, std::string> letters;
  for (int h = 0; h < hosts(); ++h) {
    const fs::path root = fs::path(hosts_[h].events) / ".dead-letter";
    std::error_code error;
    auto it = fs::recursive_directory_iterator(root, error);
    for (; !error && it != fs::recursive_directory_iterator(); it.increment(error)) {
      const fs::directory_entry& entry = *it;
      std::error_code type_error;
      if (!entry.is_regular_file(type_error)) continue;
      const std::string rel = entry.path().string().substr(root.string().size() + 1);
      if (absl::EndsWith(rel, ".error.json")) continue;
      std::string note;
      std::ifstream in(entry.path().string() + ".error.json");
      if (in) note.assign(std::istreambuf_iterator<char>(in), {});
      letters[{h, rel}] = note;
    }
  }
  return letters;
}

std::set<std::string> ChaosCluster::DeadLetteredPayloads() const {
  std::set<std::string> payloads;
  for (const auto& [where, note] : DeadLetters()) {
    std::ifstream in(fs::path(hosts_[where.first].events) / ".dead-letter" / where.second);
    payloads.insert(std::string(std::istreambuf_iterator<char>(in), {}));
  }
  return payloads;
}

std::string ChaosCluster::Logs() const {
  std::string out;
  for (const auto& entry : fs::directory_iterator(dir_ + "/logs")) {
    std::ifstream in(entry.path());
    std::string log(std::istreambuf_iterator<char>(in), {});
    if (log.size() > 20000) log = "...\n" + log.substr(log.size() - 20000);
    absl::StrAppend(&out, "---- ", entry.path().filename().string(), " ----\n", log);
  }
  return out;
}

std::vector<std::string> ChaosCluster::LastingHandlers() const {
  std::vector<std::string> names;
  for (const auto& [name, ids] : handler_ids_) names.push_back(name);
  return names;
}

std::vector<std::string> ChaosCluster::IdsOf(const std::string& handler) const {
  auto it = handler_ids_.find(handler);
  return it == handler_ids_.end() ? std::vector<std::string>{} : it->second;
}

bool ChaosCluster::IsDebounced(const std::string& handler) const {
  return debounced_.count(handler) != 0;
}

}  // namespace dispatchd::chaos
