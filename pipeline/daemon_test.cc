// The whole Daemon against librdkafka's mock cluster: the test owns the cluster (the daemon
// connects to it as to any broker), so it can take the broker down and inject request errors
// while the daemon serves. Every test ends with the same two checks: each user's committed
// state equals a direct decode of the user's events bit for bit (nothing lost, nothing applied
// twice), and every (user, position) reached the output topic with the direct rows (at least
// once; repeats are allowed). The daemon runs without event-id dedupe, so a replayed event
// would show up in the state instead of being silently dropped.

#include "pipeline/daemon.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <chrono>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <filesystem>
#include <fstream>
#include <functional>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <string_view>
#include <thread>
#include <tuple>
#include <utility>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>
#include <librdkafka/rdkafka.h>
#include <spdlog/sinks/ringbuffer_sink.h>
#include <spdlog/sinks/stdout_sinks.h>
#include <spdlog/spdlog.h>

#include "common/metrics.h"
#include "encoders/decoder.h"
#include "encoders/event_parser.h"
#include "encoders/featurizer.h"
#include "encoders/ready_tensors.h"
#include "pipeline/internal/changelog_restore.h"
#include "pipeline/internal/partitioner.h"
#include "pipeline/internal/rdkafka_util.h"
#include "pipeline/internal/testing.h"
#include "pipeline/kafka_tools.h"
#include "pipeline/processor.h"
#include "pipeline/replay.h"
#include "storage/user_state_store.h"

namespace rotor::pipeline {
namespace {

using testing::ExpectSameRows;

using std::chrono::milliseconds;
using SteadyClock = std::chrono::steady_clock;

constexpr int32_t kPartitions = 4;
constexpr std::string_view kInputTopic = "rotor.events";
constexpr std::string_view kOutputTopic = "rotor.tensors";
constexpr std::string_view kDeadLetterTopic = "rotor.dead-letter";
constexpr std::string_view kChangelogTopic = "rotor.changelog";
// Longest wait for the daemon to reach the expected state (a group join takes about 3 s).
constexpr milliseconds kServeTimeout{25000};

void WriteLines(const std::string& path, const std::vector<std::string>& lines) {
  std::ofstream out(path);
  for (const std::string& line : lines) {
    out << line << '\n';
  }
  ASSERT_TRUE(out.good()) << path;
}

using EventsByUser = std::map<std::string, std::vector<std::string>>;

EventsByUser GoldenUsers(int count) {
  EventsByUser events;
  for (int i = 0; i < count; ++i) {
    const std::string user = fmt::format("user-{}", i);
    events[user] = testing::GoldenUserEvents(user);
  }
  return events;
}

// Events [from, to) of every user, interleaved round-robin (each user's own order kept).
std::vector<std::string> Interleave(const EventsByUser& events, std::size_t from = 0,
                                    std::size_t to = SIZE_MAX) {
  std::vector<std::string> out;
  std::size_t longest = 0;
  for (const auto& [user, lines] : events) {
    longest = std::max(longest, lines.size());
  }
  for (std::size_t i = from; i < std::min(to, longest); ++i) {
    for (const auto& [user, lines] : events) {
      if (i < lines.size()) {
        out.push_back(lines[i]);
      }
    }
  }
  return out;
}

// Every user's first `n` events.
EventsByUser Prefix(const EventsByUser& events, std::size_t n) {
  EventsByUser out;
  for (const auto& [user, lines] : events) {
    out[user].assign(lines.begin(), lines.begin() + static_cast<std::ptrdiff_t>(n));
  }
  return out;
}

// Polls `done` every 100 ms until it holds (true) or `timeout` passes (false).
bool WaitFor(const std::function<bool()>& done, milliseconds timeout) {
  const auto deadline = SteadyClock::now() + timeout;
  while (!done()) {
    if (SteadyClock::now() > deadline) {
      return false;
    }
    std::this_thread::sleep_for(milliseconds(100));
  }
  return true;
}

// Sends (key, value) messages in order through an idempotent producer, waiting for delivery;
// a message without a key is sent unkeyed. For what ProduceJsonLines cannot send (a key that is
// not the line's user_id).
void ProduceRaw(const std::string& bootstrap, std::string_view topic,
                const std::vector<std::pair<std::optional<std::string>, std::string>>& messages,
                int32_t partition = RD_KAFKA_PARTITION_UA) {
  internal::ConfPtr conf(rd_kafka_conf_new());
  ASSERT_TRUE(internal::SetConf(conf.get(), "bootstrap.servers", bootstrap).ok());
  ASSERT_TRUE(internal::SetConf(conf.get(), "enable.idempotence", "true").ok());
  // Room for the oversized messages some tests send (a real topic takes up to 1,048,588 bytes).
  ASSERT_TRUE(internal::SetConf(conf.get(), "message.max.bytes", "4000000").ok());
  ASSERT_TRUE(internal::SetConf(conf.get(), "partitioner", "murmur2_random").ok());
  std::atomic<int> failures{0};
  rd_kafka_conf_set_dr_msg_cb(conf.get(),
                              [](rd_kafka_t*, const rd_kafka_message_t* m, void* opaque) {
                                if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
                                  static_cast<std::atomic<int>*>(opaque)->fetch_add(1);
                                }
                              });
  rd_kafka_conf_set_opaque(conf.get(), &failures);
  auto producer = internal::NewHandle(RD_KAFKA_PRODUCER, std::move(conf));
  ASSERT_TRUE(producer.ok()) << producer.status().ToString();
  rd_kafka_topic_t* handle =
      rd_kafka_topic_new(producer->get(), std::string(topic).c_str(), nullptr);
  ASSERT_NE(handle, nullptr);
  for (const auto& [key, value] : messages) {
    const int sent =
        rd_kafka_produce(handle, partition, RD_KAFKA_MSG_F_COPY, const_cast<char*>(value.data()),
                         value.size(), key ? key->data() : nullptr, key ? key->size() : 0, nullptr);
    EXPECT_EQ(sent, 0) << rd_kafka_err2str(rd_kafka_last_error());
  }
  rd_kafka_topic_destroy(handle);
  EXPECT_EQ(rd_kafka_flush(producer->get(), 20000), RD_KAFKA_RESP_ERR_NO_ERROR);
  EXPECT_EQ(failures.load(), 0);
}

// The samples of a Prometheus text exposition (MetricsRegistry::Render): series (name with its
// labels, as rendered) -> value.
std::map<std::string, double> ParseMetrics(const std::string& text) {
  std::map<std::string, double> samples;
  std::size_t at = 0;
  while (at < text.size()) {
    std::size_t end = text.find('\n', at);
    if (end == std::string::npos) {
      end = text.size();
    }
    const std::string line = text.substr(at, end - at);
    at = end + 1;
    if (line.empty() || line[0] == '#') {
      continue;
    }
    const std::size_t space = line.rfind(' ');
    EXPECT_NE(space, std::string::npos) << line;
    if (space == std::string::npos) {
      continue;
    }
    samples[line.substr(0, space)] = std::stod(line.substr(space + 1));
  }
  return samples;
}

// A sample's value; NaN (which equals nothing) when the series is missing.
double Sample(const std::map<std::string, double>& samples, const std::string& series) {
  const auto it = samples.find(series);
  EXPECT_NE(it, samples.end()) << "no series " << series;
  return it == samples.end() ? std::nan("") : it->second;
}

// Routes spdlog's default logger to a ring buffer (and stderr) while it lives.
class LogCapture {
 public:
  LogCapture()
      : ring_(std::make_shared<spdlog::sinks::ringbuffer_sink_mt>(16384)),
        previous_(spdlog::default_logger()) {
    auto logger = std::make_shared<spdlog::logger>(
        "daemon_test",
        spdlog::sinks_init_list{ring_, std::make_shared<spdlog::sinks::stderr_sink_mt>()});
    logger->set_level(spdlog::level::info);
    spdlog::set_default_logger(std::move(logger));
  }
  LogCapture(const LogCapture&) = delete;
  LogCapture& operator=(const LogCapture&) = delete;
  ~LogCapture() { spdlog::set_default_logger(previous_); }

  // The messages logged at `level` or above that contain `text`.
  std::vector<std::string> Find(spdlog::level::level_enum level, std::string_view text) const {
    std::vector<std::string> found;
    for (const auto& m : ring_->last_raw()) {
      const std::string_view payload(m.payload.data(), m.payload.size());
      if (m.level >= level && payload.find(text) != std::string_view::npos) {
        found.emplace_back(payload);
      }
    }
    return found;
  }

 private:
  std::shared_ptr<spdlog::sinks::ringbuffer_sink_mt> ring_;
  std::shared_ptr<spdlog::logger> previous_;
};

// A Daemon serving on its own thread until Stop (or destruction).
class ServingDaemon {
 public:
  explicit ServingDaemon(std::unique_ptr<Daemon> daemon) : daemon_(std::move(daemon)) {
    thread_ = std::thread([this] {
      result_ = daemon_->Run(stop_);
      finished_ = true;
    });
  }
  ServingDaemon(const ServingDaemon&) = delete;
  ServingDaemon& operator=(const ServingDaemon&) = delete;
  ~ServingDaemon() { (void)Stop(); }

  // Asks Run to return and waits for it; Run's status.
  Status Stop() {
    stop_ = true;
    if (thread_.joinable()) {
      thread_.join();
    }
    return result_;
  }
  // Thread-safe while serving: LoadUser (the store's loads are); stats() only after Stop.
  const Daemon& daemon() const { return *daemon_; }
  // Run returned by itself (an error, or the idle exit).
  bool finished() const { return finished_.load(); }

 private:
  std::unique_ptr<Daemon> daemon_;
  std::atomic<bool> stop_{false};
  std::atomic<bool> finished_{false};
  Status result_;
  std::thread thread_;
};

// What the encoders produce for one user's events: the final window, and the rows of every
// position as they were when the position was appended ([pos] -> [block] -> d_model floats).
struct Reference {
  encoders::KvWindow window;
  std::vector<std::vector<std::vector<float>>> k;
  std::vector<std::vector<std::vector<float>>> v;
};

class DaemonTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto kafka = EmbeddedKafka::Start(1);
    ASSERT_TRUE(kafka.ok()) << kafka.status().ToString();
    kafka_ = std::move(kafka).value();
    for (const std::string_view topic :
         {kInputTopic, kOutputTopic, kDeadLetterTopic, kChangelogTopic}) {
      const Status created = kafka_->CreateTopic(std::string(topic), kPartitions);
      ASSERT_TRUE(created.ok()) << created.ToString();
    }
    auto bundle = encoders::Bundle::Load(BundlePath());
    ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
    bundle_ = std::make_unique<encoders::Bundle>(std::move(bundle).value());
  }

  static std::string BundlePath() {
    return std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors";
  }

  config::DaemonConfig Config() const {
    config::DaemonConfig c;
    c.model.bundle = BundlePath();
    c.kafka.embedded = false;  // The test owns the cluster, to inject faults into it.
    c.kafka.bootstrap_servers = kafka_->bootstrap_servers();
    c.kafka.group_id = "rotor-daemon-test";
    c.kafka.input_topic = std::string(kInputTopic);
    c.kafka.output_topic = std::string(kOutputTopic);
    c.kafka.dead_letter_topic = std::string(kDeadLetterTopic);
    c.kafka.changelog_topic = std::string(kChangelogTopic);
    // Many small batches, none larger than the model's window (8): a batch with more events of
    // one user publishes only the newest window rows, and these tests check every position.
    c.pipeline.max_batch_events = 8;
    c.pipeline.max_batch_wait_ms = 5;
    // The golden events are from January 2026; accept them whatever this machine's clock says.
    c.pipeline.max_future_ms = int64_t{10} * 365 * 86400000;
    // No event-id dedupe: an event applied twice must show in the state, not be dropped.
    c.pipeline.dedupe_ids_per_user = 0;
    c.output.dtype = config::OutputDtype::kF32;
    c.output.deltas = true;
    c.output.snapshot_interval_ms = 0;
    c.state.dir = dir_.path() + "/state";
    c.state.sync_writes = false;
    c.state.block_cache_bytes = int64_t{16} << 20;
    c.state.write_buffer_bytes = int64_t{4} << 20;
    c.log.stats_interval_ms = 0;
    return c;
  }

  static std::unique_ptr<ServingDaemon> Serve(const config::DaemonConfig& config) {
    auto daemon = Daemon::Create(config);
    EXPECT_TRUE(daemon.ok()) << daemon.status().ToString();
    if (!daemon.ok()) {
      return nullptr;
    }
    return std::make_unique<ServingDaemon>(std::move(daemon).value());
  }

  // Produces `lines` into the input topic (keyed by user_id) at `rate_per_s` (0: at once).
  void Produce(const std::vector<std::string>& lines, double rate_per_s = 0) {
    const std::string path = fmt::format("{}/input-{}.jsonl", dir_.path(), files_.fetch_add(1));
    ASSERT_NO_FATAL_FAILURE(WriteLines(path, lines));
    ProduceOptions options;
    options.bootstrap_servers = kafka_->bootstrap_servers();
    options.topic = std::string(kInputTopic);
    options.rate_per_s = rate_per_s;
    options.properties["reconnect.backoff.max.ms"] = "1000";  // Back soon after an outage.
    auto result = ProduceJsonLines(path, options);
    ASSERT_TRUE(result.ok()) << result.status().ToString();
    EXPECT_EQ(result->sent, static_cast<int64_t>(lines.size()));
    EXPECT_EQ(result->failed, 0);
  }

  std::vector<TopicMessage> Read(std::string_view topic, int64_t idle_ms = 300) const {
    ReadOptions options;
    options.bootstrap_servers = kafka_->bootstrap_servers();
    options.topic = std::string(topic);
    options.read_committed = false;
    options.idle_ms = idle_ms;
    options.timeout_ms = 20000;
    auto messages = ReadTopic(options);
    EXPECT_TRUE(messages.ok()) << messages.status().ToString();
    return messages.ok() ? std::move(messages).value() : std::vector<TopicMessage>{};
  }

  // Whether every user's committed state holds at least its events.
  static bool Reached(const ServingDaemon& serving, const EventsByUser& events) {
    for (const auto& [user, lines] : events) {
      auto state = serving.daemon().LoadUser(user);
      if (!state.ok() || !state->has_value() ||
          (*state)->window.next_pos < static_cast<int64_t>(lines.size())) {
        return false;
      }
    }
    return true;
  }

  // Waits until the daemon's state holds `events` (or fails the test), then stops it.
  static void ServeUntil(ServingDaemon& serving, const EventsByUser& events) {
    EXPECT_TRUE(WaitFor([&] { return Reached(serving, events); }, kServeTimeout))
        << "the daemon did not reach the expected state in time";
    const Status stopped = serving.Stop();
    EXPECT_TRUE(stopped.ok()) << stopped.ToString();
  }

  // The direct decode of one user's events, with each event's newest rows kept as well.
  Reference Direct(const std::vector<std::string>& events) const {
    Reference ref;
    ref.window = testing::DecodeDirectly(
        *bundle_, events,
        [&](const encoders::KvWindow& w) {
          const int64_t slot = w.SlotOf(w.next_pos - 1);
          auto& k = ref.k.emplace_back();
          auto& v = ref.v.emplace_back();
          for (int64_t b = 0; b < w.n_blocks(); ++b) {
            const auto kr = w.KRow(b, slot);
            const auto vr = w.VRow(b, slot);
            k.emplace_back(kr.begin(), kr.end());
            v.emplace_back(vr.begin(), vr.end());
          }
        },
        direct_dtype_);
    return ref;
  }

  // `got` holds `want`'s state of every user, bit for bit (rows, positions, recent event ids),
  // and it is the direct decode of the user's events.
  void ExpectSameStates(const storage::UserStateStore& got, const storage::UserStateStore& want,
                        const EventsByUser& events) const {
    const auto& cfg = bundle_->config();
    for (const auto& [user, lines] : events) {
      SCOPED_TRACE(user);
      auto a = want.LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
      auto b = got.LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
      ASSERT_TRUE(a.ok() && a->has_value() && b.ok() && b->has_value());
      ExpectSameRows((*b)->window, (*a)->window);
      ExpectSameRows((*b)->window, Direct(lines).window);
      EXPECT_EQ((*b)->recent_event_ids, (*a)->recent_event_ids);
    }
  }

  // Every user's committed state is the direct decode of its events, bit for bit.
  void ExpectStateIsDirect(const Daemon& daemon, const EventsByUser& events) const {
    for (const auto& [user, lines] : events) {
      SCOPED_TRACE(user);
      auto state = daemon.LoadUser(user);
      ASSERT_TRUE(state.ok()) << state.status().ToString();
      ASSERT_TRUE(state->has_value());
      ExpectSameRows((*state)->window, Direct(lines).window);
    }
  }

  // Checks every output message (a delta of a known user whose rows are the direct rows of
  // their positions) and that every (user, position) was published; returns how many times
  // each was.
  std::map<std::string, std::map<int64_t, int>> ExpectEveryPositionPublished(
      const EventsByUser& events) const {
    std::map<std::string, Reference> refs;
    for (const auto& [user, lines] : events) {
      refs[user] = Direct(lines);
    }
    std::map<std::string, std::map<int64_t, int>> published;
    for (const TopicMessage& m : Read(kOutputTopic)) {
      auto tensors = encoders::DecodeReadyTensors(m.value);
      EXPECT_TRUE(tensors.ok()) << tensors.status().ToString();
      if (!tensors.ok()) {
        continue;
      }
      EXPECT_EQ(tensors->header.kind, encoders::ReadyKind::kDelta);
      EXPECT_TRUE(m.key.has_value()) << "a delta without a key";
      const std::string key = m.key.value_or("");
      EXPECT_EQ(tensors->header.user_id, key);
      EXPECT_EQ(tensors->header.model_id, bundle_->model_id());
      EXPECT_EQ(tensors->header.source_topic, kInputTopic);
      const auto ref = refs.find(key);
      EXPECT_NE(ref, refs.end()) << "delta for unknown user '" << key << "'";
      if (ref == refs.end()) {
        continue;
      }
      for (int64_t r = 0; r < tensors->rows(); ++r) {
        const int64_t p = tensors->pos[static_cast<std::size_t>(r)];
        EXPECT_GE(p, 0);
        EXPECT_LT(p, static_cast<int64_t>(ref->second.k.size())) << key;
        if (p < 0 || p >= static_cast<int64_t>(ref->second.k.size())) {
          continue;
        }
        ++published[key][p];
        const auto& wk = ref->second.k[static_cast<std::size_t>(p)];
        const auto& wv = ref->second.v[static_cast<std::size_t>(p)];
        for (std::size_t b = 0; b < wk.size(); ++b) {
          const auto at = static_cast<std::ptrdiff_t>(r * tensors->d_model);
          const std::vector<float> gk(tensors->k[b].begin() + at,
                                      tensors->k[b].begin() + at + tensors->d_model);
          const std::vector<float> gv(tensors->v[b].begin() + at,
                                      tensors->v[b].begin() + at + tensors->d_model);
          EXPECT_EQ(gk, wk[b]) << key << " pos " << p << " K block " << b;
          EXPECT_EQ(gv, wv[b]) << key << " pos " << p << " V block " << b;
        }
      }
    }
    for (const auto& [user, lines] : events) {
      EXPECT_EQ(published[user].size(), lines.size())
          << user << ": positions missing from the output topic";
    }
    return published;
  }

  static int64_t Total(const EventsByUser& events) {
    int64_t n = 0;
    for (const auto& [user, lines] : events) {
      n += static_cast<int64_t>(lines.size());
    }
    return n;
  }

  LogCapture logs_;  // First: outlives the daemons that log into it.
  testing::TempDir dir_{"rotor_daemon_test"};
  std::unique_ptr<EmbeddedKafka> kafka_;
  std::unique_ptr<encoders::Bundle> bundle_;
  std::atomic<int> files_{0};
  // The dtype of the direct decode the state is checked against (state.kv_dtype).
  encoders::KvDtype direct_dtype_ = encoders::KvDtype::kF32;
};

TEST_F(DaemonTest, InterleavedUsersGetExactStateAndEveryPositionIsPublished) {
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  auto serving = Serve(Config());
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);

  const DaemonStats stats = serving->daemon().stats();
  EXPECT_EQ(stats.records, Total(events));
  EXPECT_EQ(stats.events, Total(events));
  EXPECT_EQ(stats.replayed, 0);
  EXPECT_EQ(stats.dead_letters, 0);
  EXPECT_EQ(stats.failed_batches, 0);
  EXPECT_GE(stats.batches, Total(events) / 8);
  // The loop's time accounting: every batch processed was committed (no fault), the parts of
  // processing lie within it, and a served batch took time to fill, process and dispatch.
  EXPECT_EQ(stats.processed_batches, stats.batches);
  const DaemonStats::LoopTime& t = stats.loop_seconds;
  EXPECT_GT(t.process, 0);
  EXPECT_GT(t.decode, 0);
  EXPECT_GT(t.batch, 0);
  EXPECT_LE(t.decode + t.batch, t.process);
  EXPECT_GT(t.fill, 0);
  EXPECT_GT(t.dispatch, 0);
  EXPECT_GE(t.wait, 0);
  EXPECT_GT(t.idle, 0) << "the loop polled before the first event arrived";
  ExpectStateIsDirect(serving->daemon(), events);
  for (const auto& [user, counts] : ExpectEveryPositionPublished(events)) {
    for (const auto& [pos, n] : counts) {
      EXPECT_EQ(n, 1) << user << " pos " << pos << ": published again without a fault";
    }
  }
  EXPECT_TRUE(Read(kDeadLetterTopic).empty());
}

// Reconnects within a second once the broker is back (librdkafka's backoff grows to 10 s by
// default, which only makes the tests slower).
void FastReconnects(config::DaemonConfig& config) {
  config.kafka.consumer_properties["reconnect.backoff.max.ms"] = "1000";
  config.kafka.producer_properties["reconnect.backoff.max.ms"] = "1000";
}

TEST_F(DaemonTest, BrokerDownBrieflyLosesNothingAndIsLogged) {
  const EventsByUser events = GoldenUsers(6);
  config::DaemonConfig config = Config();
  FastReconnects(config);
  auto serving = Serve(config);
  ASSERT_NE(serving, nullptr);
  // Events trickle in for about 5 s; the broker goes away for 3 s once the daemon serves.
  std::thread producer([&] { Produce(Interleave(events), 50); });
  EXPECT_TRUE(WaitFor([&] { return Reached(*serving, Prefix(events, 2)); }, kServeTimeout));
  EXPECT_TRUE(kafka_->SetBrokerDown(1, true).ok());
  std::this_thread::sleep_for(milliseconds(3000));
  EXPECT_TRUE(kafka_->SetBrokerDown(1, false).ok());
  producer.join();
  ServeUntil(*serving, events);

  EXPECT_EQ(serving->daemon().stats().events, Total(events));
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);
  EXPECT_FALSE(logs_.Find(spdlog::level::warn, "brokers are down").empty());
}

TEST_F(DaemonTest, BrokerDownLongerThanTheSessionResumesFromTheStore) {
  const EventsByUser events = GoldenUsers(6);
  config::DaemonConfig config = Config();
  FastReconnects(config);
  config.kafka.session_timeout_ms = 3000;
  config.kafka.consumer_properties["heartbeat.interval.ms"] = "500";
  auto serving = Serve(config);
  ASSERT_NE(serving, nullptr);
  // The session times out while the broker is away: the partitions are lost, and once the
  // broker is back the daemon joins again and resumes from the offsets in its store.
  std::thread producer([&] { Produce(Interleave(events), 50); });
  EXPECT_TRUE(WaitFor([&] { return Reached(*serving, Prefix(events, 2)); }, kServeTimeout));
  EXPECT_TRUE(kafka_->SetBrokerDown(1, true).ok());
  std::this_thread::sleep_for(milliseconds(4500));
  EXPECT_TRUE(kafka_->SetBrokerDown(1, false).ok());
  producer.join();
  ServeUntil(*serving, events);

  EXPECT_EQ(serving->daemon().stats().replayed, 0);
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);
  EXPECT_FALSE(logs_.Find(spdlog::level::warn, "session timed out").empty());
  std::set<std::string> resumed;  // Partitions assigned again at a stored offset.
  for (const std::string& line : logs_.Find(spdlog::level::info, "assigned, resuming at ")) {
    if (line.find("the beginning") == std::string::npos) {
      resumed.insert(line.substr(0, line.find(':')));
    }
  }
  EXPECT_FALSE(resumed.empty()) << "no partition was assigned again after the session timeout";
}

TEST_F(DaemonTest, RetriableProduceErrorsAreRetriedWithoutLoss) {
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  // The daemon's first produce requests fail (it sends at least one per batch, 32 batches).
  kafka_->PushRequestErrors(
      0, {RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, 0, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
          RD_KAFKA_RESP_ERR_NOT_ENOUGH_REPLICAS});
  // One produce request in flight per connection. With several, librdkafka 2.0's mock cluster
  // loses messages here although every delivery report says success: seen in 2 of 5 runs once
  // the daemon fetched the output topic's metadata at start (so requests pipeline from the
  // first batch), 0 of 6 with this setting. The likely cause, not confirmed: the mock appends
  // the requests queued behind a failed one (a real broker refuses their sequence gap with
  // OUT_OF_ORDER_SEQUENCE_NUMBER and librdkafka resends in order), then takes the retried one
  // for a duplicate. docs/daemon.md, Known limits.
  config::DaemonConfig config = Config();
  config.kafka.producer_properties["max.in.flight.requests.per.connection"] = "1";
  auto serving = Serve(config);
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);

  EXPECT_EQ(serving->daemon().stats().failed_batches, 0) << "librdkafka retries these itself";
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);
}

// A broker slower than message.timeout.ms: librdkafka gives up on the batches' messages
// (_MSG_TIMED_OUT, transient), the daemon drops the batches, purges what is still queued,
// waits for the reports of what was sent, seeks back to the stored offsets and redoes them.
TEST_F(DaemonTest, ABrokerSlowerThanTheMessageTimeoutGetsTheBatchesRedone) {
  const EventsByUser events = GoldenUsers(6);
  config::DaemonConfig config = Config();
  FastReconnects(config);
  config.kafka.producer_properties["message.timeout.ms"] = "1500";
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  // The broker answers the daemon's first produce requests 2.5 s late: longer than the
  // messages may wait (message.timeout.ms), so they fail with _MSG_TIMED_OUT.
  kafka_->DelayRequests(1, 0, 3, 2500);
  auto serving = Serve(config);
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);

  const DaemonStats stats = serving->daemon().stats();
  EXPECT_GE(stats.failed_batches, 1) << "no delivery timed out: the outage was too short";
  EXPECT_GT(stats.records, Total(events)) << "the failed batches were not processed again";
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);
  EXPECT_FALSE(logs_.Find(spdlog::level::warn, "not delivered").empty());
}

// A delivery the broker refuses for good (here: authorization) is not retried in a loop: the
// daemon stops with an error naming the topic and the cause, and commits nothing of the batches
// that were not delivered, so a restart (once the cause is fixed) publishes every position.
TEST_F(DaemonTest, PermanentDeliveryErrorStopsServingAndCommitsNothingUndelivered) {
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  kafka_->PushRequestErrors(0, {0, 0, RD_KAFKA_RESP_ERR_TOPIC_AUTHORIZATION_FAILED});
  {
    auto serving = Serve(Config());
    ASSERT_NE(serving, nullptr);
    EXPECT_TRUE(WaitFor([&] { return serving->finished(); }, kServeTimeout))
        << "the daemon kept retrying a permanent error";
    const Status stopped = serving->Stop();
    EXPECT_EQ(stopped.code(), StatusCode::kFailedPrecondition) << stopped.ToString();
    EXPECT_NE(stopped.message().find("failed permanently"), std::string::npos)
        << stopped.ToString();
    EXPECT_NE(stopped.message().find("TOPIC_AUTHORIZATION_FAILED"), std::string::npos)
        << stopped.ToString();
  }
  auto serving = Serve(Config());  // The cause is gone: the restart redoes the rest.
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);
}

// An input message over librdkafka's message.max.bytes (1,000,000) used to be dead-lettered
// verbatim: the producer refused it, the daemon exited, and the batch (with other users' events)
// was committed on the way out without its deltas. Now its dead letter is cut to
// pipeline.max_message_bytes and serving goes on.
TEST_F(DaemonTest, InputOverTheProducerLimitIsDeadLetteredCutAndServingGoesOn) {
  const EventsByUser events = GoldenUsers(4);
  const std::string huge(1'100'000, ' ');
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 0, 10)));
  ASSERT_NO_FATAL_FAILURE(
      ProduceRaw(kafka_->bootstrap_servers(), kInputTopic, {{std::string("user-1"), huge}}));
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 10)));
  auto serving = Serve(Config());
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);
  const std::vector<TopicMessage> dead = Read(kDeadLetterTopic);
  ASSERT_EQ(dead.size(), 1U);
  const std::map<std::string, std::string> h(dead[0].headers.begin(), dead[0].headers.end());
  EXPECT_EQ(h.at(std::string(kHeaderError)), "oversized");
  EXPECT_EQ(h.at(std::string(kHeaderSourceValueBytes)), "1100000");
  EXPECT_EQ(dead[0].value, huge.substr(0, 65536));
}

// Start-up refuses what could only fail later: a snapshot or dead letter larger than the
// producer's message.max.bytes, a broker that does not answer, a topic that does not exist.
TEST_F(DaemonTest, StartFailsOnWhatCouldOnlyFailLater) {
  config::DaemonConfig too_small = Config();
  too_small.kafka.producer_properties["message.max.bytes"] = "20000";
  auto daemon = Daemon::Create(too_small);
  ASSERT_FALSE(daemon.ok());
  EXPECT_EQ(daemon.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(daemon.status().message().find("message.max.bytes = 20000"), std::string::npos)
      << daemon.status().ToString();

  config::DaemonConfig nobody = Config();
  nobody.kafka.bootstrap_servers = "127.0.0.1:1";
  nobody.kafka.connect_timeout_ms = 1000;
  const auto start = SteadyClock::now();
  daemon = Daemon::Create(nobody);
  ASSERT_FALSE(daemon.ok());
  EXPECT_LT(SteadyClock::now() - start, std::chrono::seconds(10));
  EXPECT_EQ(daemon.status().code(), StatusCode::kUnavailable);
  EXPECT_NE(daemon.status().message().find("kafka.connect_timeout_ms"), std::string::npos)
      << daemon.status().ToString();

  // State built while the input had 4 partitions, served against one with 8: keys moved.
  {
    auto first = Daemon::Create(Config());
    ASSERT_TRUE(first.ok()) << first.status().ToString();
  }
  kafka_.reset();
  auto eight = EmbeddedKafka::Start(1);
  ASSERT_TRUE(eight.ok());
  kafka_ = std::move(eight).value();
  for (const std::string_view topic : {kInputTopic, kOutputTopic, kDeadLetterTopic}) {
    ASSERT_TRUE(kafka_->CreateTopic(std::string(topic), 2 * kPartitions).ok());
  }
  // A changelog partitioned unlike the input.
  ASSERT_TRUE(kafka_->CreateTopic(std::string(kChangelogTopic), kPartitions).ok());
  daemon = Daemon::Create(Config());
  ASSERT_FALSE(daemon.ok());
  EXPECT_EQ(daemon.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(daemon.status().message().find("must be partitioned like the input"), std::string::npos)
      << daemon.status().ToString();
  config::DaemonConfig no_changelog = Config();
  no_changelog.kafka.changelog_topic = "no.such.changelog";
  daemon = Daemon::Create(no_changelog);
  ASSERT_FALSE(daemon.ok());
  EXPECT_NE(daemon.status().message().find("'no.such.changelog'"), std::string::npos);
  EXPECT_NE(daemon.status().message().find("changelog_topic: \"\""), std::string::npos)
      << daemon.status().ToString();
  no_changelog.kafka.changelog_topic = "";
  daemon = Daemon::Create(no_changelog);
  ASSERT_FALSE(daemon.ok());
  EXPECT_EQ(daemon.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(daemon.status().message().find("has 8 partitions"), std::string::npos)
      << daemon.status().ToString();

  config::DaemonConfig missing = Config();
  missing.kafka.output_topic = "no.such.topic";
  daemon = Daemon::Create(missing);
  ASSERT_FALSE(daemon.ok());
  EXPECT_NE(daemon.status().message().find("'no.such.topic'"), std::string::npos)
      << daemon.status().ToString();
}

TEST_F(DaemonTest, ExactlyOnceTransactionsSpanBatchesAndAnAbortedOneIsRetried) {
  const EventsByUser events = GoldenUsers(6);
  // Messages time out inside a transaction while the broker is away (a transient failure): it
  // is aborted, its batches abandoned, and their records consumed again from the stored
  // offsets. (A permanent one, such as INVALID_RECORD, stops the daemon instead.)
  config::DaemonConfig config = Config();
  FastReconnects(config);
  config.kafka.producer_properties["message.timeout.ms"] = "1500";
  config.delivery.mode = config::DeliveryMode::kExactlyOnce;
  config.delivery.transactional_id = "rotor-daemon-test";
  config.delivery.commit_interval_ms = 200;  // Many batches of 8 per transaction.
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  // The broker answers the daemon's first produce requests 2.5 s late: longer than the
  // messages may wait (message.timeout.ms), so they fail with _MSG_TIMED_OUT.
  kafka_->DelayRequests(1, 0, 3, 2500);
  auto serving = Serve(config);
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);

  const DaemonStats stats = serving->daemon().stats();
  EXPECT_GE(stats.failed_batches, 1);
  EXPECT_GT(stats.transactions, 0);
  EXPECT_LT(stats.transactions, stats.batches) << "no transaction spanned several batches";
  ExpectStateIsDirect(serving->daemon(), events);
  // The mock cluster of librdkafka 2.0 writes no abort markers, so read_committed cannot drop
  // the aborted transaction's messages here: "exactly once under read_committed" is checked
  // against the real broker (integration_tests/daemon_test.py --case eos).
  ExpectEveryPositionPublished(events);
  EXPECT_FALSE(logs_.Find(spdlog::level::warn, "aborting the transaction").empty());
}

// The default transactional.id comes from an id kept in the state directory: a restart of the
// instance keeps it (so it fences its own zombie), another instance (another directory) never
// shares it (a hostname-derived id could be shared by cloned replicas, which then fenced each
// other in a crash loop).
TEST_F(DaemonTest, TheDefaultTransactionalIdIsKeptPerStateDirectory) {
  config::DaemonConfig config = Config();
  config.delivery.mode = config::DeliveryMode::kExactlyOnce;
  config.delivery.transactional_id.clear();
  const auto id_of = [](const config::DaemonConfig& c) {
    auto daemon = Daemon::Create(c);
    EXPECT_TRUE(daemon.ok()) << daemon.status().ToString();
    return daemon.ok() ? (*daemon)->transactional_id() : std::string();
  };
  const std::string first = id_of(config);
  EXPECT_EQ(first.rfind(config.kafka.group_id + "-", 0), 0U) << first;
  EXPECT_EQ(id_of(config), first) << "a restart must keep its id";
  config::DaemonConfig other = config;
  other.state.dir = dir_.path() + "/other-state";
  const std::string second = id_of(other);
  EXPECT_FALSE(second.empty());
  EXPECT_NE(second, first) << "two instances must not share an id";
}

// A fenced producer (another instance took its transactional.id) must stop: the old code took
// the fencing error for "abort and redo the transaction" and went on. Nothing of the fenced
// transaction commits to RocksDB, so a restart redoes it.
TEST_F(DaemonTest, FencedTransactionalProducerStopsAndCommitsNothingOfItsTransaction) {
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  kafka_->PushRequestErrors(0, {0, 0, RD_KAFKA_RESP_ERR_PRODUCER_FENCED});
  config::DaemonConfig config = Config();
  config.delivery.mode = config::DeliveryMode::kExactlyOnce;
  config.delivery.transactional_id = "rotor-daemon-test-fenced";
  config.delivery.commit_interval_ms = 0;
  {
    auto serving = Serve(config);
    ASSERT_NE(serving, nullptr);
    EXPECT_TRUE(WaitFor([&] { return serving->finished(); }, kServeTimeout))
        << "a fenced producer went on serving";
    const Status stopped = serving->Stop();
    EXPECT_EQ(stopped.code(), StatusCode::kFailedPrecondition) << stopped.ToString();
  }
  auto serving = Serve(config);
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);
}

// A transaction whose commit fails with an abortable error, and whose abort then fails too
// (EndTxn refused twice): the daemon stops with the abort's error instead of going on with a
// transaction it could not end, commits nothing of it, and a restart publishes every position.
// (pipeline/internal/delivery_test.cc checks that the transaction is not left marked open.)
TEST_F(DaemonTest, AFailedAbortStopsServingAndCommitsNothingOfItsTransaction) {
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  constexpr int16_t kEndTxn = 26;
  kafka_->PushRequestErrors(kEndTxn,
                            {RD_KAFKA_RESP_ERR_INVALID_REQUEST, RD_KAFKA_RESP_ERR_INVALID_REQUEST});
  config::DaemonConfig config = Config();
  config.delivery.mode = config::DeliveryMode::kExactlyOnce;
  config.delivery.transactional_id = "rotor-daemon-test-abort";
  config.delivery.commit_interval_ms = 0;
  {
    auto serving = Serve(config);
    ASSERT_NE(serving, nullptr);
    EXPECT_TRUE(WaitFor([&] { return serving->finished(); }, kServeTimeout))
        << "the daemon went on after a failed abort";
    const Status stopped = serving->Stop();
    EXPECT_FALSE(stopped.ok());
    EXPECT_NE(stopped.message().find("abort_transaction"), std::string::npos) << stopped.ToString();
    EXPECT_EQ(serving->daemon().stats().transactions, 0);
    for (const auto& [user, lines] : events) {
      auto state = serving->daemon().LoadUser(user);
      ASSERT_TRUE(state.ok()) << state.status().ToString();
      EXPECT_FALSE(state->has_value()) << user << ": state of an aborted transaction committed";
    }
  }
  auto serving = Serve(config);
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);
}

// A flood of distinct users: the windows and WriteBatches held for batches in flight used to
// grow with max_batch_events x max_inflight_batches (about 1 GB at the defaults with 200k
// users), whatever the budgets said. Now a batch stops filling, and no batch starts, while
// pipeline.max_inflight_bytes is spent: the high-water mark stays within it plus one window.
TEST_F(DaemonTest, AFloodOfDistinctUsersStaysWithinTheInflightBudget) {
  const std::vector<std::string> template_events = testing::GoldenUserEvents("flood");
  std::vector<std::string> lines;
  EventsByUser events;
  for (int i = 0; i < 600; ++i) {
    const std::string user = fmt::format("flood-{}", i);
    std::string line = template_events[0];
    const std::string from = R"("user_id":"flood")";
    line.replace(line.find(from), from.size(), fmt::format(R"("user_id":"{}")", user));
    line.replace(line.find("flood/"), 6, user + "/");
    lines.push_back(line);
    events[user] = {line};
  }
  ASSERT_NO_FATAL_FAILURE(Produce(lines));
  config::DaemonConfig config = Config();
  config.pipeline.max_batch_events = 512;
  config.pipeline.max_inflight_batches = 8;
  config.pipeline.max_inflight_bytes = int64_t{1} << 20;
  auto serving = Serve(config);
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);
  ExpectStateIsDirect(serving->daemon(), events);
  const DaemonStats stats = serving->daemon().stats();
  // One user (its window, ids and WriteBatch share: Processor::user_bytes) may go over.
  auto store = storage::UserStateStore::Open({.path = dir_.path() + "/probe"});
  ASSERT_TRUE(store.ok());
  config::StateOptions no_cache = config.state;
  no_cache.window_cache_bytes = 0;
  auto processor = Processor::Create(*bundle_, **store, config.pipeline, config.output, no_cache,
                                     [] { return 0; });
  ASSERT_TRUE(processor.ok());
  EXPECT_GT(stats.peak_inflight_bytes, 0);
  EXPECT_LE(stats.peak_inflight_bytes,
            config.pipeline.max_inflight_bytes + (*processor)->user_bytes())
      << "windows held for batches in flight went past pipeline.max_inflight_bytes";
  EXPECT_GT(stats.batches, 600 / 512 + 1) << "the budget did not cut the batches short";
}

// A stop while deliveries hang (the broker answers produce requests a minute late) ends within
// delivery.shutdown_timeout_ms and the 10 s the producer gets to close, not after
// message.timeout.ms (5 minutes by default, against an orchestrator's 30 s grace). The
// undelivered batches commit nothing.
TEST_F(DaemonTest, AStopWhileDeliveriesHangEndsWithinTheShutdownTimeout) {
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  config::DaemonConfig config = Config();
  config.delivery.shutdown_timeout_ms = 1500;
  kafka_->DelayRequests(1, 0, 2, 60000);
  {
    auto serving = Serve(config);
    ASSERT_NE(serving, nullptr);
    EXPECT_TRUE(WaitFor([&] { return !logs_.Find(spdlog::level::info, "assigned").empty(); },
                        kServeTimeout));
    std::this_thread::sleep_for(milliseconds(1500));  // Batches are produced and hang.
    const auto asked = SteadyClock::now();
    const Status stopped = serving->Stop();
    EXPECT_TRUE(stopped.ok()) << stopped.ToString();
    EXPECT_LT(SteadyClock::now() - asked, std::chrono::seconds(15))
        << "the stop waited for the hanging deliveries";
    EXPECT_FALSE(logs_.Find(spdlog::level::warn, "delivery.shutdown_timeout_ms").empty());
    // Nothing was delivered, so nothing was committed (a restart redoes it all; the mock
    // cluster would delay its first requests too, so that is shown by the permanent-error test).
    for (const auto& [user, lines] : events) {
      auto state = serving->daemon().LoadUser(user);
      ASSERT_TRUE(state.ok()) << state.status().ToString();
      EXPECT_FALSE(state->has_value()) << user << ": state committed without its delivery";
    }
  }
}

TEST_F(DaemonTest, FetchErrorsWhileServingLoseNothing) {
  const EventsByUser events = GoldenUsers(6);
  auto serving = Serve(Config());
  ASSERT_NE(serving, nullptr);
  std::atomic<bool> produced{false};
  std::thread producer([&] {
    Produce(Interleave(events), 60);
    produced = true;
  });
  // A fetch error every 500 ms while the events arrive.
  const std::vector<int> errors = {
      RD_KAFKA_RESP_ERR_NOT_LEADER_FOR_PARTITION, RD_KAFKA_RESP_ERR_REQUEST_TIMED_OUT,
      RD_KAFKA_RESP_ERR_UNKNOWN_TOPIC_OR_PART, RD_KAFKA_RESP_ERR_LEADER_NOT_AVAILABLE};
  for (std::size_t i = 0; !produced.load(); ++i) {
    kafka_->PushRequestErrors(1, {errors[i % errors.size()]});
    std::this_thread::sleep_for(milliseconds(500));
  }
  producer.join();
  ServeUntil(*serving, events);

  EXPECT_EQ(serving->daemon().stats().events, Total(events));
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);
}

TEST_F(DaemonTest, RestartResumesFromTheStoredOffsets) {
  const EventsByUser events = GoldenUsers(6);
  constexpr std::size_t kFirst = 20;
  const EventsByUser first = Prefix(events, kFirst);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 0, kFirst)));
  config::DaemonConfig config = Config();
  config.kafka.session_timeout_ms = 3000;
  config.kafka.consumer_properties["heartbeat.interval.ms"] = "500";
  {
    auto serving = Serve(config);
    ASSERT_NE(serving, nullptr);
    ServeUntil(*serving, first);
    EXPECT_EQ(serving->daemon().stats().records, Total(first));
    ExpectStateIsDirect(serving->daemon(), first);
  }
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, kFirst)));
  auto serving = Serve(config);  // Same state directory, same group.
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);

  const DaemonStats stats = serving->daemon().stats();
  EXPECT_EQ(stats.records, Total(events) - Total(first)) << "the first half was consumed again";
  EXPECT_EQ(stats.replayed, 0);
  ExpectStateIsDirect(serving->daemon(), events);
  for (const auto& [user, counts] : ExpectEveryPositionPublished(events)) {
    for (const auto& [pos, n] : counts) {
      EXPECT_EQ(n, 1) << user << " pos " << pos << ": published again after the restart";
    }
  }
}

TEST_F(DaemonTest, BadMessagesGoToTheDeadLetterTopicAndGoodOnesSurvive) {
  const EventsByUser events = GoldenUsers(4);
  const std::string& other_users_event = events.at("user-0")[3];
  std::string nine_features = events.at("user-2")[0];
  nine_features.replace(nine_features.find("\"features\":["), 12, "\"features\":[1,");
  const std::string future = R"({"event_id":"x","user_id":"user-3","ts_ms":4102444800000,)"
                             R"("item":{"features":[0,0,0,0,0,0,0,0]}})";
  struct Bad {
    std::optional<std::string> key;
    std::string value;
    std::string code;
  };
  const std::vector<Bad> bad = {
      {"user-0", "{not json", "invalid_json"},
      {"user-1", other_users_event, "key_mismatch"},
      {std::nullopt, other_users_event, "key_mismatch"},
      {std::string(), other_users_event, "key_mismatch"},  // Empty, which is not absent.
      {"user-2", nine_features, "schema"},
      {"user-3", future, "ts_in_future"},
      {"user-3", R"({"user_id":"user-3","ts_ms":1767604447477})", "missing_field"},
      {"user-1", std::string(70000, ' '), "oversized"},
  };
  std::vector<std::pair<std::optional<std::string>, std::string>> raw;
  raw.reserve(bad.size());
  for (const Bad& b : bad) {
    raw.emplace_back(b.key, b.value);
  }
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 0, 10)));
  ASSERT_NO_FATAL_FAILURE(ProduceRaw(kafka_->bootstrap_servers(), kInputTopic, raw));
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 10)));

  auto serving = Serve(Config());
  ASSERT_NE(serving, nullptr);
  EXPECT_TRUE(WaitFor(
      [&] { return Reached(*serving, events) && Read(kDeadLetterTopic, 0).size() >= bad.size(); },
      kServeTimeout));
  const Status stopped = serving->Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.ToString();

  EXPECT_EQ(serving->daemon().stats().dead_letters, static_cast<int64_t>(bad.size()));
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);

  std::map<std::pair<int32_t, int64_t>, TopicMessage> input;
  for (TopicMessage& m : Read(kInputTopic)) {
    input[{m.partition, m.offset}] = std::move(m);
  }
  std::map<std::string, int> codes;  // rotor.error -> dead letters
  for (const TopicMessage& m : Read(kDeadLetterTopic)) {
    const std::map<std::string, std::string> h(m.headers.begin(), m.headers.end());
    ASSERT_EQ(h.count(std::string(kHeaderError)), 1U);
    ASSERT_EQ(h.count(std::string(kHeaderSourcePartition)), 1U);
    ASSERT_EQ(h.count(std::string(kHeaderSourceOffset)), 1U);
    EXPECT_EQ(h.at(std::string(kHeaderSourceTopic)), kInputTopic);
    EXPECT_FALSE(h.at(std::string(kHeaderErrorDetail)).empty());
    // The source coordinates name the original message; the dead letter carries its bytes.
    const auto source = input.find({std::stoi(h.at(std::string(kHeaderSourcePartition))),
                                    std::stoll(h.at(std::string(kHeaderSourceOffset)))});
    ASSERT_NE(source, input.end());
    // At most pipeline.max_message_bytes of them (the oversized one is cut).
    const auto kept = static_cast<std::size_t>(Config().pipeline.max_message_bytes);
    EXPECT_EQ(m.value, source->second.value.substr(0, kept));
    // The key too, and its absence: a keyless message's dead letter has no key, not "".
    EXPECT_EQ(m.key, source->second.key);
    const auto expected = std::find_if(bad.begin(), bad.end(), [&](const Bad& b) {
      return b.value.substr(0, kept) == m.value && b.key == m.key;
    });
    ASSERT_NE(expected, bad.end()) << "unexpected dead letter: " << m.value.substr(0, 80);
    EXPECT_EQ(h.at(std::string(kHeaderError)), expected->code) << m.value.substr(0, 80);
    ++codes[h.at(std::string(kHeaderError))];
  }
  const std::map<std::string, int> want = {{"invalid_json", 1},  {"key_mismatch", 3},
                                           {"schema", 1},        {"ts_in_future", 1},
                                           {"missing_field", 1}, {"oversized", 1}};
  EXPECT_EQ(codes, want);
}

TEST_F(DaemonTest, CoordinatorErrorWhileAssigningIsRetried) {
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  // The OffsetFetch that reads the group's committed offsets at assignment fails once.
  kafka_->PushRequestErrors(9, {RD_KAFKA_RESP_ERR_COORDINATOR_NOT_AVAILABLE});
  auto serving = Serve(Config());
  ASSERT_NE(serving, nullptr);
  ServeUntil(*serving, events);
  ExpectStateIsDirect(serving->daemon(), events);
  ExpectEveryPositionPublished(events);
}

TEST_F(DaemonTest, OffsetResetToTheBeginningDoesNotApplyRecordsTwice) {
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 0, 20)));
  auto serving = Serve(Config());
  ASSERT_NE(serving, nullptr);
  EXPECT_TRUE(WaitFor([&] { return Reached(*serving, Prefix(events, 20)); }, kServeTimeout));
  // Every partition's fetch fails as out of range (the log did not change): the daemon finds
  // its next offset still in the log and assigns the partitions there again (auto.offset.reset
  // is "error", so librdkafka never jumps by itself).
  kafka_->PushRequestErrors(1, {RD_KAFKA_RESP_ERR_OFFSET_OUT_OF_RANGE});
  std::this_thread::sleep_for(milliseconds(1000));
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 20)));
  ServeUntil(*serving, events);
  ExpectStateIsDirect(serving->daemon(), events);
}

// The state is ahead of the log (the topic was deleted and recreated, here: a new cluster with
// the same state directory): the records the state needs next can never come, and applying the
// new ones would append them to the old histories. Every such partition stops, with an error
// naming the offsets, and the state is left as it was.
TEST_F(DaemonTest, StateAheadOfTheLogStopsThePartition) {
  const EventsByUser events = GoldenUsers(6);
  const EventsByUser first = Prefix(events, 20);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 0, 20)));
  config::DaemonConfig config = Config();
  {
    auto serving = Serve(config);
    ASSERT_NE(serving, nullptr);
    ServeUntil(*serving, first);
  }
  ASSERT_NO_FATAL_FAILURE(SetUp());  // A new cluster: the topics start at offset 0 again.
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 20, 22)));
  config.kafka.bootstrap_servers = kafka_->bootstrap_servers();
  auto serving = Serve(config);
  ASSERT_NE(serving, nullptr);
  EXPECT_TRUE(
      WaitFor([&] { return !logs_.Find(spdlog::level::err, "stopped: ").empty(); }, kServeTimeout));
  std::this_thread::sleep_for(milliseconds(1000));  // Time to (wrongly) apply the new events.
  // The status says which partitions stopped and why; the daemon serves but is not ready.
  const DaemonStatus status = serving->daemon().status();
  EXPECT_TRUE(status.serving);
  EXPECT_FALSE(status.ready());
  EXPECT_NE(status.reason.find("is stopped"), std::string::npos) << status.reason;
  ASSERT_EQ(status.partitions.size(), static_cast<std::size_t>(kPartitions));
  int64_t stopped_partitions = 0;
  for (const PartitionReport& r : status.partitions) {
    SCOPED_TRACE(r.partition.partition);
    if (r.phase == PartitionPhase::kStopped) {
      ++stopped_partitions;
      EXPECT_NE(r.reason.find("the topic was recreated"), std::string::npos) << r.reason;
    } else {
      EXPECT_EQ(r.phase, PartitionPhase::kConsuming);  // A partition no user of `first` had.
      EXPECT_TRUE(r.reason.empty()) << r.reason;
    }
  }
  EXPECT_GE(stopped_partitions, 1);
  const Status stopped = serving->Stop();
  EXPECT_TRUE(stopped.ok()) << stopped.ToString();
  // The stats count every stop: a partition assigned again (a second rebalance, as a loaded
  // machine may see) stops again.
  EXPECT_LE(stopped_partitions, serving->daemon().stats().stopped_partitions);
  EXPECT_FALSE(serving->daemon().status().serving);
  EXPECT_EQ(serving->daemon().stats().events, 0);
  EXPECT_GE(serving->daemon().stats().stopped_partitions, 1);
  EXPECT_FALSE(logs_.Find(spdlog::level::err, "the topic was recreated").empty());
  ExpectStateIsDirect(serving->daemon(), first);
}

// Retention deleted records the state has not applied yet (here: the mock cluster drops a
// partition's oldest records beyond 5 MiB): the partition stops instead of skipping ahead. A
// partition without state whose log lost its start stops too, unless
// pipeline.allow_history_gaps says to start from the log's start anyway.
TEST_F(DaemonTest, RecordsDeletedBeforeTheyWereAppliedStopThePartition) {
  const EventsByUser events = GoldenUsers(2);
  config::DaemonConfig config = Config();
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 0, 5)));
  {
    auto serving = Serve(config);
    ASSERT_NE(serving, nullptr);
    ServeUntil(*serving, Prefix(events, 5));
  }
  // 6 MiB more into every partition while the daemon is away.
  const std::vector<std::pair<std::optional<std::string>, std::string>> junk(
      96, {std::string("junk"), std::string(65536, 'j')});
  for (int32_t p = 0; p < kPartitions; ++p) {
    ASSERT_NO_FATAL_FAILURE(ProduceRaw(kafka_->bootstrap_servers(), kInputTopic, junk, p));
  }
  {
    auto serving = Serve(config);
    ASSERT_NE(serving, nullptr);
    EXPECT_TRUE(
        WaitFor([&] { return logs_.Find(spdlog::level::err, "stopped: ").size() >= kPartitions; },
                kServeTimeout));
    const Status stopped = serving->Stop();
    EXPECT_TRUE(stopped.ok()) << stopped.ToString();
    EXPECT_EQ(serving->daemon().stats().stopped_partitions, kPartitions);
    EXPECT_EQ(serving->daemon().stats().records, 0);
    EXPECT_FALSE(logs_.Find(spdlog::level::err, "were deleted").empty());
    EXPECT_FALSE(logs_.Find(spdlog::level::err, "allow_history_gaps").empty());
    ExpectStateIsDirect(serving->daemon(), Prefix(events, 5));
  }
  // Allowed gaps start the partitions that had no state; those with state stay stopped.
  config.pipeline.allow_history_gaps = true;
  auto serving = Serve(config);
  ASSERT_NE(serving, nullptr);
  EXPECT_TRUE(
      WaitFor([&] { return logs_.Find(spdlog::level::err, "stopped: ").size() > kPartitions; },
              kServeTimeout));
  std::this_thread::sleep_for(milliseconds(2000));
  // Which partitions stand stopped (stats().stopped_partitions counts stops, and a busy machine
  // may rebalance the group once more, stopping the same partitions again).
  const DaemonStatus status = serving->daemon().status();
  const auto stopped_now =
      std::count_if(status.partitions.begin(), status.partitions.end(),
                    [](const PartitionReport& p) { return p.phase == PartitionPhase::kStopped; });
  const Status stopped = serving->Stop();
  EXPECT_TRUE(stopped.ok()) << stopped.ToString();
  const DaemonStats stats = serving->daemon().stats();
  EXPECT_GT(stats.stopped_partitions, 0);
  EXPECT_GT(stopped_now, 0);
  EXPECT_LT(stopped_now, static_cast<std::ptrdiff_t>(status.partitions.size()));
  EXPECT_EQ(status.partitions.size(), static_cast<std::size_t>(kPartitions));
  EXPECT_GT(stats.dead_letters, 0) << "the partitions without state did not start";
  ExpectStateIsDirect(serving->daemon(), Prefix(events, 5));
}

// state.user_ttl_ms in the daemon: a user whose last event is more than the TTL before its
// partition's watermark starts a fresh history (position 0) when it comes back, the sweep
// deletes the ones that do not come back, a partition whose event time moved little expires
// nobody, and `rotor replay --partitions N` of the same events builds the same state, user for
// user (a replay that put every event in one partition would expire the slow partition's users).
TEST_F(DaemonTest, UsersExpireByEventTimeAndReplayWithPartitionsBuildsTheSameState) {
  constexpr int64_t kT0 = 1767613858279;
  constexpr int64_t kMinute = 60000;
  constexpr int64_t kHour = 60 * kMinute;
  const auto event_at = [](const std::string& user, std::size_t i, int64_t ts) {
    std::string line = testing::GoldenUserEvents(user).at(i);
    line.replace(line.find("\"ts_ms\":"), 21, fmt::format("\"ts_ms\":{}", ts));
    return line;
  };
  // In the slow partition event time moves 50 minutes; in the others three hours.
  const int32_t slow = internal::JavaPartition("old-0", kPartitions);
  const auto is_slow = [&](const std::string& user) {
    return internal::JavaPartition(user, kPartitions) == slow;
  };
  std::vector<std::string> lines;
  std::map<std::string, std::vector<std::string>> want;  // User -> the events of its state.
  std::map<std::string, int64_t> last_ts;                // User -> its last event's time.
  const auto add = [&](const std::string& user, std::size_t i, int64_t ts) {
    lines.push_back(event_at(user, i, ts));
    want[user].push_back(lines.back());
    last_ts[user] = ts;
  };
  // 12 users at T0; then others in every partition; then half of the first 12 come back.
  for (int i = 0; i < 12; ++i) {
    const std::string user = fmt::format("old-{}", i);
    add(user, 0, kT0 + i);
    add(user, 1, kT0 + kMinute + i);
  }
  std::map<int32_t, int> late_partitions;
  for (int i = 0; late_partitions.size() < static_cast<std::size_t>(kPartitions) ||
                  std::any_of(late_partitions.begin(), late_partitions.end(),
                              [](const auto& entry) { return entry.second < 2; });
       ++i) {
    const std::string user = fmt::format("late-{}", i);
    add(user, 0, (is_slow(user) ? kT0 + 40 * kMinute : kT0 + 3 * kHour) + i);
    ++late_partitions[internal::JavaPartition(user, kPartitions)];
  }
  std::set<std::string> restarted;
  std::set<std::string> swept;
  for (int i = 0; i < 12; ++i) {
    const std::string user = fmt::format("old-{}", i);
    if (is_slow(user)) {
      if (i % 2 == 0) {
        add(user, 2, kT0 + 50 * kMinute + i);  // Within the TTL: the history goes on.
      }
    } else if (i % 2 == 0) {
      want[user].clear();  // Expired: a fresh history.
      add(user, 2, kT0 + 3 * kHour + kMinute + i);
      restarted.insert(user);
    } else {
      want.erase(user);  // Expired, and never back: the sweep deletes it.
      swept.insert(user);
    }
  }
  ASSERT_FALSE(restarted.empty());
  ASSERT_FALSE(swept.empty());
  const std::string last_of_first_part = fmt::format("old-{}", 10);
  ASSERT_NO_FATAL_FAILURE(Produce(lines));
  // Then more events of the late users: the sweep runs with the batches, and it leaves alone
  // the users held by batches still in flight (all of them, when the mock cluster hands the
  // daemon everything at once), so these batches sweep what the first ones could not.
  const std::size_t first_part = lines.size();
  for (int i = 0; want.contains(fmt::format("late-{}", i)); ++i) {
    const std::string user = fmt::format("late-{}", i);
    add(user, 1, (is_slow(user) ? kT0 + 45 * kMinute : kT0 + 3 * kHour + 2 * kMinute) + i);
  }

  config::DaemonConfig config = Config();
  config.state.user_ttl_ms = kHour;
  config.state.ttl_sweep_users_per_batch = 1000;
  {
    auto serving = Serve(config);
    ASSERT_NE(serving, nullptr);
    const auto holds = [&](const std::string& user) {
      auto state = serving->daemon().LoadUser(user);
      return state.ok() && state->has_value() &&
             (*state)->window.next_pos == static_cast<int64_t>(want[user].size()) &&
             (*state)->window.last_ts_ms == last_ts[user];
    };
    EXPECT_TRUE(WaitFor([&] { return holds(last_of_first_part); }, kServeTimeout));
    ASSERT_NO_FATAL_FAILURE(Produce(std::vector<std::string>(
        lines.begin() + static_cast<std::ptrdiff_t>(first_part), lines.end())));
    const auto done = [&] {
      for (const std::string& user : swept) {
        auto state = serving->daemon().LoadUser(user);
        if (!state.ok() || state->has_value()) {
          return false;
        }
      }
      return std::all_of(want.begin(), want.end(),
                         [&](const auto& entry) { return holds(entry.first); });
    };
    EXPECT_TRUE(WaitFor(done, kServeTimeout)) << "no expiry, or no sweep, in time";
    const Status stopped = serving->Stop();
    ASSERT_TRUE(stopped.ok()) << stopped.ToString();
    const DaemonStats stats = serving->daemon().stats();
    EXPECT_EQ(stats.records, static_cast<int64_t>(lines.size()));
    // Every expired user was swept, or restarted when it came back before the sweep reached it.
    EXPECT_GE(stats.expired_users, static_cast<int64_t>(swept.size()));
    EXPECT_LE(stats.restarted_histories, static_cast<int64_t>(restarted.size()));
    ExpectStateIsDirect(serving->daemon(), want);
    EXPECT_FALSE(logs_.Find(spdlog::level::info, "expired users deleted").empty());
  }
  // A restarted user's last delta is its fresh history's first row.
  std::map<std::string, std::vector<int64_t>> last_delta;
  for (const TopicMessage& m : Read(kOutputTopic)) {
    auto tensors = encoders::DecodeReadyTensors(m.value);
    ASSERT_TRUE(tensors.ok());
    last_delta[m.key.value_or("")] = tensors->pos;
  }
  for (const std::string& user : restarted) {
    EXPECT_EQ(last_delta[user], std::vector<int64_t>{0}) << user;
  }

  // The same events replayed from a file, placed in their partitions.
  const std::string file = dir_.path() + "/ttl-events.jsonl";
  ASSERT_NO_FATAL_FAILURE(WriteLines(file, lines));
  config::DaemonConfig replay = config;
  replay.state.dir = dir_.path() + "/replayed";
  const auto refused = ReplayFile(replay, *bundle_, file);
  ASSERT_FALSE(refused.ok()) << "a TTL replay without a partition count";
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument);
  EXPECT_NE(refused.status().message().find("--partitions"), std::string_view::npos)
      << refused.status().ToString();
  EXPECT_FALSE(std::filesystem::exists(replay.state.dir + "/CURRENT"));
  const auto replayed = ReplayFile(replay, *bundle_, file, {.partitions = kPartitions});
  ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
  EXPECT_EQ(replayed->events, static_cast<int64_t>(lines.size()));

  const auto& cfg = bundle_->config();
  const auto all_states = [&](const std::string& dir) {
    std::map<std::string, std::pair<std::vector<std::string>, std::string>> out;
    auto store = storage::UserStateStore::Open({.path = dir, .create_if_missing = false});
    EXPECT_TRUE(store.ok()) << store.status().ToString();
    if (!store.ok()) {
      return out;
    }
    const auto users = (*store)->ListUsers();
    EXPECT_TRUE(users.ok());
    for (const std::string& user : users.ok() ? *users : std::vector<std::string>{}) {
      auto state = (*store)->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
      EXPECT_TRUE(state.ok() && state->has_value()) << user;
      const encoders::KvWindow& w = (*state)->window;
      std::string rows = fmt::format("{} {} {}", w.next_pos, w.rows, w.last_ts_ms);
      for (int64_t p = w.next_pos - w.rows; p < w.next_pos; ++p) {
        for (int64_t b = 0; b < w.n_blocks(); ++b) {
          const auto k = w.KRow(b, w.SlotOf(p));
          const auto v = w.VRow(b, w.SlotOf(p));
          rows.append(reinterpret_cast<const char*>(k.data()), k.size_bytes());
          rows.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
        }
      }
      out[user] = {(*state)->recent_event_ids, rows};
    }
    return out;
  };
  const auto served_states = all_states(config.state.dir);
  const auto replayed_states = all_states(replay.state.dir);
  EXPECT_EQ(served_states.size(), want.size());
  EXPECT_TRUE(served_states == replayed_states) << "replay --partitions differs from serve";
  // The replay recorded the count; another one is refused there.
  const auto other_count = ReplayFile(replay, *bundle_, file, {.partitions = kPartitions + 1});
  EXPECT_EQ(other_count.status().code(), StatusCode::kFailedPrecondition)
      << other_count.status().ToString();
}

// The app's runtime lends the daemon its bundle, store, metrics registry and committed view:
// the daemon serves and commits into the lent store, which stays open (and usable) after the
// daemon is gone, publishes its hot users' committed state into the view, and PartitionOf is
// where the producer routed each user.
TEST_F(DaemonTest, ADaemonWithLentResourcesCommitsIntoTheLentStore) {
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  const config::DaemonConfig config = Config();
  auto store = storage::UserStateStore::Open(StoreOptionsFor(config));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  common::MetricsRegistry registry;
  storage::CommittedView view(bundle_->model_id());
  const auto refused = Daemon::Create(config, DaemonResources{.bundle = bundle_.get()});
  EXPECT_EQ(refused.status().code(), StatusCode::kInvalidArgument) << refused.status().ToString();
  {
    auto daemon = Daemon::Create(config, DaemonResources{.bundle = bundle_.get(),
                                                         .store = store->get(),
                                                         .metrics = &registry,
                                                         .committed_view = &view});
    ASSERT_TRUE(daemon.ok()) << daemon.status().ToString();
    EXPECT_EQ((*daemon)->input_topic(), kInputTopic);
    EXPECT_EQ(&(*daemon)->bundle(), bundle_.get());
    const DaemonStatus before = (*daemon)->status();
    EXPECT_FALSE(before.serving);
    EXPECT_FALSE(before.ready());
    EXPECT_NE(before.reason.find("Run has not started"), std::string::npos) << before.reason;
    ServingDaemon serving(std::move(daemon).value());
    EXPECT_TRUE(WaitFor([&] { return Reached(serving, events); }, kServeTimeout));
    // The lent committed view holds every (hot) user as committed, with its partition's
    // committed offset, read while the daemon runs. (A batch is published after its commit,
    // once the loop finishes it: wait for the last.)
    const auto all_hot = [&] {
      return std::ranges::all_of(events, [&](const auto& user_lines) {
        const auto& [user, lines] = user_lines;
        const TopicPartition tp{std::string(kInputTopic), serving.daemon().PartitionOf(user)};
        const storage::CommittedView::Read read = view.Find(user, tp);
        return read.state != nullptr &&
               read.state->window.next_pos == Direct(lines).window.next_pos;
      });
    };
    EXPECT_TRUE(WaitFor(all_hot, kServeTimeout));
    const auto stored_offsets = (*store)->LoadOffsets();
    ASSERT_TRUE(stored_offsets.ok());
    for (const auto& [user, lines] : events) {
      const TopicPartition tp{std::string(kInputTopic), serving.daemon().PartitionOf(user)};
      const storage::CommittedView::Read read = view.Find(user, tp);
      ASSERT_NE(read.state, nullptr) << user;
      ExpectSameRows(read.state->window, Direct(lines).window);
      EXPECT_EQ(read.next_offset, stored_offsets->at(tp)) << user;
    }
    const Status stopped = serving.Stop();
    EXPECT_TRUE(stopped.ok()) << stopped.ToString();
    EXPECT_EQ(view.size(), 0U);  // Leaving the group revoked every partition.
    ExpectStateIsDirect(serving.daemon(), events);
    // PartitionOf: the partition every user's records are in (the producer's murmur2).
    for (const TopicMessage& m : Read(kInputTopic)) {
      ASSERT_TRUE(m.key.has_value());
      EXPECT_EQ(serving.daemon().PartitionOf(*m.key), m.partition) << *m.key;
    }
    EXPECT_EQ(serving.daemon().PartitionOf("user-0"),
              internal::JavaPartition("user-0", kPartitions));
  }
  // The daemon is gone; the lent store is still open and holds what it committed.
  const auto& cfg = bundle_->config();
  for (const auto& [user, lines] : events) {
    auto state = (*store)->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
    ASSERT_TRUE(state.ok()) << state.status().ToString();
    ASSERT_TRUE(state->has_value()) << user;
    ExpectSameRows((*state)->window, Direct(lines).window);
  }
  const auto offsets = (*store)->LoadOffsets();
  ASSERT_TRUE(offsets.ok());
  int64_t next = 0;
  for (const auto& [tp, offset] : *offsets) {
    EXPECT_EQ(tp.topic, kInputTopic);
    next += offset;
  }
  EXPECT_EQ(next, Total(events));
  EXPECT_EQ(Sample(ParseMetrics(registry.Render()), "rotor_events_total"), Total(events));
}

// status() through a daemon's life: not serving before Run and until the group assigns it
// partitions; a fresh state directory in a group that already published restores (re-applies
// without publishing) until it has caught up with the group's committed offsets; then every
// partition consumes, and once the input is drained the lag is 0.
TEST_F(DaemonTest, StatusReportsRestoringUntilThePublishedInputIsReappliedThenConsuming) {
  const EventsByUser events = GoldenUsers(6);
  const EventsByUser first = Prefix(events, 20);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 0, 20)));
  config::DaemonConfig config = Config();
  // The input re-apply path (with a changelog, the new instance restores from it instead:
  // AnInstanceWithoutStateRestoresFromTheChangelogInsteadOfReplaying).
  config.kafka.changelog_topic = "";
  {
    auto serving = Serve(config);
    ASSERT_NE(serving, nullptr);
    ServeUntil(*serving, first);
  }
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 20)));
  // Another state directory in the same group: the group's committed offsets are ahead of it.
  config.state.dir = dir_.path() + "/fresh-state";
  // Its first fetches come late, so the restore takes a while to begin.
  kafka_->DelayRequests(1, /*Fetch*/ 1, 3, 1500);
  auto daemon = Daemon::Create(config);
  ASSERT_TRUE(daemon.ok()) << daemon.status().ToString();
  EXPECT_FALSE((*daemon)->status().serving);
  ServingDaemon serving(std::move(daemon).value());
  bool saw_waiting = false;
  std::optional<DaemonStatus> restoring;
  EXPECT_TRUE(WaitFor(
      [&] {
        const DaemonStatus s = serving.daemon().status();
        if (!s.serving && s.reason == "waiting for the group's assignment") {
          saw_waiting = true;
        }
        if (s.serving && !restoring &&
            std::any_of(s.partitions.begin(), s.partitions.end(), [](const PartitionReport& r) {
              return r.phase == PartitionPhase::kRestoring;
            })) {
          restoring = s;
        }
        return Reached(serving, events);
      },
      kServeTimeout));
  EXPECT_TRUE(saw_waiting);
  ASSERT_TRUE(restoring.has_value()) << "no restoring phase seen";
  EXPECT_FALSE(restoring->ready());
  EXPECT_NE(restoring->reason.find("is restoring: "), std::string::npos) << restoring->reason;
  EXPECT_NE(restoring->reason.find("records to re-apply"), std::string::npos) << restoring->reason;
  for (const PartitionReport& r : restoring->partitions) {
    if (r.phase == PartitionPhase::kRestoring) {
      EXPECT_NE(r.reason.find(fmt::format("partition {} of 'rotor.events' is restoring",
                                          r.partition.partition)),
                std::string::npos)
          << r.reason;
    }
  }
  // Caught up and drained: every partition consuming, nothing left to consume.
  DaemonStatus last;
  EXPECT_TRUE(WaitFor(
      [&] {
        last = serving.daemon().status();
        return last.ready() && std::all_of(last.partitions.begin(), last.partitions.end(),
                                           [](const PartitionReport& r) { return r.lag == 0; });
      },
      kServeTimeout))
      << last.reason;
  EXPECT_TRUE(last.reason.empty()) << last.reason;
  ASSERT_EQ(last.partitions.size(), static_cast<std::size_t>(kPartitions));
  int64_t ends = 0;
  for (int32_t p = 0; p < kPartitions; ++p) {
    const PartitionReport& r = last.partitions[static_cast<std::size_t>(p)];
    EXPECT_EQ(r.partition, (TopicPartition{std::string(kInputTopic), p}));
    EXPECT_EQ(r.phase, PartitionPhase::kConsuming);
    // A partition none of the users is in has nothing to apply, and no next offset yet.
    EXPECT_TRUE(r.next_offset == r.high_watermark || (r.next_offset == -1 && r.high_watermark == 0))
        << r.next_offset << " " << r.high_watermark;
    ends += r.high_watermark;
  }
  EXPECT_EQ(ends, Total(events));
  const Status stopped = serving.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.ToString();
  EXPECT_FALSE(serving.daemon().status().serving);
  EXPECT_EQ(serving.daemon().stats().replayed, Total(first))
      << "what the group published is re-applied";
  ExpectStateIsDirect(serving.daemon(), events);
}

// The metrics after a run with known input: valid events, refused ones of known reasons and
// repeated event ids; each counter holds exactly what the input implies, and the latency
// histograms saw every batch and every published record.
TEST_F(DaemonTest, MetricsCountExactlyWhatTheInputHeld) {
  const EventsByUser events = GoldenUsers(4);
  const EventsByUser valid = Prefix(events, 10);
  const std::vector<std::string> lines = Interleave(events, 0, 10);
  std::string nine_features = events.at("user-2")[11];
  nine_features.replace(nine_features.find("\"features\":["), 12, "\"features\":[1,");
  const std::string future = R"({"event_id":"x","user_id":"user-3","ts_ms":4102444800000,)"
                             R"("item":{"features":[0,0,0,0,0,0,0,0]}})";
  const std::vector<std::pair<std::optional<std::string>, std::string>> bad = {
      {"user-0", "{not json"},
      {"user-1", "[1, 2"},
      {"user-2", nine_features},
      {"user-3", future},
      {"user-3", R"({"user_id":"user-3","ts_ms":1767604447477})"},
  };
  // Three events sent again (same event ids): dropped as duplicates.
  const std::vector<std::string> repeated(lines.begin(), lines.begin() + 3);
  ASSERT_NO_FATAL_FAILURE(Produce(lines));
  ASSERT_NO_FATAL_FAILURE(ProduceRaw(kafka_->bootstrap_servers(), kInputTopic, bad));
  ASSERT_NO_FATAL_FAILURE(Produce(repeated));
  const auto n = static_cast<double>(lines.size());
  const auto k = static_cast<double>(bad.size());
  const auto d = static_cast<double>(repeated.size());

  config::DaemonConfig config = Config();
  config.pipeline.dedupe_ids_per_user = 64;
  auto store = storage::UserStateStore::Open(StoreOptionsFor(config));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  common::MetricsRegistry registry;
  auto daemon = Daemon::Create(
      config, {.bundle = bundle_.get(), .store = store->get(), .metrics = &registry});
  ASSERT_TRUE(daemon.ok()) << daemon.status().ToString();
  ServingDaemon serving(std::move(daemon).value());
  const std::string lag0 = R"(rotor_consumer_lag{topic="rotor.events",partition="0"})";
  std::map<std::string, double> samples;
  EXPECT_TRUE(WaitFor(
      [&] {
        samples = ParseMetrics(registry.Render());
        return samples["rotor_input_records_total"] == n + k + d && samples["rotor_ready"] == 1 &&
               samples.contains(lag0) && samples[lag0] == 0;
      },
      kServeTimeout));
  for (int32_t p = 0; p < kPartitions; ++p) {
    const std::string labels = fmt::format(R"({{topic="rotor.events",partition="{}"}})", p);
    EXPECT_EQ(Sample(samples, "rotor_partition_phase" + labels), 1) << p;
  }
  EXPECT_GT(Sample(samples, "rotor_rocksdb_memtable_bytes"), 0);
  EXPECT_GE(Sample(samples, "rotor_rocksdb_block_cache_usage_bytes"), 0);
  EXPECT_EQ(Sample(samples, "rotor_rocksdb_write_stopped"), 0);
  const Status stopped = serving.Stop();
  ASSERT_TRUE(stopped.ok()) << stopped.ToString();
  ExpectStateIsDirect(serving.daemon(), valid);

  const DaemonStats stats = serving.daemon().stats();
  samples = ParseMetrics(registry.Render());
  EXPECT_EQ(Sample(samples, "rotor_input_records_total"), n + k + d);
  EXPECT_EQ(Sample(samples, "rotor_events_total"), n);
  EXPECT_EQ(Sample(samples, "rotor_replayed_events_total"), 0);
  EXPECT_EQ(Sample(samples, "rotor_duplicates_total"), d);
  const std::map<std::string, double> reasons = {
      {"invalid_json", 2}, {"schema", 1},    {"ts_in_future", 1},   {"missing_field", 1},
      {"key_mismatch", 0}, {"oversized", 0}, {"wrong_partition", 0}};
  for (const auto& [reason, count] : reasons) {
    EXPECT_EQ(Sample(samples, fmt::format(R"(rotor_dead_letters_total{{reason="{}"}})", reason)),
              count)
        << reason;
  }
  EXPECT_EQ(Sample(samples, R"(rotor_published_messages_total{kind="dead_letter"})"), k);
  EXPECT_EQ(Sample(samples, R"(rotor_published_messages_total{kind="delta"})"),
            static_cast<double>(stats.deltas));
  EXPECT_GT(stats.deltas, 0);
  EXPECT_EQ(Sample(samples, R"(rotor_published_messages_total{kind="snapshot"})"), 0);
  EXPECT_EQ(Sample(samples, "rotor_batches_total"), static_cast<double>(stats.batches));
  EXPECT_EQ(Sample(samples, "rotor_failed_batches_total"), 0);
  EXPECT_EQ(Sample(samples, "rotor_transactions_total"), 0);
  EXPECT_EQ(Sample(samples, "rotor_stopped_partitions_total"), 0);
  EXPECT_EQ(Sample(samples, "rotor_expired_users_total"), 0);
  EXPECT_EQ(Sample(samples, "rotor_ready"), 0) << "not ready once stopped";
  // Every committed batch was timed, and every published record's latency observed.
  EXPECT_EQ(Sample(samples, "rotor_batch_seconds_count"), static_cast<double>(stats.batches));
  EXPECT_GT(Sample(samples, R"(rotor_batch_seconds_bucket{le="+Inf"})"), 0);
  EXPECT_EQ(Sample(samples, "rotor_event_to_publish_seconds_count"), n + k + d);
  EXPECT_GT(Sample(samples, "rotor_event_to_publish_seconds_sum"), 0);
  bool found_build = false;
  for (const auto& [series, value] : samples) {
    if (series.starts_with("rotor_build_info{") &&
        series.find(fmt::format(R"(model_id="{}")", bundle_->model_id())) != std::string::npos &&
        series.find(R"(simd_target="")") == std::string::npos) {
      found_build = true;
      EXPECT_EQ(value, 1);
    }
  }
  EXPECT_TRUE(found_build) << "no rotor_build_info with the model id and a SIMD target";
}

// Replay into a store the caller opened: the store stays open, holds the replayed state, and a
// second replay of the same file resumes past what the first committed.
TEST_F(DaemonTest, ReplayIntoALentStoreBuildsTheDirectStateAndResumes) {
  const EventsByUser events = GoldenUsers(3);
  const std::string file = dir_.path() + "/replay.jsonl";
  ASSERT_NO_FATAL_FAILURE(WriteLines(file, Interleave(events)));
  const config::DaemonConfig config = Config();
  auto store = storage::UserStateStore::Open(StoreOptionsFor(config));
  ASSERT_TRUE(store.ok()) << store.status().ToString();
  const auto replayed = ReplayFile(config, *bundle_, **store, file);
  ASSERT_TRUE(replayed.ok()) << replayed.status().ToString();
  EXPECT_EQ(replayed->events, Total(events));
  const auto& cfg = bundle_->config();
  for (const auto& [user, lines] : events) {
    auto state = (*store)->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
    ASSERT_TRUE(state.ok() && state->has_value()) << user;
    ExpectSameRows((*state)->window, Direct(lines).window);
  }
  const auto again = ReplayFile(config, *bundle_, **store, file);
  ASSERT_TRUE(again.ok()) << again.status().ToString();
  EXPECT_EQ(again->records, 0);
}

// ---- rotor replay --kafka: the input topic as a record source ----

// A store opened on `config.state.dir` (created).
std::unique_ptr<storage::UserStateStore> OpenStore(const config::DaemonConfig& config) {
  auto store = storage::UserStateStore::Open(StoreOptionsFor(config));
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  return store.ok() ? std::move(store).value() : nullptr;
}

// The stored offsets of `topic` only.
PartitionOffsets OffsetsOf(const storage::UserStateStore& store, std::string_view topic) {
  auto offsets = store.LoadOffsets();
  EXPECT_TRUE(offsets.ok()) << offsets.status().ToString();
  PartitionOffsets out;
  if (!offsets.ok()) {
    return out;
  }
  for (const auto& [tp, next] : *offsets) {
    if (tp.topic == topic) {
      out[tp] = next;
    }
  }
  return out;
}

TEST_F(DaemonTest, KafkaReplayBuildsWhatServingBuildsAndCatchesUpWhenRunAgain) {
  const EventsByUser events = GoldenUsers(6);
  const std::size_t half = events.begin()->second.size() / 2;
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 0, half)));

  // Replay the first half (two workers, nothing published), then, once the rest arrived, run
  // the same replay again: it resumes at the stored offsets and catches up to the new end.
  config::DaemonConfig replay_config = Config();
  replay_config.state.dir = dir_.path() + "/replayed";
  {
    auto store = OpenStore(replay_config);
    ASSERT_NE(store, nullptr);
    KafkaReplayOptions options;
    options.jobs = 2;
    std::vector<ReplayProgress> reports;
    options.on_progress = [&](const ReplayProgress& p) {
      reports.push_back(p);
    };
    const auto first = ReplayKafka(replay_config, *bundle_, *store, options);
    ASSERT_TRUE(first.ok()) << first.status().ToString();
    EXPECT_EQ(first->events, Total(Prefix(events, half)));
    EXPECT_EQ(first->partitions, kPartitions);
    EXPECT_EQ(first->resumed_partitions, 0);
    EXPECT_EQ(first->published, 0);
    ASSERT_FALSE(reports.empty());
    EXPECT_TRUE(reports.back().finished);
    EXPECT_EQ(reports.back().records_done, reports.back().records_total);
    EXPECT_EQ(reports.back().records_total, Total(Prefix(events, half)));
    EXPECT_EQ(reports.back().partitions_done, kPartitions);
    for (const auto& [user, lines] : Prefix(events, half)) {
      auto state = store->LoadUserState(user, bundle_->config().n_blocks(),
                                        bundle_->config().window, bundle_->config().d_model);
      ASSERT_TRUE(state.ok() && state->has_value()) << user;
      ExpectSameRows((*state)->window, Direct(lines).window);
    }
  }
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, half)));
  {
    auto store = OpenStore(replay_config);
    ASSERT_NE(store, nullptr);
    const auto second = ReplayKafka(replay_config, *bundle_, *store, {});
    ASSERT_TRUE(second.ok()) << second.status().ToString();
    std::set<int32_t> used;  // Partitions holding users: those with offsets to resume from.
    for (const auto& [user, lines] : events) {
      used.insert(internal::JavaPartition(user, kPartitions));
    }
    EXPECT_EQ(second->resumed_partitions, static_cast<int32_t>(used.size()));
    EXPECT_EQ(second->events, Total(events) - Total(Prefix(events, half)));
  }

  // `rotor serve` over the same topic into its own state directory.
  config::DaemonConfig serve_config = Config();
  serve_config.state.dir = dir_.path() + "/served";
  {
    auto serving = Serve(serve_config);
    ASSERT_NE(serving, nullptr);
    ServeUntil(*serving, events);
  }
  // The same state, user by user (bit for bit), the same offsets and event-time watermarks.
  auto served = OpenStore(serve_config);
  auto replayed = OpenStore(replay_config);
  ASSERT_NE(served, nullptr);
  ASSERT_NE(replayed, nullptr);
  ExpectSameStates(*replayed, *served, events);
  EXPECT_EQ(OffsetsOf(*replayed, kInputTopic), OffsetsOf(*served, kInputTopic));
  EXPECT_EQ(replayed->LoadWatermarks().value(), served->LoadWatermarks().value());
}

// state.kv_dtype bf16: the state is the direct decode with its rows rounded to bf16, bit for
// bit, and every position is published with them; a start with another kv_dtype on that state
// directory is refused, naming the setting; a replay from Kafka builds the same state bit for
// bit (the stored 16-bit rows widen back to exactly the rows the decoder wrote).
TEST_F(DaemonTest, Bf16StateIsTheRoundedDirectDecodeAndAReplayBuildsItBitForBit) {
  direct_dtype_ = encoders::KvDtype::kBF16;
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  config::DaemonConfig config = Config();
  config.state.kv_dtype = config::KvDtype::kBF16;
  {
    auto serving = Serve(config);
    ASSERT_NE(serving, nullptr);
    ServeUntil(*serving, events);
    ExpectStateIsDirect(serving->daemon(), events);
  }
  ExpectEveryPositionPublished(events);

  config::DaemonConfig f32 = config;
  f32.state.kv_dtype = config::KvDtype::kF32;
  auto refused = Daemon::Create(f32);
  ASSERT_FALSE(refused.ok()) << "a bf16 state directory was opened as f32";
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("state.kv_dtype is f32, but the state directory "
                                            "holds K/V rows in bf16"),
            std::string::npos)
      << refused.status().ToString();

  config::DaemonConfig replay_config = config;
  replay_config.state.dir = dir_.path() + "/replayed";
  auto served = OpenStore(config);
  auto replayed = OpenStore(replay_config);
  ASSERT_NE(served, nullptr);
  ASSERT_NE(replayed, nullptr);
  const auto done = ReplayKafka(replay_config, *bundle_, *replayed, {});
  ASSERT_TRUE(done.ok()) << done.status().ToString();
  ExpectSameStates(*replayed, *served, events);
}

// Timestamps are looked up with ListOffsets, which the mock cluster answers only for the log's
// ends: integration_tests/daemon_test.py --case replay covers them on the real broker.
TEST_F(DaemonTest, KafkaReplayTakesOffsetRangesPerPartition) {
  const EventsByUser events = GoldenUsers(8);
  const std::size_t half = events.begin()->second.size() / 2;
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 0, half)));
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, half)));
  // Where the first half ends in each partition.
  std::map<int32_t, int64_t> first_half_end;
  std::map<int32_t, int64_t> partition_end;
  for (const auto& [user, lines] : events) {
    const int32_t p = internal::JavaPartition(user, kPartitions);
    first_half_end[p] += static_cast<int64_t>(half);
    partition_end[p] += static_cast<int64_t>(lines.size());
  }

  // Partition 1 from its start to where the first half ends, partition 2 from there to its
  // end (a time past every record: its end), no other partition.
  {
    config::DaemonConfig config = Config();
    config.state.dir = dir_.path() + "/by-offset";
    auto store = OpenStore(config);
    ASSERT_NE(store, nullptr);
    KafkaReplayOptions options;
    options.partitions = {1, 2};
    options.end_of[1] = ParseOffsetSpec(std::to_string(first_half_end[1])).value();
    options.start_of[2] = ParseOffsetSpec(std::to_string(first_half_end[2])).value();
    options.end_of[2] = ParseOffsetSpec("@2100-01-01T00:00:00Z").value();
    options.end_given = true;
    const auto stats = ReplayKafka(config, *bundle_, *store, options);
    ASSERT_TRUE(stats.ok()) << stats.status().ToString();
    EXPECT_EQ(stats->partitions, 2);
    EXPECT_EQ(stats->records, first_half_end[1] + (partition_end[2] - first_half_end[2]));
    const PartitionOffsets stored = OffsetsOf(*store, kInputTopic);
    const PartitionOffsets want = {{{std::string(kInputTopic), 1}, first_half_end[1]},
                                   {{std::string(kInputTopic), 2}, partition_end[2]}};
    EXPECT_EQ(stored, want);
  }
}

TEST_F(DaemonTest, KafkaReplayPublishesEveryPositionWithTheDirectRows) {
  const EventsByUser events = GoldenUsers(5);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  config::DaemonConfig config = Config();
  auto store = OpenStore(config);
  ASSERT_NE(store, nullptr);
  KafkaReplayOptions options;
  options.publish = true;
  options.jobs = 3;
  const auto stats = ReplayKafka(config, *bundle_, *store, options);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_GT(stats->published, 0);
  const auto published = ExpectEveryPositionPublished(events);
  int64_t messages = 0;
  for (const TopicMessage& m : Read(kOutputTopic)) {
    messages += m.key.has_value() ? 1 : 0;
  }
  EXPECT_EQ(messages, stats->published);  // Nothing was redone: each batch published once.
}

// A replay runs the serving loop, so a delivery that times out mid-replay is redone as serving
// redoes it (the batches abandoned, the source rewound to the store's offsets), instead of the
// replay stopping: every position is published and the state is the direct decode.
TEST_F(DaemonTest, KafkaReplayRedoesBatchesWhoseDeliveryTimedOut) {
  const EventsByUser events = GoldenUsers(6);
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events)));
  config::DaemonConfig config = Config();
  FastReconnects(config);
  config.kafka.producer_properties["message.timeout.ms"] = "1500";
  auto store = OpenStore(config);
  ASSERT_NE(store, nullptr);
  // The broker answers the replay's first produce requests 2.5 s late: longer than the
  // messages may wait, so they fail with _MSG_TIMED_OUT.
  kafka_->DelayRequests(1, 0, 3, 2500);
  KafkaReplayOptions options;
  options.publish = true;
  options.jobs = 1;
  const auto stats = ReplayKafka(config, *bundle_, *store, options);
  ASSERT_TRUE(stats.ok()) << stats.status().ToString();
  EXPECT_GT(stats->records, Total(events)) << "no batch was redone: the delay was too short";
  EXPECT_FALSE(logs_.Find(spdlog::level::warn, "not delivered").empty());
  ExpectEveryPositionPublished(events);
  const auto& cfg = bundle_->config();
  for (const auto& [user, lines] : events) {
    SCOPED_TRACE(user);
    auto state = store->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
    ASSERT_TRUE(state.ok() && state->has_value());
    ExpectSameRows((*state)->window, Direct(lines).window);
  }
}

TEST_F(DaemonTest, KafkaReplayRefusesWhatItCannotDoExactly) {
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(GoldenUsers(2))));
  config::DaemonConfig config = Config();
  auto store = OpenStore(config);
  ASSERT_NE(store, nullptr);
  const auto refused = [&](const KafkaReplayOptions& options, std::string_view words) {
    const auto stats = ReplayKafka(config, *bundle_, *store, options);
    EXPECT_FALSE(stats.ok());
    EXPECT_NE(stats.status().message().find(words), std::string::npos) << stats.status().ToString();
  };
  KafkaReplayOptions no_such_partition;
  no_such_partition.partitions = {kPartitions};
  refused(no_such_partition, "has partitions 0..3");
  KafkaReplayOptions past_the_end;
  past_the_end.start = {.kind = OffsetSpec::Kind::kOffset, .value = 1000000};
  refused(past_the_end, "--start 1000000: partition 0");
  KafkaReplayOptions unselected;
  unselected.partitions = {0};
  unselected.start_of[1] = {.kind = OffsetSpec::Kind::kOffset, .value = 0};
  refused(unselected, "partition 1");
  config::DaemonConfig embedded = config;
  embedded.kafka.embedded = true;
  EXPECT_EQ(ReplayKafka(embedded, *bundle_, *store, {}).status().code(),
            StatusCode::kInvalidArgument);
  // Stopped before the first batch: Aborted, nothing applied; the rerun does it all.
  std::atomic<bool> stop{true};
  KafkaReplayOptions stopped;
  stopped.stop = &stop;
  const auto interrupted = ReplayKafka(config, *bundle_, *store, stopped);
  EXPECT_EQ(interrupted.status().code(), StatusCode::kAborted) << interrupted.status().ToString();
  EXPECT_TRUE(OffsetsOf(*store, kInputTopic).empty());
  const auto rerun = ReplayKafka(config, *bundle_, *store, {});
  ASSERT_TRUE(rerun.ok()) << rerun.status().ToString();
  EXPECT_EQ(rerun->events, Total(GoldenUsers(2)));
}

TEST(OffsetSpecTest, ParsesWhatTheFlagsTakeAndNamesWhatItRefuses) {
  EXPECT_EQ(ParseOffsetSpec("earliest")->kind, OffsetSpec::Kind::kEarliest);
  EXPECT_EQ(ParseOffsetSpec("latest")->kind, OffsetSpec::Kind::kLatest);
  EXPECT_EQ(ParseOffsetSpec("1500")->value, 1500);
  EXPECT_EQ(ParseOffsetSpec("1500")->kind, OffsetSpec::Kind::kOffset);
  EXPECT_EQ(ParseOffsetSpec("@1767225600000")->value, 1767225600000);
  EXPECT_EQ(ParseOffsetSpec("@2026-01-01T00:00:00Z")->value, 1767225600000);
  EXPECT_EQ(ParseOffsetSpec("@2026-01-01T00:00:00.25Z")->value, 1767225600250);
  EXPECT_EQ(ParseOffsetSpec("@2024-02-29T12:00:00.001Z")->value, 1709208000001);
  for (const std::string_view bad : {"", "-1", "12x", "@", "@2026-02-30T00:00:00Z",
                                     "@2026-01-01T00:00:00", "@2026-01-01 00:00:00Z", "first"}) {
    const auto parsed = ParseOffsetSpec(bad);
    EXPECT_FALSE(parsed.ok()) << bad;
    EXPECT_NE(parsed.status().message().find(fmt::format("'{}'", bad)), std::string::npos);
  }
  for (const std::string_view text : {"earliest", "latest", "42", "@1767225600000"}) {
    EXPECT_EQ(OffsetSpecText(ParseOffsetSpec(text).value()), text);
  }
}

// ---- the state changelog ----

// A second instance with no local state takes over every partition: it restores each from the
// changelog the first one wrote (nothing of the input is applied again), ends with the same
// state user for user, and goes on from there when more input comes.
TEST_F(DaemonTest, AnInstanceWithoutStateRestoresFromTheChangelogInsteadOfReplaying) {
  const EventsByUser events = GoldenUsers(6);
  const std::size_t half = events.begin()->second.size() / 2;
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, 0, half)));
  config::DaemonConfig first = Config();
  first.state.dir = dir_.path() + "/first";
  {
    auto serving = Serve(first);
    ASSERT_NE(serving, nullptr);
    ServeUntil(*serving, Prefix(events, half));
  }
  // The changelog holds every user's rows and metadata, and a base and markers per partition.
  std::set<int32_t> used;
  for (const auto& [user, lines] : events) {
    used.insert(internal::JavaPartition(user, kPartitions));
  }
  const std::vector<TopicMessage> changelog = Read(kChangelogTopic);
  std::set<int32_t> based;
  for (const TopicMessage& m : changelog) {
    ASSERT_TRUE(m.key.has_value());
    auto base = storage::DecodeChangelogBase(
        *m.key, m.value.empty() ? std::nullopt : std::optional(m.value));
    ASSERT_TRUE(base.ok()) << base.status().ToString();
    if (base->has_value()) {
      EXPECT_EQ((*base)->first.partition, m.partition);
      based.insert(m.partition);
    }
  }
  EXPECT_EQ(based, used);

  config::DaemonConfig second = Config();
  second.state.dir = dir_.path() + "/second";
  {
    auto serving = Serve(second);
    ASSERT_NE(serving, nullptr);
    ServeUntil(*serving, Prefix(events, half));
    EXPECT_EQ(serving->daemon().stats().restored_partitions, static_cast<int64_t>(used.size()));
    EXPECT_GT(serving->daemon().stats().restored_records, 0);
    EXPECT_EQ(serving->daemon().stats().events, 0);  // Nothing re-applied from the input.
  }
  {
    auto a = OpenStore(first);
    auto b = OpenStore(second);
    ASSERT_NE(a, nullptr);
    ASSERT_NE(b, nullptr);
    const auto& cfg = bundle_->config();
    for (const auto& [user, lines] : Prefix(events, half)) {
      SCOPED_TRACE(user);
      auto want = a->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
      auto got = b->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
      ASSERT_TRUE(want.ok() && want->has_value() && got.ok() && got->has_value());
      ExpectSameRows((*got)->window, (*want)->window);
      EXPECT_EQ((*got)->recent_event_ids, (*want)->recent_event_ids);
    }
    EXPECT_EQ(OffsetsOf(*b, kInputTopic), OffsetsOf(*a, kInputTopic));
    EXPECT_EQ(b->LoadWatermarks().value(), a->LoadWatermarks().value());
  }
  // The restored instance goes on with the rest of the input.
  ASSERT_NO_FATAL_FAILURE(Produce(Interleave(events, half)));
  {
    auto serving = Serve(second);
    ASSERT_NE(serving, nullptr);
    ServeUntil(*serving, events);
    EXPECT_EQ(serving->daemon().stats().restored_partitions, 0);  // Its own state now.
    ExpectStateIsDirect(serving->daemon(), events);
  }
}

// The changelog of a run with many small batches, a user whose history expires and restarts,
// and expired users swept, restores to exactly the state the run left (compaction aside, the
// tombstones keep rows that left a window, and swept users, out of the restored store).
TEST_F(DaemonTest, TheChangelogCarriesTrimsExpiryAndSweepsExactly) {
  config::DaemonConfig first = Config();
  first.state.dir = dir_.path() + "/first";
  first.state.user_ttl_ms = 3600000;
  first.state.ttl_sweep_users_per_batch = 1000;
  // A user far past the window (trims), one that goes quiet for two hours (expires, and is
  // swept or restarts), and one that comes back after the gap (restarts at position 0).
  std::vector<std::string> lines;
  const int64_t t0 = 1767225600000;
  const auto event = [&](const std::string& user, int i, int64_t ts) {
    return fmt::format(
        R"({{"event_id":"{}-{}","user_id":"{}","ts_ms":{},"item":{{"id":"i{}","features":[0.1,0.2,0.3,0.4,0.5,0.6,0.7,0.8]}},"action":{{"click":1}}}})",
        user, i, user, ts, i % 7);
  };
  // All three in one partition: expiry is judged by the partition's watermark.
  const auto in_partition_of_busy = [](std::string_view name) {
    for (int i = 0;; ++i) {
      std::string user = fmt::format("{}-{}", name, i);
      if (internal::JavaPartition(user, kPartitions) ==
          internal::JavaPartition("busy", kPartitions)) {
        return user;
      }
    }
  };
  const std::string quiet = in_partition_of_busy("quiet");
  const std::string back = in_partition_of_busy("back");
  constexpr int64_t kMinute = 60000;
  for (int i = 0; i < 40; ++i) {
    lines.push_back(event("busy", i, t0 + i * kMinute));
    if (i < 3) {
      lines.push_back(event(quiet, i, t0 + i * kMinute));
      lines.push_back(event(back, i, t0 + i * kMinute));
    }
  }
  // The watermark jumps two hours first (busy), then `back` finds its history expired.
  lines.push_back(event("busy", 100, t0 + 40 * kMinute + 120 * kMinute));
  lines.push_back(event(back, 100, t0 + 40 * kMinute + 120 * kMinute));
  ASSERT_NO_FATAL_FAILURE(Produce(lines));
  const std::vector<std::string> users = {"busy", quiet, back};
  {
    auto serving = Serve(first);
    ASSERT_NE(serving, nullptr);
    EXPECT_TRUE(WaitFor(
        [&] {
          auto s = serving->daemon().LoadUser(back);
          return s.ok() && s->has_value() && (*s)->window.next_pos == 1 &&
                 (*s)->window.last_ts_ms > t0 + 3600000;
        },
        kServeTimeout));
    ASSERT_TRUE(serving->Stop().ok());
  }
  config::DaemonConfig second = first;
  second.state.dir = dir_.path() + "/second";
  {
    auto serving = Serve(second);
    ASSERT_NE(serving, nullptr);
    EXPECT_TRUE(WaitFor([&] { return serving->daemon().status().ready(); }, kServeTimeout));
    ASSERT_TRUE(serving->Stop().ok());
    EXPECT_GT(serving->daemon().stats().restored_partitions, 0);
    EXPECT_EQ(serving->daemon().stats().events, 0);
  }
  auto a = OpenStore(first);
  auto b = OpenStore(second);
  ASSERT_NE(a, nullptr);
  ASSERT_NE(b, nullptr);
  EXPECT_EQ(*b->ListUsers(), *a->ListUsers());
  const auto& cfg = bundle_->config();
  for (const std::string& user : users) {
    SCOPED_TRACE(user);
    auto want = a->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
    auto got = b->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
    ASSERT_TRUE(want.ok() && got.ok());
    ASSERT_EQ(want->has_value(), got->has_value());
    if (want->has_value()) {
      ExpectSameRows((*got)->window, (*want)->window);
    }
  }
  EXPECT_EQ(OffsetsOf(*b, kInputTopic), OffsetsOf(*a, kInputTopic));
}

// RestoreFromChangelog on a changelog written by hand: what precedes the first base is
// another history and ignored; a later base deletes what was applied before it; a marker past
// the limit, and records after the last marker, are left out.
TEST_F(DaemonTest, ARestoreTakesWhatFollowsTheLastBaseUpToTheLastMarkerWithinTheLimit) {
  const auto& cfg = bundle_->config();
  // Records of one user's two-event window, made by a scratch store's batch.
  config::DaemonConfig scratch_config = Config();
  scratch_config.state.dir = dir_.path() + "/scratch";
  auto scratch = OpenStore(scratch_config);
  ASSERT_NE(scratch, nullptr);
  std::map<std::string, encoders::KvWindow> windows;
  const auto changes_of = [&](const std::string& user) {
    std::vector<storage::ChangelogRecord> log;
    const Reference ref = Direct(Prefix(GoldenUsers(1), 2).begin()->second);
    windows.insert_or_assign(user, ref.window);
    storage::StateBatch batch = scratch->NewBatch();
    EXPECT_TRUE(
        batch.PutWindow(user, bundle_->model_id(), ref.window, ref.window.next_pos, {}, &log).ok());
    return log;
  };
  const std::string topic(kInputTopic);
  std::vector<std::pair<std::optional<std::string>, std::string>> messages;
  const auto add = [&](const std::vector<storage::ChangelogRecord>& records) {
    for (const storage::ChangelogRecord& r : records) {
      messages.emplace_back(r.key, r.value.value_or(""));
    }
  };
  add(changes_of("u-before-any-base"));
  add({storage::EncodeChangelogMarker(topic, 0, 10, -1)});
  add({storage::EncodeChangelogBase(topic, 0, 0)});
  add(changes_of("u-old-history"));
  add({storage::EncodeChangelogMarker(topic, 0, 15, -1)});
  add({storage::EncodeChangelogBase(topic, 0, 0)});  // Another history starts: u-old goes.
  add(changes_of("u1"));
  add({storage::EncodeChangelogMarker(topic, 0, 20, 1767225600000)});
  add(changes_of("u2"));
  add({storage::EncodeChangelogMarker(topic, 0, 30, 1767225700000)});
  add(changes_of("u-tail"));  // A batch whose marker never came.
  ASSERT_NO_FATAL_FAILURE(ProduceRaw(kafka_->bootstrap_servers(), kChangelogTopic, messages, 0));

  const auto restore = [&](int64_t limit, std::string_view dir) {
    config::DaemonConfig config = Config();
    config.state.dir = dir_.path() + "/" + std::string(dir);
    auto store = OpenStore(config);
    auto restored =
        internal::RestoreFromChangelog(config, kafka_->bootstrap_servers(), 0, limit, *store);
    EXPECT_TRUE(restored.ok()) << restored.status().ToString();
    std::set<std::string> users;
    const std::vector<std::string> listed = store->ListUsers().value();
    for (const std::string& u : listed) {
      users.insert(u);
      auto state = store->LoadUserState(u, cfg.n_blocks(), cfg.window, cfg.d_model);
      EXPECT_TRUE(state.ok() && state->has_value()) << u;
      if (state.ok() && state->has_value()) {
        ExpectSameRows((*state)->window, windows.at(u));
      }
    }
    return std::tuple(restored.ok() ? restored->next_offset : std::nullopt, users,
                      OffsetsOf(*store, kInputTopic), store->LoadWatermarks().value());
  };
  {
    const auto [next, users, offsets, watermarks] = restore(100, "all");
    EXPECT_EQ(next, 30);
    EXPECT_EQ(users, (std::set<std::string>{"u1", "u2"}));
    EXPECT_EQ(offsets, (PartitionOffsets{{{topic, 0}, 30}}));
    EXPECT_EQ(watermarks.at({topic, 0}), 1767225700000);
  }
  {
    const auto [next, users, offsets, watermarks] = restore(25, "limited");
    EXPECT_EQ(next, 20);
    EXPECT_EQ(users, (std::set<std::string>{"u1"}));
    EXPECT_EQ(offsets, (PartitionOffsets{{{topic, 0}, 20}}));
  }
  {
    // The last marker within the limit belongs to the older history: its state at offset 15.
    const auto [next, users, offsets, watermarks] = restore(19, "older-history");
    EXPECT_EQ(next, 15);
    EXPECT_EQ(users, (std::set<std::string>{"u-old-history"}));
    EXPECT_EQ(offsets, (PartitionOffsets{{{topic, 0}, 15}}));
  }
  {
    // Only a marker before any base is within the limit: nothing to restore.
    const auto [next, users, offsets, watermarks] = restore(12, "nothing-confirmed");
    EXPECT_EQ(next, std::nullopt);
    EXPECT_TRUE(users.empty());
    EXPECT_TRUE(offsets.empty());
  }
  {
    const auto [next, users, offsets, watermarks] = restore(-1, "no-group-offset");
    EXPECT_EQ(next, std::nullopt);
    EXPECT_TRUE(users.empty());
  }
}

}  // namespace
}  // namespace rotor::pipeline
