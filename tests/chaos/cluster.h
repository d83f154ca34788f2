// ChaosCluster: dispatchd as users run it, on private dockerds, with handler
// containers that record every run, and the means to hurt it: kill -9 of
// the controller, of an agent, of an all-in-one dispatchd; a dockerd
// restart; a handler removed and recreated with other labels; a stopped
// `container.start` subscriber; a forwarding receiver that goes away.
//
// Handlers append the payload of each event they run to
// <dir>/results/<container>.log (one line per run, written with O_APPEND by
// `sh -c 'echo ... >> ...'`), so a run is counted whatever happens to
// dispatchd. Event ids are `d<k>.e<j>`: files d<k>/e<j> in an events
// directory (kDirs x kNames ids), so the handlers' labels can name them all.
//
// Thread-compatible: one thread drives it; events may be written to
// events_dir(h) from other threads.
#ifndef DISPATCHD_TESTS_CHAOS_CLUSTER_H_
#define DISPATCHD_TESTS_CHAOS_CLUSTER_H_

#include <map>
#include <memory>
#include <set>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/status/statusor.h"
#include "absl/synchronization/mutex.h"
#include "common/http_server.h"
#include "tests/testing/dispatchd_process.h"
#include "tests/testing/docker_daemon.h"

namespace dispatchd::chaos {

inline constexpr int kDirs = 10;
inline constexpr int kNames = 20;
// "d<k>.e<j>" and its relative path "d<k>/e<j>".
std::string EventId(int dir, int name);
std::string EventPath(int dir, int name);

struct ClusterOptions {
  // One host running `dispatchd all-in-one`, or a controller and one agent
  // per host.
  bool all_in_one = true;
  int hosts = 1;
  int exec_workers = 8;
  // Handlers on every host: `plain` (every id), `debounced` (dirs 0-4,
  // debounce `debounce`), `starter` (dirs 5-9, container.start=true, not
  // restarted by Docker). `churn` on host 0 only, on a few ids, when
  // `churn` is set. Each handler's command also sleeps `handler_sleep`.
  bool debounced = true;
  bool starter = true;
  bool churn = true;
  int debounce_ms = 300;
  std::string handler_sleep = "0";
  // Forward every event to a receiver of the cluster's own.
  bool forward = true;
  std::string log_level = "info";
};

class ChaosCluster {
 public:
  // Starts the dockerds, the handlers, the receiver and dispatchd. `dir` is
  // the working directory (created; events, results, logs live there).
  static absl::StatusOr<std::unique_ptr<ChaosCluster>> Start(const std::string& dir,
                                                             ClusterOptions options);
  ~ChaosCluster();  // stops everything it started

  int hosts() const { return static_cast<int>(hosts_.size()); }
  const std::string& events_dir(int host) const { return hosts_[host].events; }
  const std::string& dir() const { return dir_; }
  const ClusterOptions& options() const { return options_; }

  // kill -9, then start again after `pause` on the same address.
  absl::Status KillController(absl::Duration pause);
  absl::Status KillAgent(int host, absl::Duration pause);
  absl::Status KillAllInOne(absl::Duration pause);
  // Stops dockerd (SIGTERM) and starts it again; handlers come back by their
  // restart policy.
  absl::Status RestartDockerd(int host);
  // Removes churn-0 and runs it again with labels for `ids`.
  absl::Status RecreateChurn(const std::vector<std::string>& ids);
  // docker stop of starter-<host>: the next event starts it.
  absl::Status StopStarter(int host);
  // The receiver stops answering (its port closes) / comes back on the same
  // port.
  void ReceiverDown();
  absl::Status ReceiverUp();

  // Every run recorded by each handler container: name -> payloads in order.
  std::map<std::string, std::vector<std::string>> Runs() const;
  // Payloads the receiver got (base64-decoded), with repeats.
  std::vector<std::string> Forwarded() const;
  // Visible event files still in the events directories (not settled).
  std::vector<std::string> Unsettled() const;
  // Dead letters: (host, relative path) -> their .error.json (empty if none).
  std::map<std::pair<int, std::string>, std::string> DeadLetters() const;
  // Payloads of the dead-lettered files.
  std::set<std::string> DeadLetteredPayloads() const;
  // The logs of dispatchd's processes (for a failure's report).
  std::string Logs() const;

  // The handler containers that exist from start to end.
  std::vector<std::string> LastingHandlers() const;
  // The ids a handler subscribes to (lasting handlers).
  std::vector<std::string> IdsOf(const std::string& handler) const;
  bool IsDebounced(const std::string& handler) const;

 private:
  struct Host {
    std::string name;
    std::unique_ptr<testing::PrivateDockerd> docker;
    std::string events;
    std::unique_ptr<testing::DispatchdProcess> agent;  // or all-in-one
    std::vector<std::string> agent_args;
  };

  ChaosCluster(std::string dir, ClusterOptions options)
      : dir_(std::move(dir)), options_(std::move(options)) {}
  absl::Status RunHandler(Host& host, const std::string& name, const std::vector<std::string>& ids,
                          const std::vector<std::string>& extra_labels, bool start,
                          const std::string& restart);
  absl::Status StartDispatchd(Host& host);
  absl::Status StartController();

  const std::string dir_;
  const ClusterOptions options_;
  std::vector<Host> hosts_;
  std::string controller_address_;
  std::vector<std::string> controller_args_;
  std::unique_ptr<testing::DispatchdProcess> controller_;
  int restarts_ = 0;  // log file names

  int receiver_port_ = 0;
  std::unique_ptr<HttpServer> receiver_;
  mutable absl::Mutex forwarded_mu_;
  std::vector<std::string> forwarded_ ABSL_GUARDED_BY(forwarded_mu_);
  std::map<std::string, std::vector<std::string>> handler_ids_;
  std::set<std::string> debounced_;
};

}  // namespace dispatchd::chaos

#endif  // DISPATCHD_TESTS_CHAOS_CLUSTER_H_
