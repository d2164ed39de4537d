// MetricsRegistry: the Prometheus metrics rotor's modules share (the API's request counts and
// latencies, later the pipeline's events, dead letters, lag, ...), rendered as the text
// exposition format 0.0.4 that `GET /metrics` serves.
//
//   common::MetricsRegistry registry;
//   ROTOR_ASSIGN_OR_RETURN(common::Counter* schema_errors,
//                          registry.AddCounter("rotor_dead_letters_total", "Records refused.",
//                                              {{"reason", "schema"}}));
//   schema_errors->Increment();          // Lock-free, from any thread.
//   std::string text = registry.Render();

#ifndef ROTOR_COMMON_METRICS_H_
#define ROTOR_COMMON_METRICS_H_

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <mutex>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

#include "common/status.h"

namespace rotor::common {

// A series' labels, fixed when it is registered: (name, value) pairs, rendered in this order.
using MetricLabels = std::vector<std::pair<std::string, std::string>>;

// A monotonically increasing count (Prometheus "counter").
//
// Lifecycle: made by MetricsRegistry::AddCounter, owned by the registry; the pointer stays valid
// as long as the registry. Concurrency: Increment and value are lock-free and may be called from
// any thread. Limitations: unsigned 64-bit; wraps after 2^64 increments.
class Counter {
 public:
  void Increment(uint64_t n = 1) { value_.fetch_add(n, std::memory_order_relaxed); }
  uint64_t value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<uint64_t> value_{0};
};

// A value that goes up and down (Prometheus "gauge").
//
// Lifecycle: as Counter. Concurrency: Set, Add and value are lock-free from any thread.
// Limitations: a double; Add of values far apart in magnitude loses the smaller one.
class Gauge {
 public:
  void Set(double v) { value_.store(v, std::memory_order_relaxed); }
  void Add(double delta) { value_.fetch_add(delta, std::memory_order_relaxed); }
  double value() const { return value_.load(std::memory_order_relaxed); }

 private:
  std::atomic<double> value_{0.0};
};

// Observations counted into buckets with fixed upper bounds (Prometheus "histogram").
//
// Lifecycle: as Counter; the bounds are fixed at registration. Concurrency: Observe is lock-free
// from any thread (one relaxed increment of the observation's bucket and one add to the sum).
// Render sums the buckets it reads for _count, so `_bucket{le="+Inf"}` always equals `_count`,
// but a render racing Observe calls may show a sum a few observations ahead of the buckets or
// behind them. Limitations: NaN observations are dropped; +Inf and values above the last bound
// land only in the +Inf bucket.
class Histogram {
 public:
  explicit Histogram(std::vector<double> bounds);

  void Observe(double v);

  // Upper bounds, strictly increasing, finite; +Inf is implied.
  std::span<const double> bounds() const { return bounds_; }
  // Observations per bucket (not cumulative), bounds().size() + 1 entries (the last: above
  // every bound).
  std::vector<uint64_t> BucketCounts() const;
  uint64_t count() const;
  double sum() const { return sum_.load(std::memory_order_relaxed); }

 private:
  std::vector<double> bounds_;
  std::unique_ptr<std::atomic<uint64_t>[]> buckets_;
  std::atomic<double> sum_{0.0};
};

// Bucket bounds for latencies in seconds, from 100 us to 10 s (1-2.5-5 steps).
std::vector<double> LatencySecondsBuckets();

// The registry: metric families (one name, type and help each) and their series (one label
// set each), in registration order.
//
// Registration (AddCounter, AddGauge, AddHistogram) is get-or-create: asking again for the
// same name and labels returns the same metric, so modules may register at startup and a
// request path may register a series on first use. InvalidArgument for a name that is not a
// Prometheus metric name ([a-zA-Z_:][a-zA-Z0-9_:]*), a label name that is not one
// ([a-zA-Z_][a-zA-Z0-9_]*, not starting with "__"; "le" on a histogram), a repeated label
// name, a label set whose names differ from the family's first series, a name already
// registered with another type or help, a histogram with other bounds than the family's, or
// bounds that are empty, not finite or not strictly increasing.
//
// Lifecycle: metrics live as long as the registry; nothing is ever unregistered.
// Concurrency: every method is thread-safe. Registration and Render take one mutex; updates
// of a registered metric never do, so Render never blocks them.
// Limitations: no summaries, no timestamps, no exemplars; a family's series set only grows.
class MetricsRegistry {
 public:
  MetricsRegistry();
  MetricsRegistry(const MetricsRegistry&) = delete;
  MetricsRegistry& operator=(const MetricsRegistry&) = delete;
  ~MetricsRegistry();

  Result<Counter*> AddCounter(std::string_view name, std::string_view help,
                              const MetricLabels& labels = {});
  Result<Gauge*> AddGauge(std::string_view name, std::string_view help,
                          const MetricLabels& labels = {});
  Result<Histogram*> AddHistogram(std::string_view name, std::string_view help,
                                  const std::vector<double>& bounds,
                                  const MetricLabels& labels = {});

  // Every family in the text exposition format 0.0.4: "# HELP" and "# TYPE" lines, then one
  // line per series (histograms: cumulative _bucket{le=...} lines ending with le="+Inf", then
  // _sum and _count). Help text escapes backslash and newline, label values also the double
  // quote. Content type: kMetricsContentType.
  std::string Render() const;

 private:
  struct Family;
  template <class Metric>
  Result<Metric*> Add(std::string_view name, std::string_view help, std::string_view type,
                      const MetricLabels& labels, const std::vector<double>* bounds);

  mutable std::mutex mu_;
  std::vector<std::unique_ptr<Family>> families_;  // Guarded by mu_; registration order.
};

inline constexpr std::string_view kMetricsContentType = "text/plain; version=0.0.4; charset=utf-8";

}  // namespace rotor::common

#endif  // ROTOR_COMMON_METRICS_H_
