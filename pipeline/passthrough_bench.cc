// kafka_passthrough: the raw Kafka baseline of bench/load.py. It joins a consumer group on the
// input topic and produces every message's key and value, unchanged, to the output topic: no
// parsing, no state, no model. The clients are configured as rotor's (pipeline/internal/
// group_consumer.cc, delivery.cc): manual offset commits, read_committed, cooperative-sticky,
// an idempotent producer (acks=all) with linger.ms 2, a 64 MiB send queue and the murmur2_random
// partitioner. At-least-once, as rotor: a partition's offset is committed only up to the first
// message whose copy is not yet delivered. It exits after --idle-ms with no input and nothing
// in flight (or --start-timeout-ms with no input at all) and prints one JSON line:
//   messages, busy_s (first message consumed to the last copy delivered), cpu_s / cpu_user_s /
//   cpu_sys_s (the whole process: getrusage), first_input_ts_ms (the first message's Kafka
//   timestamp), last_produce_ms (wall clock of the last produce call: the last copy's
//   CreateTime), and latency_p50/p99/p999_ms (produce time minus the input message's
//   timestamp, of the messages timestamped at least --warmup-ms after the first).
//
//   kafka_passthrough --bootstrap 127.0.0.1:9092 --group g --input t.events --output t.copy

#include <sys/resource.h>

#include <algorithm>
#include <array>
#include <chrono>
#include <cinttypes>
#include <cstdint>
#include <cstdio>
#include <cstdlib>
#include <deque>
#include <map>
#include <memory>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include <librdkafka/rdkafka.h>

namespace {

struct Options {
  std::string bootstrap = "127.0.0.1:9092";
  std::string group;
  std::string input;
  std::string output;
  int64_t idle_ms = 3000;
  int64_t start_timeout_ms = 60000;
  int64_t warmup_ms = 0;
  int64_t commit_interval_ms = 100;
};

struct KafkaDeleter {
  void operator()(rd_kafka_t* k) const { rd_kafka_destroy(k); }
};
using KafkaPtr = std::unique_ptr<rd_kafka_t, KafkaDeleter>;

struct ListDeleter {
  void operator()(rd_kafka_topic_partition_list_t* l) const {
    rd_kafka_topic_partition_list_destroy(l);
  }
};
using ListPtr = std::unique_ptr<rd_kafka_topic_partition_list_t, ListDeleter>;

struct MessageDeleter {
  void operator()(rd_kafka_message_t* m) const { rd_kafka_message_destroy(m); }
};
using MessagePtr = std::unique_ptr<rd_kafka_message_t, MessageDeleter>;

[[noreturn]] void Die(const std::string& what) {
  std::fprintf(stderr, "kafka_passthrough: %s\n", what.c_str());
  std::exit(1);
}

int64_t WallMs() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::system_clock::now().time_since_epoch())
      .count();
}

double CpuSeconds(const timeval& t) {
  return static_cast<double>(t.tv_sec) + static_cast<double>(t.tv_usec) / 1e6;
}

// One input partition's consumed messages whose copies are not delivered yet, in offset order.
// A produced message's opaque is its Pending entry (a deque's elements stay where they are when
// others are added at the back or removed at the front); the committable offset is the one
// after the last message of the delivered prefix.
struct Partition {
  struct Pending {
    Partition* partition;
    int64_t offset;
    bool delivered;
  };
  std::deque<Pending> pending;
  int64_t committable = -1;
  int64_t committed = -1;

  Pending* Add(int64_t offset) { return &pending.emplace_back(Pending{this, offset, false}); }
  void AdvanceDelivered() {
    while (!pending.empty() && pending.front().delivered) {
      committable = pending.front().offset + 1;
      pending.pop_front();
    }
  }
};

struct State {
  std::map<int32_t, Partition> partitions;  // Nodes stay put: Pending points at them.
  uint64_t in_flight = 0;
  uint64_t delivered = 0;
  std::chrono::steady_clock::time_point last_delivery;
  std::string delivery_error;
};

void DeliveryReport(rd_kafka_t* /*rk*/, const rd_kafka_message_t* m, void* opaque) {
  auto* state = static_cast<State*>(opaque);
  --state->in_flight;
  if (m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    state->delivery_error = rd_kafka_err2str(m->err);
    return;
  }
  auto* pending = static_cast<Partition::Pending*>(m->_private);
  pending->delivered = true;
  pending->partition->AdvanceDelivered();
  ++state->delivered;
  state->last_delivery = std::chrono::steady_clock::now();
}

// Produces a copy of m's key and value to topic, through rd_kafka_produceva as rotor does (the
// RD_KAFKA_V_* macros of rd_kafka_producev are GNU statement expressions, refused under
// -Wpedantic by clang). While the send queue is full it serves delivery reports and retries.
void Produce(rd_kafka_t* producer, const std::string& topic, const rd_kafka_message_t& m,
             void* opaque) {
  std::array<rd_kafka_vu_t, 5> vus{};
  vus[0].vtype = RD_KAFKA_VTYPE_TOPIC;
  vus[0].u.cstr = topic.c_str();
  vus[1].vtype = RD_KAFKA_VTYPE_MSGFLAGS;
  vus[1].u.i = RD_KAFKA_MSG_F_COPY;
  vus[2].vtype = RD_KAFKA_VTYPE_KEY;
  vus[2].u.mem.ptr = m.key;
  vus[2].u.mem.size = m.key_len;
  vus[3].vtype = RD_KAFKA_VTYPE_VALUE;
  vus[3].u.mem.ptr = m.payload;
  vus[3].u.mem.size = m.len;
  vus[4].vtype = RD_KAFKA_VTYPE_OPAQUE;
  vus[4].u.ptr = opaque;
  for (;;) {
    rd_kafka_error_t* error = rd_kafka_produceva(producer, vus.data(), vus.size());
    if (error == nullptr) {
      return;
    }
    const rd_kafka_resp_err_t code = rd_kafka_error_code(error);
    const std::string what = rd_kafka_error_string(error);
    rd_kafka_error_destroy(error);
    if (code != RD_KAFKA_RESP_ERR__QUEUE_FULL) {
      Die("produce: " + what);
    }
    rd_kafka_poll(producer, 1);
  }
}

void Set(rd_kafka_conf_t* conf, const char* name, const std::string& value) {
  std::array<char, 512> err{};
  if (rd_kafka_conf_set(conf, name, value.c_str(), err.data(), err.size()) != RD_KAFKA_CONF_OK) {
    Die(std::string("config ") + name + ": " + err.data());
  }
}

KafkaPtr NewHandle(rd_kafka_type_t type, rd_kafka_conf_t* conf) {
  std::array<char, 512> err{};
  rd_kafka_t* k = rd_kafka_new(type, conf, err.data(), err.size());
  if (k == nullptr) {
    rd_kafka_conf_destroy(conf);
    Die(std::string("rd_kafka_new: ") + err.data());
  }
  return KafkaPtr(k);
}

// Takes what the group assigns and gives back what it revokes, saying so on stderr (load.py
// starts its producer once the partitions are assigned). Meant to be the group's only member:
// offsets of a revoked partition whose copies are still in flight are committed all the same.
void Rebalance(rd_kafka_t* rk, rd_kafka_resp_err_t err, rd_kafka_topic_partition_list_t* parts,
               void* /*opaque*/) {
  const bool cooperative = std::string_view(rd_kafka_rebalance_protocol(rk)) == "COOPERATIVE";
  const bool assign = err == RD_KAFKA_RESP_ERR__ASSIGN_PARTITIONS;
  if (cooperative) {
    rd_kafka_error_t* error =
        assign ? rd_kafka_incremental_assign(rk, parts) : rd_kafka_incremental_unassign(rk, parts);
    if (error != nullptr) {
      const std::string what = rd_kafka_error_string(error);
      rd_kafka_error_destroy(error);
      Die("rebalance: " + what);
    }
  } else if (rd_kafka_assign(rk, assign ? parts : nullptr) != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die("rebalance: assign failed");
  }
  std::fprintf(stderr, "kafka_passthrough: %s %d partitions\n", assign ? "assigned" : "revoked",
               parts->cnt);
  std::fflush(stderr);
}

// Commits the partitions whose committable offset moved (async unless sync).
void Commit(rd_kafka_t* consumer, const std::string& topic, State& state, bool sync) {
  ListPtr list(rd_kafka_topic_partition_list_new(static_cast<int>(state.partitions.size())));
  for (auto& [id, p] : state.partitions) {
    if (p.committable > p.committed) {
      rd_kafka_topic_partition_list_add(list.get(), topic.c_str(), id)->offset = p.committable;
      p.committed = p.committable;
    }
  }
  if (list->cnt == 0) {
    return;
  }
  const rd_kafka_resp_err_t err = rd_kafka_commit(consumer, list.get(), sync ? 0 : 1);
  if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
    Die(std::string("commit: ") + rd_kafka_err2str(err));
  }
}

Options Parse(int argc, char** argv) {
  Options o;
  const std::vector<std::string_view> args(argv + 1, argv + argc);
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string_view arg = args[i];
    const auto eq = arg.find('=');
    const std::string_view name = arg.substr(0, eq);
    std::string value;
    if (eq != std::string_view::npos) {
      value = std::string(arg.substr(eq + 1));
    } else if (i + 1 < args.size()) {
      value = std::string(args[++i]);
    } else {
      Die("missing value of " + std::string(arg));
    }
    if (name == "--bootstrap") {
      o.bootstrap = value;
    } else if (name == "--group") {
      o.group = value;
    } else if (name == "--input") {
      o.input = value;
    } else if (name == "--output") {
      o.output = value;
    } else if (name == "--idle-ms") {
      o.idle_ms = std::stoll(value);
    } else if (name == "--start-timeout-ms") {
      o.start_timeout_ms = std::stoll(value);
    } else if (name == "--warmup-ms") {
      o.warmup_ms = std::stoll(value);
    } else if (name == "--commit-interval-ms") {
      o.commit_interval_ms = std::stoll(value);
    } else {
      Die("unknown flag " + std::string(name) +
          " (flags: --bootstrap --group --input --output --idle-ms --start-timeout-ms "
          "--warmup-ms --commit-interval-ms)");
    }
  }
  if (o.group.empty() || o.input.empty() || o.output.empty()) {
    Die("--group, --input and --output are required");
  }
  return o;
}

double Percentile(const std::vector<int64_t>& sorted, double q) {
  if (sorted.empty()) {
    return -1.0;
  }
  const auto i =
      std::min(sorted.size() - 1, static_cast<size_t>(q * static_cast<double>(sorted.size())));
  return static_cast<double>(sorted[i]);
}

}  // namespace

int main(int argc, char** argv) {
  const Options o = Parse(argc, argv);
  State state;

  rd_kafka_conf_t* pconf = rd_kafka_conf_new();
  Set(pconf, "bootstrap.servers", o.bootstrap);
  Set(pconf, "client.id", "kafka_passthrough");
  Set(pconf, "enable.idempotence", "true");  // acks=all
  Set(pconf, "partitioner", "murmur2_random");
  Set(pconf, "linger.ms", "2");
  Set(pconf, "queue.buffering.max.kbytes", "65536");
  rd_kafka_conf_set_dr_msg_cb(pconf, DeliveryReport);
  rd_kafka_conf_set_opaque(pconf, &state);
  const KafkaPtr producer = NewHandle(RD_KAFKA_PRODUCER, pconf);

  rd_kafka_conf_t* cconf = rd_kafka_conf_new();
  Set(cconf, "bootstrap.servers", o.bootstrap);
  Set(cconf, "client.id", "kafka_passthrough");
  Set(cconf, "group.id", o.group);
  Set(cconf, "enable.auto.commit", "false");
  Set(cconf, "enable.auto.offset.store", "false");
  Set(cconf, "isolation.level", "read_committed");
  Set(cconf, "auto.offset.reset", "earliest");  // A fresh group reads the backlog.
  Set(cconf, "partition.assignment.strategy", "cooperative-sticky");
  Set(cconf, "queued.max.messages.kbytes", "16384");
  rd_kafka_conf_set_rebalance_cb(cconf, Rebalance);
  const KafkaPtr consumer = NewHandle(RD_KAFKA_CONSUMER, cconf);
  rd_kafka_poll_set_consumer(consumer.get());
  {
    ListPtr topics(rd_kafka_topic_partition_list_new(1));
    rd_kafka_topic_partition_list_add(topics.get(), o.input.c_str(), RD_KAFKA_PARTITION_UA);
    const rd_kafka_resp_err_t err = rd_kafka_subscribe(consumer.get(), topics.get());
    if (err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      Die(std::string("subscribe: ") + rd_kafka_err2str(err));
    }
  }

  using Clock = std::chrono::steady_clock;
  const Clock::time_point start = Clock::now();
  std::optional<Clock::time_point> first_consumed;
  Clock::time_point last_input = start;
  Clock::time_point last_commit_call = start;
  int64_t first_input_ts = -1;
  int64_t last_produce_ms = -1;
  uint64_t messages = 0;
  std::vector<int64_t> latencies;

  for (;;) {
    // A short wait while copies are in flight: their delivery reports are served below.
    const MessagePtr m(rd_kafka_consumer_poll(consumer.get(), state.in_flight > 0 ? 1 : 10));
    const Clock::time_point now = Clock::now();
    if (m && m->err == RD_KAFKA_RESP_ERR__PARTITION_EOF) {
      // Not enabled (enable.partition.eof is off); ignored if a property turns it on.
    } else if (m && m->err != RD_KAFKA_RESP_ERR_NO_ERROR) {
      std::fprintf(stderr, "kafka_passthrough: consume: %s\n", rd_kafka_message_errstr(m.get()));
    } else if (m) {
      if (!first_consumed) {
        first_consumed = now;
      }
      last_input = now;
      ++messages;
      rd_kafka_timestamp_type_t type = RD_KAFKA_TIMESTAMP_NOT_AVAILABLE;
      const int64_t input_ts = rd_kafka_message_timestamp(m.get(), &type);
      if (first_input_ts < 0) {
        first_input_ts = input_ts;
      }
      Produce(producer.get(), o.output, *m, state.partitions[m->partition].Add(m->offset));
      ++state.in_flight;
      last_produce_ms = WallMs();
      if (input_ts >= first_input_ts + o.warmup_ms) {
        latencies.push_back(last_produce_ms - input_ts);
      }
    }
    rd_kafka_poll(producer.get(), 0);
    if (!state.delivery_error.empty()) {
      Die("delivery failed (nothing more committed): " + state.delivery_error);
    }
    if (now - last_commit_call >= std::chrono::milliseconds(o.commit_interval_ms)) {
      Commit(consumer.get(), o.input, state, /*sync=*/false);
      last_commit_call = now;
    }
    const auto idle = now - (first_consumed ? last_input : start);
    if (!m && state.in_flight == 0 &&
        idle >= std::chrono::milliseconds(first_consumed ? o.idle_ms : o.start_timeout_ms)) {
      break;
    }
  }

  // Everything consumed is delivered (in_flight 0): commit the rest synchronously.
  rd_kafka_flush(producer.get(), 10000);
  Commit(consumer.get(), o.input, state, /*sync=*/true);
  rd_kafka_consumer_close(consumer.get());

  rusage usage{};
  getrusage(RUSAGE_SELF, &usage);
  std::sort(latencies.begin(), latencies.end());
  const double busy_s =
      first_consumed
          ? std::max(0.0,
                     std::chrono::duration<double>(state.last_delivery - *first_consumed).count())
          : 0.0;
  std::printf("{\"messages\": %" PRIu64 ", \"delivered\": %" PRIu64
              ", \"busy_s\": %.4f, \"cpu_s\": %.4f, \"cpu_user_s\": %.4f, \"cpu_sys_s\": %.4f, "
              "\"first_input_ts_ms\": %" PRId64 ", \"last_produce_ms\": %" PRId64
              ", \"latency_samples\": %zu, \"latency_p50_ms\": %.0f, \"latency_p99_ms\": %.0f, "
              "\"latency_p999_ms\": %.0f}\n",
              messages, state.delivered, busy_s,
              CpuSeconds(usage.ru_utime) + CpuSeconds(usage.ru_stime), CpuSeconds(usage.ru_utime),
              CpuSeconds(usage.ru_stime), first_input_ts, last_produce_ms, latencies.size(),
              Percentile(latencies, 0.50), Percentile(latencies, 0.99),
              Percentile(latencies, 0.999));
  return messages == state.delivered ? 0 : 1;
}
