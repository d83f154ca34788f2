// A small Prometheus metrics registry in the shape of prometheus-cpp, so that
// library could replace it without touching call sites.
//
//   Registry registry;
//   Family<Counter>& events = BuildCounter()
//                                 .Name("dispatchd_events_total")
//                                 .Help("Events observed.")
//                                 .Register(registry);
//   Counter& created = events.Add({{"kind", "created"}});
//   created.Increment();
//   std::string text = SerializeText(registry);   // text format 0.0.4
//
// Thread-safety: everything here is safe for concurrent use. Counter, Gauge
// and Histogram updates are lock-free (atomics); Family::Add and registering
// a family take a mutex.
//
// Ownership: a Registry owns its families and a Family owns its metrics. The
// references returned by Register/Add stay valid until the Registry is
// destroyed (or, for a metric, until Family::Remove of that metric).
//
// Misuse is a programming error and CHECK-fails: an invalid metric or label
// name, a name or label name starting with "__", a label "le" on a histogram,
// a family name registered twice with a different type or help, a negative
// counter increment, unsorted bucket boundaries.
#ifndef DISPATCHD_COMMON_METRICS_H_
#define DISPATCHD_COMMON_METRICS_H_

#include <atomic>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <utility>
#include <vector>

#include "absl/base/thread_annotations.h"
#include "absl/strings/string_view.h"

namespace dispatchd {

// Label name -> label value. Ordered, so output is stable.
using Labels = std::map<std::string, std::string>;

enum class MetricType { kCounter, kGauge, kHistogram };

namespace metrics_internal {

// A double updated with a compare-and-swap loop (lock-free on x86-64/arm64).
class AtomicDouble {
 public:
  explicit AtomicDouble(double v = 0) : value_(v) {}
  double Load() const { return value_.load(std::memory_order_relaxed); }
  void Store(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double v) {
    double current = value_.load(std::memory_order_relaxed);
    while (!value_.compare_exchange_weak(current, current + v, std::memory_order_relaxed)) {
    }
  }

 private:
  static_assert(std::atomic<double>::is_always_lock_free, "atomic<double> must be lock-free");
  std::atomic<double> value_;
};

}  // namespace metrics_internal

// A value that only goes up (or resets when the process restarts).
class Counter {
 public:
  static constexpr MetricType kType = MetricType::kCounter;

  Counter() = default;
  Counter(const Counter&) = delete;
  Counter& operator=(const Counter&) = delete;

  // REQUIRES: v >= 0 (CHECK-fails otherwise, NaN included).
  void Increment(double v = 1);
  double Value() const { return value_.Load(); }

 private:
  metrics_internal::AtomicDouble value_;
};

// A value that goes up and down.
class Gauge {
 public:
  static constexpr MetricType kType = MetricType::kGauge;

  Gauge() = default;
  Gauge(const Gauge&) = delete;
  Gauge& operator=(const Gauge&) = delete;

  void Set(double v) { value_.Store(v); }
  void Increment(double v = 1) { value_.Add(v); }
  void Decrement(double v = 1) { value_.Add(-v); }
  double Value() const { return value_.Load(); }

 private:
  metrics_internal::AtomicDouble value_;
};

// Upper bounds of histogram buckets, strictly increasing. The "+Inf" bucket
// is implicit (a trailing +Inf given here is dropped).
using BucketBoundaries = std::vector<double>;

// `count` bounds start, start*factor, start*factor^2, ...
// REQUIRES: start > 0, factor > 1, count >= 1.
BucketBoundaries ExponentialBuckets(double start, double factor, int count);
// `count` bounds start, start+width, ...  REQUIRES: width > 0, count >= 1.
BucketBoundaries LinearBuckets(double start, double width, int count);

// Counts observations into buckets (an observation v falls into every bucket
// whose bound is >= v), and keeps their sum and count.
class Histogram {
 public:
  static constexpr MetricType kType = MetricType::kHistogram;

  // A consistent-enough view: count equals the +Inf bucket; under concurrent
  // Observe calls, sum may lag or lead by the observations in flight.
  struct Snapshot {
    BucketBoundaries bounds;              // without +Inf
    std::vector<uint64_t> cumulative;     // bounds.size() + 1 entries, last is +Inf
    double sum = 0;
    uint64_t count = 0;
  };

  // REQUIRES: `bounds` strictly increasing, no NaN.
  explicit Histogram(BucketBoundaries bounds);
  Histogram(const Histogram&) = delete;
  Histogram& operator=(const Histogram&) = delete;

  // NaN observations count only in the +Inf bucket (and make the sum NaN).
  void Observe(double v);
  Snapshot Collect() const;
  const BucketBoundaries& bounds() const { return bounds_; }

 private:
  const BucketBoundaries bounds_;
  // Non-cumulative: counts_[i] holds observations in (bounds_[i-1], bounds_[i]];
  // the last entry is the +Inf bucket.
  std::unique_ptr<std::atomic<uint64_t>[]> counts_;
  metrics_internal::AtomicDouble sum_;
};

namespace metrics_internal {
inline void CheckSameArgs(const Counter&) {}
inline void CheckSameArgs(const Gauge&) {}
// CHECK-fails when `bounds` differ from the histogram's.
void CheckSameArgs(const Histogram& histogram, const BucketBoundaries& bounds);
}  // namespace metrics_internal

// What one family looks like at collection time; SerializeText renders it.
struct MetricSnapshot {
  Labels labels;                 // constant labels merged with the metric's own
  double value = 0;              // counter, gauge
  Histogram::Snapshot histogram; // histogram
};
struct FamilySnapshot {
  std::string name;
  std::string help;
  MetricType type = MetricType::kGauge;
  std::vector<MetricSnapshot> metrics;  // ordered by labels
};

namespace metrics_internal {
inline void Fill(const Counter& c, MetricSnapshot* out) { out->value = c.Value(); }
inline void Fill(const Gauge& g, MetricSnapshot* out) { out->value = g.Value(); }
inline void Fill(const Histogram& h, MetricSnapshot* out) { out->histogram = h.Collect(); }
}  // namespace metrics_internal

// Type-erased part of a family, used by Registry.
class FamilyBase {
 public:
  virtual ~FamilyBase() = default;
  virtual MetricType type() const = 0;
  virtual FamilySnapshot Collect() const = 0;
  const std::string& name() const { return name_; }
  const std::string& help() const { return help_; }
  const Labels& constant_labels() const { return constant_labels_; }

 protected:
  FamilyBase(std::string name, std::string help, Labels constant_labels)
      : name_(std::move(name)), help_(std::move(help)), constant_labels_(std::move(constant_labels)) {}
  // CHECK-fails on invalid, reserved or constant-colliding label names.
  void CheckLabels(const Labels& labels) const;

 private:
  const std::string name_;
  const std::string help_;
  const Labels constant_labels_;
};

// All metrics of one name and type, one per distinct label set.
template <typename T>
class Family final : public FamilyBase {
 public:
  Family(std::string name, std::string help, Labels constant_labels)
      : FamilyBase(std::move(name), std::move(help), std::move(constant_labels)) {}

  // Returns the metric for `labels`, creating it (at zero) on first use. The
  // same labels always give the same metric. For Histogram, pass the
  // BucketBoundaries as well; asking again for the same labels with other
  // boundaries CHECK-fails.
  template <typename... Args>
  T& Add(const Labels& labels, Args&&... args) ABSL_LOCKS_EXCLUDED(mu_) {
    std::lock_guard<std::mutex> lock(mu_);
    auto it = metrics_.find(labels);
    if (it == metrics_.end()) {
      CheckLabels(labels);
      it = metrics_.emplace(labels, std::make_unique<T>(std::forward<Args>(args)...)).first;
    } else {
      metrics_internal::CheckSameArgs(*it->second, args...);
    }
    return *it->second;
  }

  // Drops `metric` (from Add on this family); references to it dangle.
  void Remove(T* metric) ABSL_LOCKS_EXCLUDED(mu_) {
    std::lock_guard<std::mutex> lock(mu_);
    for (auto it = metrics_.begin(); it != metrics_.end(); ++it) {
      if (it->second.get() == metric) {
        metrics_.erase(it);
        return;
      }
    }
  }

  MetricType type() const override { return T::kType; }

  FamilySnapshot Collect() const override ABSL_LOCKS_EXCLUDED(mu_) {
    FamilySnapshot family{name(), help(), T::kType, {}};
    std::lock_guard<std::mutex> lock(mu_);
    family.metrics.reserve(metrics_.size());
    for (const auto& [labels, metric] : metrics_) {
      MetricSnapshot& snapshot = family.metrics.emplace_back();
      snapshot.labels = constant_labels();
      snapshot.labels.insert(labels.begin(), labels.end());
      metrics_internal::Fill(*metric, &snapshot);
    }
    return family;
  }

 private:
  mutable std::mutex mu_;
  std::map<Labels, std::unique_ptr<T>> metrics_ ABSL_GUARDED_BY(mu_);
};

// Owns families by name; collects and serializes them in name order.
class Registry {
 public:
  Registry() = default;
  Registry(const Registry&) = delete;
  Registry& operator=(const Registry&) = delete;

  // Registers a family, or returns the existing one when `name` is already
  // registered with the same type, help and constant labels (anything else
  // CHECK-fails, as does a name that collides with a histogram's _bucket,
  // _sum or _count series).
  Family<Counter>& AddCounter(absl::string_view name, absl::string_view help,
                              const Labels& constant_labels = {});
  Family<Gauge>& AddGauge(absl::string_view name, absl::string_view help,
                          const Labels& constant_labels = {});
  Family<Histogram>& AddHistogram(absl::string_view name, absl::string_view help,
                                  const Labels& constant_labels = {});
  template <typename T>
  Family<T>& Add(absl::string_view name, absl::string_view help, const Labels& constant_labels);

  // Runs `hook` at the start of every Collect (and so every SerializeText),
  // to refresh values that live elsewhere (process_* gauges, queue depths).
  // Hooks run one at a time, in registration order, on the collecting thread;
  // they may update metrics and add children but must not call Collect.
  void AddCollectHook(std::function<void()> hook) ABSL_LOCKS_EXCLUDED(mu_);

  // Runs the collect hooks, then snapshots every family, ordered by name.
  std::vector<FamilySnapshot> Collect() const ABSL_LOCKS_EXCLUDED(mu_, collect_mu_);

 private:
  FamilyBase& AddFamily(absl::string_view name, absl::string_view help, const Labels& constant_labels,
                        MetricType type, const std::function<std::unique_ptr<FamilyBase>()>& make)
      ABSL_LOCKS_EXCLUDED(mu_);

  // std::mutex rather than absl::Mutex: ThreadSanitizer understands it
  // without an instrumented abseil.
  mutable std::mutex collect_mu_ ABSL_ACQUIRED_BEFORE(mu_);  // serializes hooks
  mutable std::mutex mu_;
  std::map<std::string, std::unique_ptr<FamilyBase>> families_ ABSL_GUARDED_BY(mu_);
  std::vector<std::function<void()>> hooks_ ABSL_GUARDED_BY(mu_);
};

template <typename T>
Family<T>& Registry::Add(absl::string_view name, absl::string_view help,
                         const Labels& constant_labels) {
  FamilyBase& family = AddFamily(name, help, constant_labels, T::kType, [&] {
    return std::make_unique<Family<T>>(std::string(name), std::string(help), constant_labels);
  });
  return static_cast<Family<T>&>(family);
}

// Builders in prometheus-cpp's style:
//   BuildGauge().Name("x").Help("...").Labels({{"k", "v"}}).Register(registry)
// Labels() sets the family's constant labels.
template <typename T>
class Builder {
 public:
  Builder& Name(absl::string_view name) {
    name_ = std::string(name);
    return *this;
  }
  Builder& Help(absl::string_view help) {
    help_ = std::string(help);
    return *this;
  }
  Builder& Labels(const ::dispatchd::Labels& labels) {
    labels_ = labels;
    return *this;
  }
  Family<T>& Register(Registry& registry) const { return registry.Add<T>(name_, help_, labels_); }

 private:
  std::string name_;
  std::string help_;
  ::dispatchd::Labels labels_;
};

inline Builder<Counter> BuildCounter() { return {}; }
inline Builder<Gauge> BuildGauge() { return {}; }
inline Builder<Histogram> BuildHistogram() { return {}; }

// Renders everything in `registry` in the Prometheus text exposition format
// 0.0.4 (content type kPrometheusTextContentType). Runs the collect hooks.
std::string SerializeText(const Registry& registry);
std::string SerializeText(const std::vector<FamilySnapshot>& families);

inline constexpr absl::string_view kPrometheusTextContentType =
    "text/plain; version=0.0.4; charset=utf-8";

// True if `name` is a valid metric name ([a-zA-Z_:][a-zA-Z0-9_:]*, no "__" prefix).
bool IsValidMetricName(absl::string_view name);
// True if `name` is a valid label name ([a-zA-Z_][a-zA-Z0-9_]*, no "__" prefix).
bool IsValidLabelName(absl::string_view name);

}  // namespace dispatchd

#endif  // DISPATCHD_COMMON_METRICS_H_
