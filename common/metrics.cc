#include "common/metrics.h"

#include <algorithm>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <iterator>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>
#include <vector>

#include <fmt/core.h>
#include <fmt/format.h>

namespace rotor::common {
namespace {

bool IsNameStart(char c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c == '_';
}
bool IsDigit(char c) {
  return c >= '0' && c <= '9';
}

bool IsMetricName(std::string_view name) {
  if (name.empty() || !(IsNameStart(name[0]) || name[0] == ':')) {
    return false;
  }
  return std::ranges::all_of(name, [](char c) { return IsNameStart(c) || IsDigit(c) || c == ':'; });
}

bool IsLabelName(std::string_view name) {
  if (name.empty() || !IsNameStart(name[0]) || name.starts_with("__")) {
    return false;
  }
  return std::ranges::all_of(name, [](char c) { return IsNameStart(c) || IsDigit(c); });
}

// HELP text escapes backslash and newline; label values also the double quote.
std::string Escape(std::string_view text, bool quote) {
  std::string out;
  out.reserve(text.size());
  for (const char c : text) {
    if (c == '\\') {
      out += "\\\\";
    } else if (c == '\n') {
      out += "\\n";
    } else if (quote && c == '"') {
      out += "\\\"";
    } else {
      out.push_back(c);
    }
  }
  return out;
}

// A sample value as Prometheus (Go's strconv.ParseFloat) reads it.
std::string FormatDouble(double v) {
  if (std::isnan(v)) {
    return "NaN";
  }
  if (std::isinf(v)) {
    return v > 0 ? "+Inf" : "-Inf";
  }
  return fmt::format("{}", v);
}

// `{a="x",b="y"}` plus an optional extra label (the histogram's le), or "" for no labels.
std::string LabelText(const MetricLabels& labels, std::string_view extra_name = {},
                      std::string_view extra_value = {}) {
  if (labels.empty() && extra_name.empty()) {
    return {};
  }
  std::string out = "{";
  bool first = true;
  for (const auto& [name, value] : labels) {
    fmt::format_to(std::back_inserter(out), "{}{}=\"{}\"", first ? "" : ",", name,
                   Escape(value, true));
    first = false;
  }
  if (!extra_name.empty()) {
    fmt::format_to(std::back_inserter(out), "{}{}=\"{}\"", first ? "" : ",", extra_name,
                   extra_value);
  }
  out += "}";
  return out;
}

Status CheckBounds(const std::vector<double>& bounds) {
  if (bounds.empty()) {
    return Status::InvalidArgument("histogram bounds: empty");
  }
  for (std::size_t i = 0; i < bounds.size(); ++i) {
    if (!std::isfinite(bounds[i])) {
      return Status::InvalidArgument("histogram bounds[{}]: {} is not finite", i, bounds[i]);
    }
    if (i > 0 && !(bounds[i - 1] < bounds[i])) {
      return Status::InvalidArgument("histogram bounds[{}]: {} is not above {}", i, bounds[i],
                                     bounds[i - 1]);
    }
  }
  return Status::OK();
}

}  // namespace

Histogram::Histogram(std::vector<double> bounds)
    : bounds_(std::move(bounds)),
      buckets_(std::make_unique<std::atomic<uint64_t>[]>(bounds_.size() + 1)) {}

void Histogram::Observe(double v) {
  if (std::isnan(v)) {
    return;
  }
  const auto bucket = static_cast<std::size_t>(
      std::distance(bounds_.begin(), std::lower_bound(bounds_.begin(), bounds_.end(), v)));
  buckets_[bucket].fetch_add(1, std::memory_order_relaxed);
  sum_.fetch_add(v, std::memory_order_relaxed);
}

std::vector<uint64_t> Histogram::BucketCounts() const {
  std::vector<uint64_t> out(bounds_.size() + 1);
  for (std::size_t i = 0; i < out.size(); ++i) {
    out[i] = buckets_[i].load(std::memory_order_relaxed);
  }
  return out;
}

uint64_t Histogram::count() const {
  uint64_t total = 0;
  for (const uint64_t n : BucketCounts()) {
    total += n;
  }
  return total;
}

std::vector<double> LatencySecondsBuckets() {
  return {0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025,
          0.05,   0.1,     0.25,   0.5,   1,      2.5,   5,    10};
}

struct MetricsRegistry::Family {
  std::string name;
  std::string help;
  std::string_view type;  // "counter", "gauge", "histogram".
  std::vector<double> bounds;
  struct Series {
    MetricLabels labels;
    std::unique_ptr<Counter> counter;
    std::unique_ptr<Gauge> gauge;
    std::unique_ptr<Histogram> histogram;
  };
  std::vector<Series> series;
};

MetricsRegistry::MetricsRegistry() = default;
MetricsRegistry::~MetricsRegistry() = default;

template <class Metric>
Result<Metric*> MetricsRegistry::Add(std::string_view name, std::string_view help,
                                     std::string_view type, const MetricLabels& labels,
                                     const std::vector<double>* bounds) {
  if (!IsMetricName(name)) {
    return Status::InvalidArgument("metric name '{}': not a Prometheus metric name", name);
  }
  for (std::size_t i = 0; i < labels.size(); ++i) {
    const std::string& label = labels[i].first;
    if (!IsLabelName(label) || (bounds != nullptr && label == "le")) {
      return Status::InvalidArgument("metric {}: label name '{}' is not allowed", name, label);
    }
    for (std::size_t j = 0; j < i; ++j) {
      if (labels[j].first == label) {
        return Status::InvalidArgument("metric {}: label '{}' repeated", name, label);
      }
    }
  }
  if (bounds != nullptr) {
    if (Status s = CheckBounds(*bounds); !s.ok()) {
      return std::move(s).WithContext(fmt::format("metric {}", name));
    }
  }

  const std::lock_guard<std::mutex> lock(mu_);
  Family* family = nullptr;
  for (const auto& f : families_) {
    if (f->name == name) {
      family = f.get();
      break;
    }
  }
  if (family == nullptr) {
    families_.push_back(std::make_unique<Family>());
    family = families_.back().get();
    family->name = std::string(name);
    family->help = std::string(help);
    family->type = type;
    if (bounds != nullptr) {
      family->bounds = *bounds;
    }
  } else {
    if (family->type != type) {
      return Status::InvalidArgument("metric {}: registered as a {}, asked for a {}", name,
                                     family->type, type);
    }
    if (family->help != help) {
      return Status::InvalidArgument("metric {}: registered with another help text", name);
    }
    if (bounds != nullptr && family->bounds != *bounds) {
      return Status::InvalidArgument("metric {}: registered with other bucket bounds", name);
    }
    const MetricLabels& first = family->series.front().labels;
    const bool same_names =
        first.size() == labels.size() &&
        std::equal(first.begin(), first.end(), labels.begin(),
                   [](const auto& a, const auto& b) { return a.first == b.first; });
    if (!same_names) {
      return Status::InvalidArgument("metric {}: label names differ from its first series'", name);
    }
    for (auto& s : family->series) {
      if (s.labels == labels) {
        if constexpr (std::is_same_v<Metric, Counter>) {
          return s.counter.get();
        } else if constexpr (std::is_same_v<Metric, Gauge>) {
          return s.gauge.get();
        } else {
          return s.histogram.get();
        }
      }
    }
  }
  Family::Series& series = family->series.emplace_back();
  series.labels = labels;
  if constexpr (std::is_same_v<Metric, Counter>) {
    series.counter = std::make_unique<Counter>();
    return series.counter.get();
  } else if constexpr (std::is_same_v<Metric, Gauge>) {
    series.gauge = std::make_unique<Gauge>();
    return series.gauge.get();
  } else {
    series.histogram = std::make_unique<Histogram>(family->bounds);
    return series.histogram.get();
  }
}

Result<Counter*> MetricsRegistry::AddCounter(std::string_view name, std::string_view help,
                                             const MetricLabels& labels) {
  return Add<Counter>(name, help, "counter", labels, nullptr);
}

Result<Gauge*> MetricsRegistry::AddGauge(std::string_view name, std::string_view help,
                                         const MetricLabels& labels) {
  return Add<Gauge>(name, help, "gauge", labels, nullptr);
}

Result<Histogram*> MetricsRegistry::AddHistogram(std::string_view name, std::string_view help,
                                                 const std::vector<double>& bounds,
                                                 const MetricLabels& labels) {
  return Add<Histogram>(name, help, "histogram", labels, &bounds);
}

std::string MetricsRegistry::Render() const {
  const std::lock_guard<std::mutex> lock(mu_);
  std::string out;
  auto put = std::back_inserter(out);
  for (const auto& f : families_) {
    fmt::format_to(put, "# HELP {} {}\n# TYPE {} {}\n", f->name, Escape(f->help, false), f->name,
                   f->type);
    for (const auto& s : f->series) {
      if (s.counter) {
        fmt::format_to(put, "{}{} {}\n", f->name, LabelText(s.labels), s.counter->value());
      } else if (s.gauge) {
        fmt::format_to(put, "{}{} {}\n", f->name, LabelText(s.labels),
                       FormatDouble(s.gauge->value()));
      } else {
        const std::vector<uint64_t> counts = s.histogram->BucketCounts();
        uint64_t cumulative = 0;
        for (std::size_t i = 0; i < counts.size(); ++i) {
          cumulative += counts[i];
          const std::string le = i < f->bounds.size() ? FormatDouble(f->bounds[i]) : "+Inf";
          fmt::format_to(put, "{}_bucket{} {}\n", f->name, LabelText(s.labels, "le", le),
                         cumulative);
        }
        fmt::format_to(put, "{}_sum{} {}\n", f->name, LabelText(s.labels),
                       FormatDouble(s.histogram->sum()));
        fmt::format_to(put, "{}_count{} {}\n", f->name, LabelText(s.labels), cumulative);
      }
    }
  }
  return out;
}

}  // namespace rotor::common
