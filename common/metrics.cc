#include "common/metrics.h"

#include <algorithm>
#include <charconv>
#include <cmath>
#include <set>

#include "absl/strings/match.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "common/logging.h"

namespace dispatchd {
namespace {

bool IsNameChar(char c, bool allow_colon, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_') return true;
  if (allow_colon && c == ':') return true;
  return !first && c >= '0' && c <= '9';
}

bool IsValidName(absl::string_view name, bool allow_colon) {
  if (name.empty() || absl::StartsWith(name, "__")) return false;
  for (size_t i = 0; i < name.size(); ++i) {
    if (!IsNameChar(name[i], allow_colon, i == 0)) return false;
  }
  return true;
}

const char* TypeName(MetricType type) {
  switch (type) {
    case MetricType::kCounter:
      return "counter";
    case MetricType::kGauge:
      return "gauge";
    case MetricType::kHistogram:
      return "histogram";
  }
  return "untyped";
}

// The series names a family exposes; no two families may share one.
std::vector<std::string> SeriesNames(absl::string_view name, MetricType type) {
  if (type == MetricType::kHistogram) {
    return {std::string(name), absl::StrCat(name, "_bucket"), absl::StrCat(name, "_sum"),
            absl::StrCat(name, "_count")};
  }
  return {std::string(name)};
}

// Numbers as Prometheus (Go's strconv.ParseFloat) reads them: integers
// without exponent or fraction while exact, otherwise the shortest string
// that reads back as the same double.
std::string FormatValue(double v) {
  if (std::isnan(v)) return "NaN";
  if (std::isinf(v)) return v > 0 ? "+Inf" : "-Inf";
  if (v == std::trunc(v) && std::fabs(v) < 9007199254740992.0 /* 2^53 */) {
    return absl::StrCat(static_cast<int64_t>(v));
  }
  char buf[64];
  std::to_chars_result r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

void AppendEscaped(absl::string_view text, bool escape_quote, std::string* out) {
  for (char c : text) {
    switch (c) {
      case '\\':
        out->append("\\\\");
        break;
      case '\n':
        out->append("\\n");
        break;
      case '"':
        if (escape_quote) {
          out->append("\\\"");
        } else {
          out->push_back(c);
        }
        break;
      default:
        out->push_back(c);
    }
  }
}

// Appends `name{labels...,extra_name="extra_value"} value\n`.
void AppendSample(absl::string_view name, const Labels& labels, absl::string_view extra_name,
                  absl::string_view extra_value, double value, std::string* out) {
  out->append(name.data(), name.size());
  if (!labels.empty() || !extra_name.empty()) {
    out->push_back('{');
    bool first = true;
    auto append_label = [&](absl::string_view label, absl::string_view label_value) {
      if (!first) out->push_back(',');
      first = false;
      out->append(label.data(), label.size());
      out->append("=\"");
      AppendEscaped(label_value, /*escape_quote=*/true, out);
      out->push_back('"');
    };
    for (const auto& [label, label_value] : labels) append_label(label, label_value);
    if (!extra_name.empty()) append_label(extra_name, extra_value);
    out->push_back('}');
  }
  out->push_back(' ');
  out->append(FormatValue(value));
  out->push_back('\n');
}

BucketBoundaries CheckedBounds(BucketBoundaries bounds) {
  if (!bounds.empty() && std::isinf(bounds.back()) && bounds.back() > 0) bounds.pop_back();
  for (size_t i = 0; i < bounds.size(); ++i) {
    CHECK(!std::isnan(bounds[i])) << "histogram bucket bound is NaN";
    if (i > 0) {
      CHECK(bounds[i - 1] < bounds[i]) << "histogram bucket bounds must be strictly increasing: "
                                       << bounds[i - 1] << " then " << bounds[i];
    }
  }
  return bounds;
}

}  // namespace

bool IsValidMetricName(absl::string_view name) { return IsValidName(name, /*allow_colon=*/true); }
bool IsValidLabelName(absl::string_view name) { return IsValidName(name, /*allow_colon=*/false); }

void Counter::Increment(double v) {
  CHECK(v >= 0) << "counter increment must be >= 0, got " << v;
  value_.Add(v);
}

BucketBoundaries ExponentialBuckets(double start, double factor, int count) {
  CHECK(start > 0 && factor > 1 && count >= 1) << "ExponentialBuckets(" << start << ", " << factor
                                                << ", " << count << ")";
  BucketBoundaries bounds;
  double bound = start;
  for (int i = 0; i < count; ++i, bound *= factor) bounds.push_back(bound);
  return bounds;
}

BucketBoundaries LinearBuckets(double start, double width, int count) {
  CHECK(width > 0 && count >= 1) << "LinearBuckets(" << start << ", " << width << ", " << count
                                 << ")";
  BucketBoundaries bounds;
  for (int i = 0; i < count; ++i) bounds.push_back(start + width * i);
  return bounds;
}

Histogram::Histogram(BucketBoundaries bounds)
    : bounds_(CheckedBounds(std::move(bounds))),
      counts_(new std::atomic<uint64_t>[bounds_.size() + 1]) {
  for (size_t i = 0; i <= bounds_.size(); ++i) counts_[i].store(0, std::memory_order_relaxed);
}

void Histogram::Observe(double v) {
  // First bound >= v; NaN compares false everywhere and lands in +Inf.
  size_t bucket = std::lower_bound(bounds_.begin(), bounds_.end(), v) - bounds_.begin();
  if (std::isnan(v)) bucket = bounds_.size();
  counts_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.Add(v);
}

Histogram::Snapshot Histogram::Collect() const {
  Snapshot snapshot;
  snapshot.bounds = bounds_;
  snapshot.cumulative.resize(bounds_.size() + 1);
  uint64_t total = 0;
  for (size_t i = 0; i <= bounds_.size(); ++i) {
    total += counts_[i].load(std::memory_order_relaxed);
    snapshot.cumulative[i] = total;
  }
  snapshot.count = total;
  snapshot.sum = sum_.Load();
  return snapshot;
}

namespace metrics_internal {
void CheckSameArgs(const Histogram& histogram, const BucketBoundaries& bounds) {
  CHECK(histogram.bounds() == CheckedBounds(bounds))
      << "histogram with these labels already exists with other bucket boundaries";
}
}  // namespace metrics_internal

void FamilyBase::CheckLabels(const Labels& labels) const {
  for (const auto& [label, value] : labels) {
    CHECK(IsValidLabelName(label)) << "invalid label name \"" << label << "\" on " << name_;
    CHECK(!(type() == MetricType::kHistogram && label == "le"))
        << "label \"le\" is reserved on histogram " << name_;
    CHECK(constant_labels_.count(label) == 0)
        << "label \"" << label << "\" is already a constant label of " << name_;
  }
}

Family<Counter>& Registry::AddCounter(absl::string_view name, absl::string_view help,
                                      const Labels& constant_labels) {
  return Add<Counter>(name, help, constant_labels);
}

Family<Gauge>& Registry::AddGauge(absl::string_view name, absl::string_view help,
                                  const Labels& constant_labels) {
  return Add<Gauge>(name, help, constant_labels);
}

Family<Histogram>& Registry::AddHistogram(absl::string_view name, absl::string_view help,
                                          const Labels& constant_labels) {
  return Add<Histogram>(name, help, constant_labels);
}

FamilyBase& Registry::AddFamily(absl::string_view name, absl::string_view help,
                                const Labels& constant_labels, MetricType type,
                                const std::function<std::unique_ptr<FamilyBase>()>& make) {
  CHECK(IsValidMetricName(name)) << "invalid metric name \"" << name << "\"";
  for (const auto& [label, value] : constant_labels) {
    CHECK(IsValidLabelName(label)) << "invalid label name \"" << label << "\" on " << name;
    CHECK(!(type == MetricType::kHistogram && label == "le"))
        << "label \"le\" is reserved on histogram " << name;
  }
  std::lock_guard<std::mutex> lock(mu_);
  auto it = families_.find(std::string(name));
  if (it != families_.end()) {
    FamilyBase& existing = *it->second;
    CHECK(existing.type() == type) << "metric " << name << " already registered as "
                                   << TypeName(existing.type()) << ", not " << TypeName(type);
    CHECK(existing.help() == help && existing.constant_labels() == constant_labels)
        << "metric " << name << " already registered with other help or constant labels";
    return existing;
  }
  const std::vector<std::string> series = SeriesNames(name, type);
  for (const auto& [other_name, other] : families_) {
    for (const std::string& taken : SeriesNames(other_name, other->type())) {
      CHECK(std::find(series.begin(), series.end(), taken) == series.end())
          << "metric " << name << " (" << TypeName(type) << ") collides with series " << taken
          << " of " << other_name << " (" << TypeName(other->type()) << ")";
    }
  }
  std::unique_ptr<FamilyBase> family = make();
  FamilyBase& ref = *family;
  families_.emplace(std::string(name), std::move(family));
  return ref;
}

void Registry::AddCollectHook(std::function<void()> hook) {
  std::lock_guard<std::mutex> lock(mu_);
  hooks_.push_back(std::move(hook));
}

std::vector<FamilySnapshot> Registry::Collect() const {
  std::lock_guard<std::mutex> collect_lock(collect_mu_);
  std::vector<std::function<void()>> hooks;
  {
    std::lock_guard<std::mutex> lock(mu_);
    hooks = hooks_;
  }
  // Outside mu_: hooks may add families or children.
  for (const auto& hook : hooks) hook();

  std::vector<const FamilyBase*> families;
  {
    std::lock_guard<std::mutex> lock(mu_);
    families.reserve(families_.size());
    for (const auto& [name, family] : families_) families.push_back(family.get());
  }
  // Families are never removed, so the pointers outlive the lock.
  std::vector<FamilySnapshot> out;
  out.reserve(families.size());
  for (const FamilyBase* family : families) out.push_back(family->Collect());
  return out;
}

std::string SerializeText(const Registry& registry) { return SerializeText(registry.Collect()); }

std::string SerializeText(const std::vector<FamilySnapshot>& families) {
  std::string out;
  for (const FamilySnapshot& family : families) {
    if (!family.help.empty()) {
      absl::StrAppend(&out, "# HELP ", family.name, " ");
      AppendEscaped(family.help, /*escape_quote=*/false, &out);
      out.push_back('\n');
    }
    absl::StrAppend(&out, "# TYPE ", family.name, " ", TypeName(family.type), "\n");
    for (const MetricSnapshot& metric : family.metrics) {
      if (family.type != MetricType::kHistogram) {
        AppendSample(family.name, metric.labels, "", "", metric.value, &out);
        continue;
      }
      const Histogram::Snapshot& h = metric.histogram;
      const std::string bucket = absl::StrCat(family.name, "_bucket");
      for (size_t i = 0; i < h.cumulative.size(); ++i) {
        const std::string le = i < h.bounds.size() ? FormatValue(h.bounds[i]) : "+Inf";
        AppendSample(bucket, metric.labels, "le", le, static_cast<double>(h.cumulative[i]), &out);
      }
      AppendSample(absl::StrCat(family.name, "_sum"), metric.labels, "", "", h.sum, &out);
      AppendSample(absl::StrCat(family.name, "_count"), metric.labels, "", "",
                   static_cast<double>(h.count), &out);
    }
  }
  return out;
}

}  // namespace dispatchd
