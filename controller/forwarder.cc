#include "controller/forwarder.h"

#include <atomic>
#include <set>
#include <utility>

#include "absl/strings/str_cat.h"
#include "common/logging.h"
#include "controller/forward_dead_letter.h"
#include "sinks/broadcaster.h"
#include "sinks/http_sink.h"
#include "sinks/queue.h"
#include "sinks/retrying_sink.h"

namespace dispatchd {
namespace controller {
namespace {

// Sits in front of a destination: counts its successes and failures and logs
// when it starts failing and when it recovers. Forwards Close.
class MeteredSink final : public sinks::Sink {
 public:
  MeteredSink(std::string name, std::shared_ptr<sinks::Sink> dst)
      : name_(std::move(name)), dst_(std::move(dst)) {}

  absl::Status Write(sinks::EventPtr event) override {
    absl::Status status = dst_->Write(event);
    if (status.ok()) {
      sent_.fetch_add(1, std::memory_order_relaxed);
      if (const uint64_t failures = failing_.exchange(0); failures > 0) {
        LOG(INFO) << "forwarding to " << name_ << " works again after " << failures
                  << " failed attempts";
      }
    } else if (event != nullptr && !sinks::IsClosed(status)) {
      failed_.fetch_add(1, std::memory_order_relaxed);
      const uint64_t failures = failing_.fetch_add(1) + 1;
      LOG(WARNING) << "forwarding " << event->id << " to " << name_ << " failed (attempt "
                   << failures
                   << "): " << status.ToString(absl::StatusToStringMode::kWithNoExtraData);
    }
    return status;
  }

  absl::Status Close() override { return dst_->Close(); }

  uint64_t sent() const { return sent_.load(std::memory_order_relaxed); }
  uint64_t failed() const { return failed_.load(std::memory_order_relaxed); }

 private:
  const std::string name_;
  const std::shared_ptr<sinks::Sink> dst_;
  std::atomic<uint64_t> sent_{0};
  std::atomic<uint64_t> failed_{0};
  std::atomic<uint64_t> failing_{0};  // consecutive failures
};

// Records the events a destination rejected for good, from its queue's
// dead-letter hook (on the queue's worker, right after the RetryingSink gave
// up, so `budget` still counts that event's attempts).
class DeadLetters {
 public:
  DeadLetters(std::string destination, std::string dir, std::string file, const Clock* clock,
              std::shared_ptr<sinks::PermanentErrorBudget> budget)
      : destination_(std::move(destination)),
        dir_(std::move(dir)),
        file_(std::move(file)),
        clock_(clock),
        budget_(std::move(budget)) {}

  void Record(const sinks::Event& event, const absl::Status& reason) {
    const int attempts = budget_->attempts();
    const std::string line =
        ForwardDeadLetterLine(event, destination_, attempts, reason, clock_->Now());
    if (dir_.empty()) {
      recorded_.fetch_add(1, std::memory_order_relaxed);
      LOG(ERROR) << "forwarding to " << destination_ << ": event " << event.id << " (" << event.path
                 << ") rejected " << attempts << " times, given up: " << line;
      return;
    }
    if (absl::Status status = AppendForwardDeadLetter(dir_, file_, line); !status.ok()) {
      LOG(ERROR) << "forwarding to " << destination_ << ": event " << event.id << " (" << event.path
                 << ") rejected " << attempts
                 << " times, and the dead-letter file cannot be written (" << status
                 << "); dropped: " << line;
      return;
    }
    recorded_.fetch_add(1, std::memory_order_relaxed);
    LOG(WARNING) << "forwarding to " << destination_ << ": event " << event.id << " (" << event.path
                 << ") rejected " << attempts << " times (" << reason.message() << "), appended to "
                 << path();
  }

  std::string path() const { return dir_.empty() ? file_ : absl::StrCat(dir_, "/", file_); }
  uint64_t recorded() const { return recorded_.load(std::memory_order_relaxed); }

 private:
  const std::string destination_;
  const std::string dir_;
  const std::string file_;
  const Clock* const clock_;
  const std::shared_ptr<sinks::PermanentErrorBudget> budget_;
  std::atomic<uint64_t> recorded_{0};
};

}  // namespace

struct Forwarder::Pipeline {
  std::string name;
  std::shared_ptr<MeteredSink> metered;
  std::shared_ptr<DeadLetters> dead_letters;
  std::shared_ptr<sinks::Queue> queue;
};

absl::StatusOr<std::unique_ptr<Forwarder>> Forwarder::Create(
    const std::vector<std::string>& destinations, ForwarderOptions options) {
  if (options.queue_size == 0) {
    return absl::InvalidArgumentError("the forwarding queue size must be positive");
  }
  if (options.max_rejected_attempts <= 0) {
    return absl::InvalidArgumentError("the forwarding attempts must be positive");
  }
  const Clock* clock = options.clock != nullptr ? options.clock : Clock::Real();
  auto make_sink = options.make_sink;
  if (!make_sink) {
    make_sink = [destination = options.destination](const ForwardDestination& d) {
      return NewDestinationSink(d, destination);
    };
  }
  // Parse everything before starting anything.
  std::vector<ForwardDestination> parsed;
  std::set<std::string> seen;
  for (const std::string& uri : destinations) {
    absl::StatusOr<ForwardDestination> destination = ParseForwardDestination(uri);
    if (!destination.ok()) return destination.status();
    if (!seen.insert(uri).second) {
      return absl::InvalidArgumentError(
          absl::StrCat("forwarding destination '", uri, "' is listed twice"));
    }
    parsed.push_back(*std::move(destination));
  }
  std::vector<std::shared_ptr<sinks::Sink>> sinks;
  for (const ForwardDestination& destination : parsed) {
    absl::StatusOr<std::shared_ptr<sinks::Sink>> sink = make_sink(destination);
    if (!sink.ok()) {
      return absl::InvalidArgumentError(absl::StrCat("forwarding destination '", destination.uri,
                                                     "': ", sink.status().message()));
    }
    sinks.push_back(*std::move(sink));
  }

  std::vector<std::string> uris;
  for (const ForwardDestination& destination : parsed) uris.push_back(destination.uri);
  const std::vector<std::string> dead_letter_files = ForwardDeadLetterFileNames(uris);

  std::vector<std::unique_ptr<Pipeline>> pipelines;
  std::vector<std::shared_ptr<sinks::Sink>> members;
  for (size_t i = 0; i < parsed.size(); ++i) {
    auto pipeline = std::make_unique<Pipeline>();
    pipeline->name = parsed[i].uri;
    pipeline->metered = std::make_shared<MeteredSink>(pipeline->name, sinks[i]);
    auto budget = std::make_shared<sinks::PermanentErrorBudget>(
        std::make_shared<sinks::ExponentialBackoff>(sinks::ExponentialBackoffOptions{
            .base = absl::ZeroDuration(),
            .factor = options.retry_min_backoff,
            .max = options.retry_max_backoff,
            .random = options.random,
        }),
        options.max_rejected_attempts, &sinks::IsPermanentRejection);
    pipeline->dead_letters = std::make_shared<DeadLetters>(pipeline->name, options.dead_letter_dir,
                                                           dead_letter_files[i], clock, budget);
    auto retrying = std::make_shared<sinks::RetryingSink>(pipeline->metered, std::move(budget),
                                                          sinks::RetryingSinkOptions{clock});
    const std::string name = pipeline->name;
    pipeline->queue = std::make_shared<sinks::Queue>(
        retrying, sinks::QueueOptions{
                      .capacity = options.queue_size,
                      .policy = sinks::OverflowPolicy::kDropOldest,
                      .dead_letter =
                          [name, dead_letters = pipeline->dead_letters](
                              const sinks::EventPtr& event, const absl::Status& reason) {
                            // Given up after its attempts: to the dead-letter file.
                            if (sinks::IsPermanentRejection(reason)) {
                              dead_letters->Record(*event, reason);
                              return;
                            }
                            LOG(WARNING) << "forwarding to " << name << ": dropped event "
                                         << event->id << " (" << event->path
                                         << "): " << reason;
                          },
                      .clock = clock,
                  });
    members.push_back(pipeline->queue);
    if (parsed[i].kind == ForwardDestination::Kind::kHttp) {
      LOG(INFO) << "forwarding events to " << parsed[i].uri << " (queue of " << options.queue_size
                << "; events it rejects " << options.max_rejected_attempts << " times go to "
                << (options.dead_letter_dir.empty() ? "the log" : pipeline->dead_letters->path())
                << ")";
    } else {
      LOG(INFO) << "forwarding events to " << parsed[i].uri << " (queue of " << options.queue_size
                << ")";
    }
    pipelines.push_back(std::move(pipeline));
  }
  auto broadcaster = std::make_shared<sinks::Broadcaster>(
      std::move(members),
      sinks::BroadcasterOptions{
          .dead_letter = [](const sinks::EventPtr& event, const absl::Status& reason) {
            LOG(WARNING) << "forwarding " << event->id << " failed: " << reason;
          }});
  return std::unique_ptr<Forwarder>(
      new Forwarder(std::move(pipelines), std::move(broadcaster), clock));
}

Forwarder::Forwarder(std::vector<std::unique_ptr<Pipeline>> pipelines,
                     std::shared_ptr<sinks::Sink> broadcaster, const Clock* clock)
    : pipelines_(std::move(pipelines)), broadcaster_(std::move(broadcaster)), clock_(clock) {}

Forwarder::~Forwarder() { Close(clock_->Now() + absl::Seconds(5)).IgnoreError(); }

std::vector<ForwardDestinationStats> Forwarder::stats() const {
  std::vector<ForwardDestinationStats> out;
  for (const auto& pipeline : pipelines_) {
    ForwardDestinationStats s;
    s.destination = pipeline->name;
    s.sent = pipeline->metered->sent();
    s.failed = pipeline->metered->failed();
    // The queue counts every event its hook was given; those recorded in
    // the dead-letter file are not lost.
    s.dead_lettered = pipeline->dead_letters->recorded();
    s.dropped = pipeline->queue->stats().dropped - s.dead_lettered;
    s.queue_depth = pipeline->queue->size();
    s.dead_letter_file = pipeline->dead_letters->path();
    out.push_back(std::move(s));
  }
  return out;
}

absl::Status Forwarder::Close(absl::Time deadline) {
  // Every queue worker keeps delivering while an earlier queue is waited
  // for, so waiting for them one after the other drains them in parallel.
  absl::Status result;
  for (const auto& pipeline : pipelines_) {
    absl::Status status = pipeline->queue->Close(deadline);
    if (!status.ok()) {
      status = absl::Status(status.code(),
                            absl::StrCat("forwarding to ", pipeline->name, ": ", status.message()));
      if (result.ok()) result = status;
    }
  }
  // The queues are closed already; this only marks the broadcaster closed.
  broadcaster_->Close().IgnoreError();
  return result;
}

}  // namespace controller
}  // namespace dispatchd
