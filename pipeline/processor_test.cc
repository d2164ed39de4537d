#include "pipeline/processor.h"

#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <filesystem>
#include <fstream>
#include <map>
#include <memory>
#include <optional>
#include <set>
#include <string>
#include <tuple>
#include <vector>

#include <fmt/format.h>
#include <gtest/gtest.h>

#include "encoders/decoder.h"
#include "encoders/event_parser.h"
#include "encoders/ready_tensors.h"
#include "pipeline/internal/partitioner.h"
#include "pipeline/internal/testing.h"
#include "storage/testing.h"

namespace rotor::pipeline {
namespace {

using testing::ExpectSameRows;

constexpr std::string_view kTopic = "events";

struct Message {
  std::string key;
  std::string value;
  int64_t offset = 0;
};

class ProcessorTest : public ::testing::Test {
 protected:
  void SetUp() override {
    auto bundle =
        encoders::Bundle::Load(std::string(ROTOR_GOLDEN_DIR) + "/siren.bundle.safetensors");
    ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
    bundle_ = std::make_unique<encoders::Bundle>(std::move(bundle).value());
    OpenStore();
  }

  void OpenStore() {
    processor_.reset();
    store_.reset();
    auto store = storage::UserStateStore::Open({.path = store_path_.value_or(dir_.path()),
                                                .block_cache_bytes = 8 << 20,
                                                .write_buffer_bytes = 2 << 20,
                                                .sync_writes = false,
                                                .create_if_missing = true});
    ASSERT_TRUE(store.ok()) << store.status().ToString();
    store_ = std::move(store).value();
    MakeProcessor();
  }

  void MakeProcessor() {
    processor_.reset();
    config::StateOptions state = state_;
    state.window_cache_bytes = cache_bytes_;
    auto processor = Processor::Create(
        *bundle_, *store_, pipeline_, output_, state, [this] { return now_ms_; }, view_.get());
    ASSERT_TRUE(processor.ok()) << processor.status().ToString();
    processor_ = std::move(processor).value();
  }

  // Processes messages (offsets from next_offset_) in batches of `batch_size`, committing each.
  std::vector<OutputRecord> Run(const std::vector<Message>& messages, std::size_t batch_size,
                                bool publish = true) {
    std::vector<OutputRecord> outputs;
    for (std::size_t start = 0; start < messages.size(); start += batch_size) {
      std::vector<InputRecord> records;
      for (std::size_t i = start; i < std::min(messages.size(), start + batch_size); ++i) {
        const bool has_key = !messages[i].key.empty();
        records.push_back(
            InputRecord{.topic = kTopic,
                        .partition = has_key && partitions_ > 0
                                         ? internal::JavaPartition(messages[i].key, partitions_)
                                         : 0,
                        .offset = messages[i].offset,
                        .has_key = has_key,
                        .key = messages[i].key,
                        .value = messages[i].value,
                        .timestamp_ms = record_ts_ms_.value_or(now_ms_),
                        .partitions = partitions_,
                        .publish = publish});
      }
      auto batch = processor_->Process(records);
      EXPECT_TRUE(batch.ok()) << batch.status().ToString();
      if (!batch.ok()) {
        return outputs;
      }
      EXPECT_TRUE(store_->Commit(batch->state).ok());
      for (auto& out : batch->outputs) {
        outputs.push_back(std::move(out));
      }
      processor_->Finish(std::move(batch).value());
    }
    return outputs;
  }

  // Drops the cached users of partition 0 (every user while partitions_ is 0), as a revoke does.
  void DropPartition0() {
    const std::vector<TopicPartition> revoked{{std::string(kTopic), 0}};
    processor_->DropPartitions(revoked);
  }

  // `m` as a publishable record of partition 0 (for tests that drive Process themselves).
  static InputRecord RecordOf(const Message& m) {
    return InputRecord{.topic = kTopic,
                       .partition = 0,
                       .offset = m.offset,
                       .has_key = true,
                       .key = m.key,
                       .value = m.value,
                       .publish = true};
  }

  std::vector<Message> Keyed(const std::vector<std::string>& values, const std::string& user) {
    std::vector<Message> out;
    out.reserve(values.size());
    for (const auto& v : values) {
      out.push_back(Message{.key = user, .value = v, .offset = next_offset_++});
    }
    return out;
  }

  encoders::KvWindow Direct(const std::vector<std::string>& events) const {
    return testing::DecodeDirectly(*bundle_, events);
  }

  encoders::KvWindow Stored(const std::string& user) {
    const auto& cfg = bundle_->config();
    auto state = store_->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
    EXPECT_TRUE(state.ok() && state->has_value()) << user;
    return state.ok() && state->has_value() ? (*state)->window : encoders::KvWindow();
  }

  // Every stored user's state as bytes (positions, last ts, recent ids, rows): what two runs
  // must agree on.
  std::map<std::string, std::string> StateDigests() {
    const auto& cfg = bundle_->config();
    std::map<std::string, std::string> out;
    const auto users = store_->ListUsers();
    EXPECT_TRUE(users.ok()) << users.status().ToString();
    for (const std::string& user : users.ok() ? *users : std::vector<std::string>{}) {
      auto state = store_->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
      EXPECT_TRUE(state.ok() && state->has_value()) << user;
      if (!state.ok() || !state->has_value()) {
        continue;
      }
      const encoders::KvWindow& w = (*state)->window;
      std::string bytes = fmt::format("next_pos={} rows={} last_ts={} ids={}", w.next_pos, w.rows,
                                      w.last_ts_ms, fmt::join((*state)->recent_event_ids, ","));
      for (int64_t p = w.next_pos - w.rows; p < w.next_pos; ++p) {
        for (int64_t b = 0; b < w.n_blocks(); ++b) {
          const auto k = w.KRow(b, w.SlotOf(p));
          const auto v = w.VRow(b, w.SlotOf(p));
          bytes.append(reinterpret_cast<const char*>(k.data()), k.size_bytes());
          bytes.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
        }
      }
      out[user] = std::move(bytes);
    }
    return out;
  }

  // The stored users that are expired against their partition's stored watermark (what a
  // sweep may delete and no event can see again).
  std::set<std::string> ExpiredStoredUsers(int64_t ttl_ms) {
    const auto watermarks = store_->LoadWatermarks();
    EXPECT_TRUE(watermarks.ok());
    std::set<std::string> out;
    const auto& cfg = bundle_->config();
    const auto users = store_->ListUsers();
    EXPECT_TRUE(users.ok());
    for (const std::string& user : *users) {
      const int32_t p = partitions_ > 0 ? internal::JavaPartition(user, partitions_) : 0;
      const auto wm = watermarks->find({std::string(kTopic), p});
      const auto state = store_->LoadUserState(user, cfg.n_blocks(), cfg.window, cfg.d_model);
      if (wm != watermarks->end() && (*state)->window.last_ts_ms + ttl_ms < wm->second) {
        out.insert(user);
      }
    }
    return out;
  }

  // Leaves out the users of `expired`.
  static std::map<std::string, std::string> Without(std::map<std::string, std::string> digests,
                                                    const std::set<std::string>& expired) {
    for (const std::string& user : expired) {
      digests.erase(user);
    }
    return digests;
  }

  testing::TempDir dir_{"rotor_processor_test"};
  // Where OpenStore opens the store; unset: dir_.
  std::optional<std::string> store_path_;
  // The input topic's partition count Run gives its records (each in its key's partition);
  // 0: unknown, every record in partition 0.
  int32_t partitions_ = 0;
  std::unique_ptr<encoders::Bundle> bundle_;
  std::unique_ptr<storage::UserStateStore> store_;
  // Where MakeProcessor's processor publishes (none when null). Declared before processor_,
  // which must go first.
  std::unique_ptr<storage::CommittedView> view_;
  std::unique_ptr<Processor> processor_;
  config::PipelineOptions pipeline_;
  config::OutputOptions output_{
      .dtype = config::OutputDtype::kF32, .deltas = true, .snapshot_interval_ms = 0};
  int64_t cache_bytes_ = 1 << 20;
  config::StateOptions state_;  // Its window_cache_bytes is cache_bytes_.
  int64_t now_ms_ = 1767571200000 + 86400000LL * 30;
  int64_t next_offset_ = 0;
  // The Kafka timestamp of the records Run makes; unset: the clock (now_ms_).
  std::optional<int64_t> record_ts_ms_;
};

TEST_F(ProcessorTest, InterleavedUsersGetExactlyTheEncodersRowsAndDeltasCarryThem) {
  const std::vector<std::string> users = {"alice", "bob", "carol"};
  std::map<std::string, std::vector<std::string>> events;
  std::vector<Message> messages;
  for (const auto& u : users) {
    events[u] = testing::GoldenUserEvents(u);
  }
  // Round-robin interleaving with uneven lengths (carol stops early).
  for (std::size_t i = 0; i < events["alice"].size(); ++i) {
    for (const auto& u : users) {
      if (u == "carol" && i >= 11) {
        continue;
      }
      messages.push_back(Message{.key = u, .value = events[u][i], .offset = next_offset_++});
    }
  }
  events["carol"].resize(11);
  const std::vector<OutputRecord> outputs = Run(messages, 7);

  std::map<std::string, std::map<int64_t, encoders::ReadyTensors>> rows_by_pos;
  for (const auto& out : outputs) {
    ASSERT_EQ(out.topic, OutputRecord::Topic::kOutput);
    auto tensors = encoders::DecodeReadyTensors(out.value);
    ASSERT_TRUE(tensors.ok()) << tensors.status().ToString();
    EXPECT_EQ(tensors->header.kind, encoders::ReadyKind::kDelta);
    ASSERT_TRUE(out.key.has_value());
    EXPECT_EQ(tensors->header.user_id, *out.key);
    EXPECT_EQ(tensors->header.model_id, bundle_->model_id());
    for (const int64_t p : tensors->pos) {
      EXPECT_EQ(rows_by_pos[*out.key].count(p), 0U) << "position " << p << " published twice";
      rows_by_pos[*out.key][p] = *tensors;
    }
  }
  for (const auto& u : users) {
    const encoders::KvWindow want = Direct(events[u]);
    ExpectSameRows(Stored(u), want);
    // Every event's rows were published exactly once, equal to the direct rows.
    ASSERT_EQ(rows_by_pos[u].size(), events[u].size()) << u;
    for (int64_t p = want.next_pos - want.rows; p < want.next_pos; ++p) {
      const encoders::ReadyTensors& t = rows_by_pos[u][p];
      const int64_t r = p - t.pos.front();
      for (int64_t b = 0; b < want.n_blocks(); ++b) {
        const auto wk = want.KRow(b, want.SlotOf(p));
        for (int64_t j = 0; j < want.d_model; ++j) {
          ASSERT_EQ(t.k[static_cast<std::size_t>(b)][static_cast<std::size_t>(r * t.d_model + j)],
                    wk[static_cast<std::size_t>(j)]);
        }
      }
    }
  }
  const auto offsets = store_->LoadOffsets();
  ASSERT_TRUE(offsets.ok());
  EXPECT_EQ(offsets->at({std::string(kTopic), 0}), next_offset_);
  EXPECT_EQ(processor_->stats().events, static_cast<int64_t>(messages.size()));
}

TEST_F(ProcessorTest, BadInputsGoToTheDeadLetterTopicWithTheirReasonAndGoodOnesSurvive) {
  const std::vector<std::string> good = testing::GoldenUserEvents("dora");
  auto with = [&](const std::string& from, const std::string& to) {
    std::string s = good[1];
    const auto at = s.find(from);
    EXPECT_NE(at, std::string::npos) << from;
    s.replace(at, from.size(), to);
    return s;
  };
  struct Bad {
    std::string value;
    std::string key;
    std::string code;
  };
  const std::string ts_field =
      good[1].substr(good[1].find("\"ts_ms\":"), 21);  // "ts_ms":1767... (13 digits)
  const std::vector<Bad> bad = {
      {"{not json", "dora", "invalid_json"},
      {"", "dora", "invalid_json"},
      {"[1,2,3]", "dora", "not_object"},
      {"\"just a string\"", "dora", "not_object"},
      {R"({"user_id":"dora","ts_ms":1767604447477})", "dora", "missing_field"},
      {with(R"("user_id":"dora")", R"("user_id":17)"), "dora", "wrong_type"},
      {with(R"("event_id":"dora/)", R"("event_id":["x"],"z":")"), "dora", "wrong_type"},
      {with(ts_field, R"("ts_ms":"yesterday")"), "dora", "wrong_type"},
      {with(R"("topic":")", R"("topic":7,"was":")"), "dora", "wrong_type"},
      {with(R"("id":")", R"("id":12345,"was":")"), "dora", "wrong_type"},
      {with(R"("user_id":"dora")", R"("user_id":"do\u0000ra")"), "dora", "invalid_value"},
      {with(ts_field, "\"ts_ms\":1.7676e12"), "dora", "wrong_type"},
      {with(ts_field, "\"ts_ms\":-5"), "dora", "ts_before_epoch"},
      {with(ts_field, "\"ts_ms\":4102444800000"), "dora", "ts_in_future"},
      {with("\"features\":[", "\"features\":[NaN,"), "dora", "invalid_json"},
      {with("\"features\":[", "\"features\":[1e999,"), "dora", "invalid_json"},
      {with("\"features\":[", R"("features":["x",)"), "dora", "schema"},
      {with("\"features\":[", "\"features\":[1,"), "dora", "schema"},  // 9 features
      {with("\"features\":[", "\"features\":[123456789.0,"), "dora", "schema"},
      {with("\"click\":", R"("click":"yes","x":)"), "dora", "schema"},
      {good[1], "mallory", "key_mismatch"},
      {good[1], "", "key_mismatch"},
      {std::string(static_cast<std::size_t>(pipeline_.max_message_bytes) + 1, ' '), "dora",
       "oversized"},
  };
  std::vector<Message> messages;
  std::vector<std::string> accepted;
  std::map<int64_t, std::string> want_code;
  for (std::size_t i = 0; i < bad.size(); ++i) {
    messages.push_back(Message{.key = "dora", .value = good[i], .offset = next_offset_++});
    accepted.push_back(good[i]);
    want_code[next_offset_] = bad[i].code;
    messages.push_back(Message{.key = bad[i].key, .value = bad[i].value, .offset = next_offset_++});
  }
  const std::vector<OutputRecord> outputs = Run(messages, 5);
  std::map<int64_t, std::string> got_code;
  for (const auto& out : outputs) {
    if (out.topic != OutputRecord::Topic::kDeadLetter) {
      continue;
    }
    std::map<std::string, std::string> h(out.headers.begin(), out.headers.end());
    const int64_t offset = std::stoll(h.at(std::string(kHeaderSourceOffset)));
    got_code[offset] = h.at(std::string(kHeaderError));
    EXPECT_EQ(h.at(std::string(kHeaderSourceTopic)), kTopic);
    EXPECT_EQ(h.at(std::string(kHeaderSourcePartition)), "0");
    EXPECT_FALSE(h.at(std::string(kHeaderErrorDetail)).empty());
    // The original bytes, cut to pipeline.max_message_bytes (the oversized one) with its size.
    const std::string& original = messages[static_cast<std::size_t>(offset)].value;
    const auto kept = static_cast<std::size_t>(pipeline_.max_message_bytes);
    EXPECT_EQ(out.value, original.substr(0, kept)) << "original bytes";
    EXPECT_EQ(h.count(std::string(kHeaderSourceValueBytes)), original.size() > kept ? 1U : 0U);
  }
  EXPECT_EQ(got_code, want_code);
  EXPECT_EQ(processor_->stats().dead_letters, static_cast<int64_t>(bad.size()));
  ExpectSameRows(Stored("dora"), Direct(accepted));
}

// A dead letter must fit the producer whatever came in: a 2 MB message (over librdkafka's
// 1,000,000-byte message.max.bytes) and a 1 MB key are cut, and headers give their sizes.
TEST_F(ProcessorTest, DeadLettersOfHugeMessagesAreCutToFitTheProducer) {
  const std::string huge_value(2'000'000, 'x');
  const std::string huge_key(1'000'000, 'k');
  const std::vector<OutputRecord> outputs =
      Run({Message{.key = "dora", .value = huge_value, .offset = next_offset_++},
           Message{.key = huge_key,
                   .value = testing::GoldenUserEvents("dora")[0],
                   .offset = next_offset_++}},
          2);
  ASSERT_EQ(outputs.size(), 2U);
  const auto max_value = static_cast<std::size_t>(pipeline_.max_message_bytes);
  for (const OutputRecord& out : outputs) {
    ASSERT_EQ(out.topic, OutputRecord::Topic::kDeadLetter);
    EXPECT_LE(out.value.size(), max_value);
    EXPECT_LE(out.key.value_or("").size(), kDeadLetterKeyBytes);
  }
  std::map<std::string, std::string> oversized(outputs[0].headers.begin(),
                                               outputs[0].headers.end());
  EXPECT_EQ(oversized.at(std::string(kHeaderError)), "oversized");
  EXPECT_EQ(outputs[0].value, huge_value.substr(0, max_value));
  EXPECT_EQ(oversized.at(std::string(kHeaderSourceValueBytes)), "2000000");
  EXPECT_EQ(oversized.count(std::string(kHeaderSourceKeyBytes)), 0U);
  std::map<std::string, std::string> mismatch(outputs[1].headers.begin(), outputs[1].headers.end());
  EXPECT_EQ(mismatch.at(std::string(kHeaderError)), "key_mismatch");
  EXPECT_EQ(outputs[1].key, huge_key.substr(0, kDeadLetterKeyBytes));
  EXPECT_EQ(mismatch.at(std::string(kHeaderSourceKeyBytes)), "1000000");
  EXPECT_EQ(mismatch.count(std::string(kHeaderSourceValueBytes)), 0U);

  // The bound the daemon checks against message.max.bytes covers both, and a full snapshot.
  auto largest = processor_->LargestMessageBytes(kTopic);
  ASSERT_TRUE(largest.ok()) << largest.status().ToString();
  EXPECT_GE(*largest, pipeline_.max_message_bytes + static_cast<int64_t>(kDeadLetterKeyBytes));
  const auto& cfg = bundle_->config();
  EXPECT_GT(*largest, cfg.window * cfg.n_blocks() * 2 * cfg.d_model * 4);
}

// ts_in_future is judged against the record's own Kafka timestamp, so the verdict does not
// depend on when the record is applied: a replay years later, or a re-apply after a crash,
// decides as the live run did.
TEST_F(ProcessorTest, FutureDatedEventsAreJudgedByTheRecordTimestampNotTheClock) {
  const std::vector<std::string> events = testing::GoldenUserEvents("finn");
  const int64_t ts = 1767604447477;  // Close to the golden events' times.
  std::string future = events[0];
  const auto at = future.find("\"ts_ms\":");
  ASSERT_NE(at, std::string::npos);
  future.replace(at, 21, fmt::format("\"ts_ms\":{}", ts + 3 * pipeline_.max_future_ms));
  record_ts_ms_ = ts;
  const auto run_with_clock = [&](int64_t clock_ms) {
    now_ms_ = clock_ms;
    return Run({Message{.key = "finn", .value = future, .offset = next_offset_++},
                Message{.key = "finn", .value = events[1], .offset = next_offset_++}},
               2);
  };
  // The same two records, applied with the clock in the far past and in the far future: the
  // future-dated one is refused both times, the other accepted both times.
  for (const int64_t clock_ms : {int64_t{0}, ts + 100 * pipeline_.max_future_ms}) {
    SCOPED_TRACE(clock_ms);
    const std::vector<OutputRecord> outputs = run_with_clock(clock_ms);
    int dead = 0;
    for (const OutputRecord& out : outputs) {
      if (out.topic == OutputRecord::Topic::kDeadLetter) {
        ++dead;
        std::map<std::string, std::string> h(out.headers.begin(), out.headers.end());
        EXPECT_EQ(h.at(std::string(kHeaderError)), "ts_in_future");
      }
    }
    EXPECT_EQ(dead, 1);
  }
  // A record without a timestamp (a file replay) has nothing to be judged against.
  now_ms_ = 0;
  std::vector<InputRecord> records = {InputRecord{.topic = kTopic,
                                                  .partition = 0,
                                                  .offset = next_offset_++,
                                                  .has_key = true,
                                                  .key = "finn",
                                                  .value = future,
                                                  .timestamp_ms = -1,
                                                  .publish = true}};
  auto batch = processor_->Process(records);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_EQ(batch->events, 1);
  processor_->Abandon(std::move(batch).value());
}

// A record outside the partition Kafka's Java client gives its key is dead-lettered: applied,
// it would start a second history of the user wherever that partition is owned.
TEST_F(ProcessorTest, RecordsInAnotherPartitionThanTheirKeysAreRefused) {
  const std::vector<std::string> events = testing::GoldenUserEvents("gus");
  constexpr int32_t kPartitions = 6;
  const int32_t home = internal::JavaPartition("gus", kPartitions);
  std::vector<InputRecord> records;
  records.reserve(3);
  for (int i = 0; i < 3; ++i) {
    records.push_back(InputRecord{.topic = kTopic,
                                  .partition = i == 1 ? (home + 1) % kPartitions : home,
                                  .offset = next_offset_++,
                                  .has_key = true,
                                  .key = "gus",
                                  .value = events[static_cast<std::size_t>(i)],
                                  .timestamp_ms = now_ms_,
                                  .partitions = kPartitions,
                                  .publish = true});
  }
  auto batch = processor_->Process(records);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  EXPECT_EQ(batch->events, 2);
  int dead = 0;
  for (const OutputRecord& out : batch->outputs) {
    if (out.topic == OutputRecord::Topic::kDeadLetter) {
      ++dead;
      std::map<std::string, std::string> h(out.headers.begin(), out.headers.end());
      EXPECT_EQ(h.at(std::string(kHeaderError)), "wrong_partition");
      EXPECT_NE(h.at(std::string(kHeaderErrorDetail))
                    .find(fmt::format("belongs in partition {} of 6", home)),
                std::string::npos);
    }
  }
  EXPECT_EQ(dead, 1);
  processor_->Abandon(std::move(batch).value());
}

// One user's unreadable state does not stop the partition (a crash loop when the daemon
// exited on it): the user is quarantined, its events dead-lettered with the reason, its stored
// bytes left alone, and every other user goes on.
TEST_F(ProcessorTest, AUserWithCorruptStateIsQuarantinedAndOthersGoOn) {
  const std::vector<std::string> zed = testing::GoldenUserEvents("zed");
  const std::vector<std::string> amy = testing::GoldenUserEvents("amy");
  Run(Keyed({zed[0]}, "zed"), 1);
  Run(Keyed({amy[0]}, "amy"), 1);
  DropPartition0();  // The next events read both users from RocksDB.
  ASSERT_TRUE(storage::testing::CorruptUserForTesting(*store_, "zed").ok());
  std::vector<Message> messages = Keyed({zed[1], zed[2]}, "zed");
  for (Message& m : Keyed({amy[1], amy[2]}, "amy")) {
    messages.push_back(std::move(m));
  }
  const std::vector<OutputRecord> outputs = Run(messages, 4);
  int dead = 0;
  for (const OutputRecord& out : outputs) {
    if (out.topic == OutputRecord::Topic::kDeadLetter) {
      ++dead;
      EXPECT_EQ(out.key, "zed");
      std::map<std::string, std::string> h(out.headers.begin(), out.headers.end());
      EXPECT_EQ(h.at(std::string(kHeaderError)), "corrupt_state");
      EXPECT_NE(h.at(std::string(kHeaderErrorDetail)).find("user 'zed'"), std::string::npos);
    }
  }
  EXPECT_EQ(dead, 2);
  EXPECT_EQ(processor_->stats().quarantined_users, 1);
  ExpectSameRows(Stored("amy"), Direct({amy[0], amy[1], amy[2]}));
  const auto& cfg = bundle_->config();
  EXPECT_EQ(store_->LoadUserState("zed", cfg.n_blocks(), cfg.window, cfg.d_model).status().code(),
            StatusCode::kCorruption)
      << "the corrupt state was overwritten";
}

TEST_F(ProcessorTest, DeadLettersKeepTheKeyAndItsAbsence) {
  // A keyless record's dead letter has no key; an empty key stays an empty key.
  const std::vector<InputRecord> records = {
      {.topic = kTopic, .partition = 0, .offset = 0, .has_key = false, .key = {}, .value = "{bad"},
      {.topic = kTopic, .partition = 0, .offset = 1, .has_key = true, .key = "", .value = "{bad"},
      {.topic = kTopic, .partition = 0, .offset = 2, .has_key = true, .key = "k", .value = "{bad"},
  };
  auto batch = processor_->Process(records);
  ASSERT_TRUE(batch.ok()) << batch.status().ToString();
  ASSERT_EQ(batch->outputs.size(), 3U);
  for (const OutputRecord& out : batch->outputs) {
    EXPECT_EQ(out.topic, OutputRecord::Topic::kDeadLetter);
  }
  EXPECT_EQ(batch->outputs[0].key, std::nullopt);
  EXPECT_EQ(batch->outputs[1].key, std::optional<std::string>(""));
  EXPECT_EQ(batch->outputs[2].key, std::optional<std::string>("k"));
}

TEST_F(ProcessorTest, UnknownCategoricalValuesAndMissingOptionalPartsAreAccepted) {
  std::string e = testing::GoldenUserEvents("erin")[0];
  const auto at = e.find(R"("topic":")");
  ASSERT_NE(at, std::string::npos);
  e.insert(at + 9, "never-seen-");
  const std::string minimal =
      R"({"event_id":"m1","user_id":"erin","ts_ms":1767604447477,"item":{"features":[0,0,0,0,0,0,0,0]}})";
  const auto outputs = Run(Keyed({e, minimal}, "erin"), 10);
  EXPECT_EQ(processor_->stats().dead_letters, 0);
  EXPECT_EQ(outputs.size(), 1U);  // One delta for erin's batch.
  ExpectSameRows(Stored("erin"), Direct({e, minimal}));
}

TEST_F(ProcessorTest, DuplicateEventIdsAreDroppedAcrossBatchesAndRestarts) {
  const std::vector<std::string> events = testing::GoldenUserEvents("finn");
  Run(Keyed({events[0], events[1], events[0]}, "finn"), 2);
  EXPECT_EQ(processor_->stats().duplicates, 1);
  OpenStore();  // A restart: cache gone, the recent ids come back from RocksDB.
  Run(Keyed({events[1], events[2]}, "finn"), 10);
  EXPECT_EQ(processor_->stats().duplicates, 1);
  ExpectSameRows(Stored("finn"), Direct({events[0], events[1], events[2]}));

  // With a memory of 2 ids, the oldest is forgotten and comes back as a new event.
  pipeline_.dedupe_ids_per_user = 2;
  MakeProcessor();
  Run(Keyed({events[3], events[0]}, "finn"), 10);
  EXPECT_EQ(processor_->stats().duplicates, 0);
  ExpectSameRows(Stored("finn"), Direct({events[0], events[1], events[2], events[3], events[0]}));
}

TEST_F(ProcessorTest, ReplayedRecordsUpdateStateButPublishNothing) {
  const std::vector<std::string> events = testing::GoldenUserEvents("gus");
  const auto silent = Run(Keyed({events[0], events[1], "{bad"}, "gus"), 10, /*publish=*/false);
  EXPECT_TRUE(silent.empty());
  EXPECT_EQ(processor_->stats().replayed, 2);
  EXPECT_EQ(processor_->stats().dead_letters, 1);
  const auto loud = Run(Keyed({events[2]}, "gus"), 10);
  ASSERT_EQ(loud.size(), 1U);
  auto tensors = encoders::DecodeReadyTensors(loud[0].value);
  ASSERT_TRUE(tensors.ok());
  EXPECT_EQ(tensors->pos, std::vector<int64_t>{2});
  ExpectSameRows(Stored("gus"), Direct({events[0], events[1], events[2]}));
}

TEST_F(ProcessorTest, AbandonedBatchesLeaveNoTrace) {
  const std::vector<std::string> events = testing::GoldenUserEvents("hana");
  Run(Keyed({events[0]}, "hana"), 10);
  std::vector<Message> more = Keyed({events[1]}, "hana");
  InputRecord r{.topic = kTopic,
                .partition = 0,
                .offset = more[0].offset,
                .has_key = true,
                .key = more[0].key,
                .value = more[0].value,
                .publish = true};
  auto batch = processor_->Process(std::span<const InputRecord>(&r, 1));
  ASSERT_TRUE(batch.ok());
  processor_->Abandon(std::move(batch).value());
  next_offset_ = more[0].offset;
  Run(Keyed({events[1]}, "hana"), 10);  // Retried after the failure.
  ExpectSameRows(Stored("hana"), Direct({events[0], events[1]}));
}

// Batch n+1 is processed while batch n is in flight (not yet committed or finished), as the
// pipelined daemon does: it must build on batch n's state, and the committed result must equal
// one batch at a time, whatever the cache holds meanwhile.
TEST_F(ProcessorTest, BatchesInFlightBuildOnEachOther) {
  cache_bytes_ = 0;  // Nothing hot: any read of stale RocksDB state would show.
  MakeProcessor();
  const std::vector<std::string> users = {"kai", "lea", "max"};
  std::map<std::string, std::vector<std::string>> events;
  for (const auto& u : users) {
    events[u] = testing::GoldenUserEvents(u);
  }
  std::vector<std::vector<Message>> batches(4);
  for (std::size_t i = 0; i < 8; ++i) {
    for (const auto& u : users) {
      if (u == "max" && i % 2 == 1) {
        continue;  // A user missing from some batches.
      }
      batches[i / 2].push_back(Keyed({events[u][i]}, u)[0]);
    }
  }
  std::vector<std::vector<InputRecord>> records(batches.size());
  std::vector<PendingBatch> pending;
  for (std::size_t b = 0; b < batches.size(); ++b) {
    for (const Message& m : batches[b]) {
      records[b].push_back(RecordOf(m));
    }
    auto batch = processor_->Process(records[b]);
    ASSERT_TRUE(batch.ok()) << batch.status().ToString();
    pending.push_back(std::move(batch).value());
    EXPECT_EQ(processor_->in_flight(), b + 1);
  }
  EXPECT_EQ(processor_->stats().store_loads, 3);  // Each user read once, then carried along.
  for (PendingBatch& batch : pending) {
    ASSERT_TRUE(store_->Commit(batch.state).ok());
    processor_->Finish(std::move(batch));
  }
  EXPECT_EQ(processor_->in_flight(), 0U);
  for (const auto& u : users) {
    std::vector<std::string> want;
    for (std::size_t i = 0; i < 8; ++i) {
      if (u != "max" || i % 2 == 0) {
        want.push_back(events[u][i]);
      }
    }
    ExpectSameRows(Stored(u), Direct(want));
  }
}

// The committed view (what the API reads of hot users) holds, for every user it holds, the
// state RocksDB has and the partition's committed next offset; users of a batch in flight are
// withdrawn until it commits, an abandoned batch publishes nothing, a cleared cache nothing.
TEST_F(ProcessorTest, TheCommittedViewHoldsWhatRocksDbCommittedForHotUsers) {
  view_ = std::make_unique<storage::CommittedView>(bundle_->model_id());
  MakeProcessor();
  const auto& cfg = bundle_->config();
  const TopicPartition p0{std::string(kTopic), 0};
  // `user` as the view has it equals `user` as a RocksDB snapshot has it, offset included.
  const auto expect_view_is_store = [&](const std::string& user) {
    const storage::CommittedView::Read read = view_->Find(user, p0);
    ASSERT_NE(read.state, nullptr) << user;
    auto stored =
        store_->LoadCommittedUser(user, cfg.n_blocks(), cfg.window, cfg.d_model, kTopic, 0);
    ASSERT_TRUE(stored.ok() && stored->state.has_value()) << user;
    ExpectSameRows(read.state->window, stored->state->window);
    EXPECT_EQ(read.state->recent_event_ids, stored->state->recent_event_ids) << user;
    EXPECT_EQ(read.next_offset, stored->next_offset) << user;
  };
  const std::vector<std::string> kai = testing::GoldenUserEvents("kai");
  const std::vector<std::string> lea = testing::GoldenUserEvents("lea");
  Run(Keyed({kai[0], kai[1]}, "kai"), 10);
  Run(Keyed({lea[0]}, "lea"), 10);
  expect_view_is_store("kai");
  expect_view_is_store("lea");  // kai's state also covers lea's later offset.
  EXPECT_EQ(view_->Find("kai", p0).next_offset, next_offset_);
  EXPECT_EQ(view_->Find("nobody", p0).state, nullptr);

  // A batch in flight takes kai out of the view; lea stays, at the committed offset.
  const std::vector<Message> more = Keyed({kai[2]}, "kai");
  const InputRecord record = RecordOf(more[0]);
  auto batch = processor_->Process(std::span<const InputRecord>(&record, 1));
  ASSERT_TRUE(batch.ok());
  EXPECT_EQ(view_->Find("kai", p0).state, nullptr);
  expect_view_is_store("lea");
  ASSERT_TRUE(store_->Commit(batch->state).ok());
  processor_->Finish(std::move(batch).value());
  expect_view_is_store("kai");
  ExpectSameRows(view_->Find("kai", p0).state->window, Direct({kai[0], kai[1], kai[2]}));

  // An abandoned batch publishes nothing: kai is read from RocksDB until a batch commits it.
  const std::vector<Message> failed = Keyed({kai[3]}, "kai");
  const InputRecord failed_record = RecordOf(failed[0]);
  auto abandoned = processor_->Process(std::span<const InputRecord>(&failed_record, 1));
  ASSERT_TRUE(abandoned.ok());
  processor_->Abandon(std::move(abandoned).value());
  EXPECT_EQ(view_->Find("kai", p0).state, nullptr);
  expect_view_is_store("lea");

  DropPartition0();  // A revoke.
  EXPECT_EQ(view_->size(), 0U);
  EXPECT_EQ(view_->Find("lea", p0).state, nullptr);

  // A view of another model is refused.
  processor_.reset();  // Before its view goes.
  view_ = std::make_unique<storage::CommittedView>("another-model");
  config::StateOptions state = state_;
  EXPECT_EQ(
      Processor::Create(
          *bundle_, *store_, pipeline_, output_, state, [this] { return now_ms_; }, view_.get())
          .status()
          .code(),
      StatusCode::kInvalidArgument);
}

// A revoke drops only the revoked partitions' users: the partitions kept stay hot (no RocksDB
// read on their next event, still in the committed view), the revoked ones are read again.
TEST_F(ProcessorTest, DroppingRevokedPartitionsKeepsTheOthersHot) {
  partitions_ = 4;
  view_ = std::make_unique<storage::CommittedView>(bundle_->model_id());
  MakeProcessor();
  std::string gone = "kai";
  std::string kept;
  for (const std::string candidate : {"lea", "max", "ned", "ivy", "zoe", "amy", "bob"}) {
    if (internal::JavaPartition(candidate, partitions_) !=
        internal::JavaPartition(gone, partitions_)) {
      kept = candidate;
      break;
    }
  }
  ASSERT_FALSE(kept.empty());
  const TopicPartition gone_tp{std::string(kTopic), internal::JavaPartition(gone, partitions_)};
  const TopicPartition kept_tp{std::string(kTopic), internal::JavaPartition(kept, partitions_)};
  const std::vector<std::string> gone_events = testing::GoldenUserEvents(gone);
  const std::vector<std::string> kept_events = testing::GoldenUserEvents(kept);
  Run(Keyed({gone_events[0]}, gone), 10);
  Run(Keyed({kept_events[0]}, kept), 10);
  ASSERT_EQ(processor_->cached_users(), 2);
  const int64_t loads = processor_->stats().store_loads;

  const std::vector<TopicPartition> revoked{gone_tp};
  processor_->DropPartitions(revoked);
  EXPECT_EQ(processor_->cached_users(), 1);
  EXPECT_EQ(view_->Find(gone, gone_tp).state, nullptr);
  EXPECT_NE(view_->Find(kept, kept_tp).state, nullptr);

  Run(Keyed({gone_events[1]}, gone), 10);
  Run(Keyed({kept_events[1]}, kept), 10);
  EXPECT_EQ(processor_->stats().store_loads, loads + 1);  // Only the dropped user re-read.
  ExpectSameRows(Stored(gone), Direct({gone_events[0], gone_events[1]}));
  ExpectSameRows(Stored(kept), Direct({kept_events[0], kept_events[1]}));
  ExpectSameRows(view_->Find(gone, gone_tp).state->window, Stored(gone));
}

// A failed delivery abandons the oldest batch in flight and every later one: the next batch
// starts from the committed state, not from what the abandoned batches computed.
TEST_F(ProcessorTest, AbandoningTheOldestBatchDropsEveryLaterOne) {
  const std::vector<std::string> events = testing::GoldenUserEvents("ned");
  Run(Keyed({events[0]}, "ned"), 10);
  std::vector<Message> more = Keyed({events[1], events[2]}, "ned");
  std::vector<PendingBatch> pending;
  for (const Message& m : more) {
    const InputRecord r = RecordOf(m);
    auto batch = processor_->Process(std::span<const InputRecord>(&r, 1));
    ASSERT_TRUE(batch.ok());
    pending.push_back(std::move(batch).value());
  }
  processor_->Abandon(std::move(pending[0]));
  EXPECT_EQ(processor_->in_flight(), 0U);
  EXPECT_EQ(processor_->stats().abandoned_batches, 2);
  next_offset_ = more[0].offset;
  Run(Keyed({events[1], events[2]}, "ned"), 1);  // Retried after the failure.
  ExpectSameRows(Stored("ned"), Direct({events[0], events[1], events[2]}));
}

TEST_F(ProcessorTest, SnapshotsAreCoalescedToOnePerIntervalPerUser) {
  output_.snapshot_interval_ms = 1000;
  MakeProcessor();
  const std::vector<std::string> events = testing::GoldenUserEvents("ivy");
  int snapshots = 0;
  for (std::size_t i = 0; i < 10; ++i) {
    now_ms_ += 300;
    for (const auto& out : Run(Keyed({events[i]}, "ivy"), 10)) {
      auto tensors = encoders::DecodeReadyTensors(out.value);
      ASSERT_TRUE(tensors.ok());
      if (tensors->header.kind == encoders::ReadyKind::kSnapshot) {
        ++snapshots;
        EXPECT_EQ(tensors->rows(),
                  std::min<int64_t>(static_cast<int64_t>(i) + 1, bundle_->config().window));
      }
    }
  }
  // First sight at t=300, then at most one per 1000 ms over 3000 ms: t=1500, 2700.
  EXPECT_EQ(snapshots, 2);
  EXPECT_EQ(processor_->stats().deltas, 10);
}

TEST_F(ProcessorTest, StateOfAnotherModelIsRefused) {
  Run(Keyed({testing::GoldenUserEvents("jo")[0]}, "jo"), 10);
  processor_.reset();
  auto other =
      encoders::Bundle::Load(std::string(ROTOR_GOLDEN_DIR) + "/time_linear.bundle.safetensors");
  ASSERT_TRUE(other.ok());
  auto refused =
      Processor::Create(*other, *store_, pipeline_, output_, state_, [] { return int64_t{0}; });
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("fresh directory"), std::string_view::npos);
}

// The state directory keeps the K/V dtype it was made with: its first batch records it, and a
// Processor with another state.kv_dtype is refused, naming the setting. A state recorded
// before the setting existed (a model id, no kv_dtype) holds f32 rows.
TEST_F(ProcessorTest, StateOfAnotherKvDtypeIsRefusedAndOlderStateIsF32) {
  Run(Keyed({testing::GoldenUserEvents("jo")[0]}, "jo"), 10);
  auto recorded = store_->LoadInfo(kInfoKvDtype);
  ASSERT_TRUE(recorded.ok());
  EXPECT_EQ(recorded->value_or("(none)"), "f32");
  processor_.reset();
  config::StateOptions bf16 = state_;
  bf16.kv_dtype = config::KvDtype::kBF16;
  const auto create = [&](const config::StateOptions& state) {
    return Processor::Create(*bundle_, *store_, pipeline_, output_, state,
                             [] { return int64_t{0}; });
  };
  auto refused = create(bf16);
  ASSERT_FALSE(refused.ok());
  EXPECT_EQ(refused.status().code(), StatusCode::kFailedPrecondition);
  EXPECT_NE(refused.status().message().find("state.kv_dtype is bf16, but the state directory "
                                            "holds K/V rows in f32"),
            std::string_view::npos)
      << refused.status().ToString();
  // A state as an older rotor left it: a model id and no kv_dtype entry.
  store_path_ = dir_.path() + "/older";
  OpenStore();
  processor_.reset();
  storage::StateBatch older = store_->NewBatch();
  ASSERT_TRUE(older.PutInfo(kInfoModelId, bundle_->model_id()).ok());
  ASSERT_TRUE(store_->Commit(older).ok());
  EXPECT_EQ(create(bf16).status().code(), StatusCode::kFailedPrecondition);
  EXPECT_TRUE(create(state_).ok());
}

// ---- user state expiry (state.user_ttl_ms) ---------------------------------------------------

constexpr int64_t kMinuteMs = 60000;
constexpr int64_t kHourMs = 60 * kMinuteMs;
// The golden events' first time; the TTL tests place their events from here.
constexpr int64_t kT0 = 1767613858279;

// Event `i` of `user`'s golden events, at `ts_ms` (13 digits, as the golden times).
std::string EventAt(const std::string& user, std::size_t i, int64_t ts_ms) {
  std::string line = testing::GoldenUserEvents(user).at(i);
  const auto at = line.find("\"ts_ms\":");
  EXPECT_NE(at, std::string::npos);
  line.replace(at, 21, fmt::format("\"ts_ms\":{}", ts_ms));
  return line;
}

std::vector<int64_t> DeltaPositions(const std::vector<OutputRecord>& outputs,
                                    const std::string& user) {
  std::vector<int64_t> out;
  for (const OutputRecord& o : outputs) {
    if (o.topic != OutputRecord::Topic::kOutput || o.key != user) {
      continue;
    }
    auto tensors = encoders::DecodeReadyTensors(o.value);
    EXPECT_TRUE(tensors.ok());
    if (tensors.ok()) {
      out.insert(out.end(), tensors->pos.begin(), tensors->pos.end());
    }
  }
  return out;
}

// An event whose user's last event is more than the TTL before the partition's watermark (as
// it was before the event) starts a fresh history: position 0, an empty window, no memory of
// the old event ids; within the TTL (the bound included) the history goes on.
TEST_F(ProcessorTest, AnEventPastTheTtlStartsAFreshHistoryAndOneWithinItContinues) {
  state_.user_ttl_ms = kHourMs;
  MakeProcessor();
  const std::string alice0 = EventAt("alice", 0, kT0);
  const std::string alice1 = EventAt("alice", 1, kT0 + kMinuteMs);
  const std::string dave0 = EventAt("dave", 0, kT0 + kHourMs + kHourMs / 2);
  const std::string erin0 = EventAt("erin", 0, kT0 + kHourMs);
  Run(Keyed({alice0, alice1}, "alice"), 10);
  Run(Keyed({dave0}, "dave"), 10);
  Run(Keyed({erin0}, "erin"), 10);
  // Another user moves the partition's watermark two hours on.
  Run(Keyed({EventAt("bob", 0, kT0 + 2 * kHourMs)}, "bob"), 10);

  // alice's last event (T0 + 1 min) + 1 h < T0 + 2 h: expired. Her event reuses an old event
  // id, which the dropped history no longer remembers.
  const std::string alice_again = EventAt("alice", 0, kT0 + 2 * kHourMs + 1);
  const std::string dave1 = EventAt("dave", 1, kT0 + 2 * kHourMs + 2);
  const std::string erin1 = EventAt("erin", 1, kT0 + 2 * kHourMs + 3);
  // erin first: the watermark before her event is still exactly T0 + 2 h.
  std::vector<Message> back = Keyed({erin1}, "erin");
  back.push_back(Keyed({alice_again}, "alice")[0]);
  back.push_back(Keyed({dave1}, "dave")[0]);
  const std::vector<OutputRecord> outputs = Run(back, 10);

  ExpectSameRows(Stored("alice"), Direct({alice_again}));
  EXPECT_EQ(DeltaPositions(outputs, "alice"), std::vector<int64_t>{0});
  EXPECT_EQ(Stored("alice").next_pos, 1);
  // Within the TTL; erin exactly at it (last_ts + ttl == watermark is not expired).
  ExpectSameRows(Stored("dave"), Direct({dave0, dave1}));
  ExpectSameRows(Stored("erin"), Direct({erin0, erin1}));
  EXPECT_EQ(DeltaPositions(outputs, "erin"), std::vector<int64_t>{1});
  EXPECT_EQ(processor_->stats().restarted_histories, 1);
  EXPECT_EQ(processor_->stats().duplicates, 0);
  // The old rows are gone from RocksDB, not only shadowed.
  const auto& cfg = bundle_->config();
  auto loaded = store_->LoadUserState("alice", cfg.n_blocks(), cfg.window, cfg.d_model);
  ASSERT_TRUE(loaded.ok() && loaded->has_value());
  EXPECT_EQ((*loaded)->recent_event_ids, std::vector<std::string>{"alice/u-long-0000"});

  // Without a TTL the same input continues every history.
  state_.user_ttl_ms = 0;
  testing::TempDir other("rotor_processor_test_ttl0");
  store_path_ = other.path();
  OpenStore();
  Run(Keyed({alice0, alice1}, "alice"), 10);
  Run(Keyed({EventAt("bob", 0, kT0 + 2 * kHourMs)}, "bob"), 10);
  Run(Keyed({EventAt("alice", 2, kT0 + 2 * kHourMs + 1)}, "alice"), 10);
  EXPECT_EQ(Stored("alice").next_pos, 3);
  EXPECT_EQ(processor_->stats().restarted_histories, 0);
}

// The watermark is per partition: a user is not expired by events of another partition.
TEST_F(ProcessorTest, OnlyTheUsersOwnPartitionsWatermarkExpiresIt) {
  state_.user_ttl_ms = kHourMs;
  partitions_ = 2;
  MakeProcessor();
  // Two users in different partitions.
  std::string same;
  std::string other;
  for (int i = 0; same.empty() || other.empty(); ++i) {
    const std::string u = fmt::format("p-{}", i);
    (internal::JavaPartition(u, 2) == internal::JavaPartition("amy", 2) ? same : other) = u;
    if (u == "amy") {
      same.clear();
    }
  }
  Run(Keyed({EventAt("amy", 0, kT0)}, "amy"), 10);
  Run(Keyed({EventAt(other, 0, kT0 + 3 * kHourMs)}, other), 10);  // The other partition.
  Run(Keyed({EventAt("amy", 1, kT0 + 3 * kHourMs)}, "amy"), 10);
  EXPECT_EQ(Stored("amy").next_pos, 2) << "expired by another partition's events";
  Run(Keyed({EventAt(same, 0, kT0 + 6 * kHourMs)}, same), 10);  // amy's partition.
  Run(Keyed({EventAt("amy", 2, kT0 + 6 * kHourMs)}, "amy"), 10);
  EXPECT_EQ(Stored("amy").next_pos, 1);
}

// A user expiring in the middle of a batch (its earlier events in the batch belong to the old
// history) ends as if the batch had been cut there: the same state as one event per batch, and
// every event's rows published on the history it was applied to.
TEST_F(ProcessorTest, ExpiryInsideOneBatchEqualsExpiryAcrossBatches) {
  state_.user_ttl_ms = kHourMs;
  std::vector<std::string> alice;
  std::vector<Message> messages;
  const auto add = [&](const std::string& user, std::size_t i, int64_t ts) {
    messages.push_back(Message{.key = user, .value = EventAt(user, i, ts), .offset = 0});
  };
  add("alice", 0, kT0);
  add("alice", 1, kT0 + 1000);
  add("bob", 0, kT0 + 2 * kHourMs);
  add("alice", 2, kT0 + 2 * kHourMs + 1);  // Expired: restarts.
  add("alice", 3, kT0 + 2 * kHourMs + 2);
  add("bob", 1, kT0 + 5 * kHourMs);
  add("alice", 4, kT0 + 5 * kHourMs + 1);  // Expired again.
  std::map<std::size_t, std::map<std::string, std::string>> digests;
  std::map<std::size_t, std::map<std::string, std::vector<int64_t>>> positions;
  for (const std::size_t batch_size : {std::size_t{1}, std::size_t{3}, std::size_t{100}}) {
    SCOPED_TRACE(batch_size);
    testing::TempDir dir("rotor_processor_test_batch");
    store_path_ = dir.path();
    OpenStore();
    for (std::size_t i = 0; i < messages.size(); ++i) {
      messages[i].offset = static_cast<int64_t>(i);
    }
    const std::vector<OutputRecord> outputs = Run(messages, batch_size);
    digests[batch_size] = StateDigests();
    positions[batch_size]["alice"] = DeltaPositions(outputs, "alice");
    positions[batch_size]["bob"] = DeltaPositions(outputs, "bob");
    EXPECT_EQ(processor_->stats().restarted_histories, 2);
    ExpectSameRows(Stored("alice"), Direct({messages[6].value}));
    processor_.reset();
    store_.reset();
  }
  EXPECT_EQ(digests[1], digests[3]);
  EXPECT_EQ(digests[1], digests[100]);
  // Every applied event's row, in order: 0, 1 (old history), 0, 1, then 0.
  const std::vector<int64_t> want = {0, 1, 0, 1, 0};
  EXPECT_EQ(positions[1]["alice"], want);
  EXPECT_EQ(positions[3]["alice"], want);
  EXPECT_EQ(positions[100]["alice"], want);
}

// pipeline.workers splits a batch's users between threads (pipeline/internal/worker_pool.h):
// the messages (in order, byte for byte) and the stored state are the same for any count,
// with uneven users per batch, snapshots, duplicates and a history that expires inside a batch.
TEST_F(ProcessorTest, AnyNumberOfWorkersGivesTheSameMessagesAndState) {
  state_.user_ttl_ms = kHourMs;
  state_.ttl_sweep_users_per_batch = 0;  // Every user stays stored, to be compared.
  output_.snapshot_interval_ms = 1;
  std::vector<Message> messages;
  const auto add = [&](const std::string& user, std::size_t i, int64_t ts) {
    messages.push_back(Message{.key = user,
                               .value = EventAt(user, i, ts),
                               .offset = static_cast<int64_t>(messages.size())});
  };
  // 40 users with 1 to 9 events each, interleaved; user w-0 twice as busy; one repeated event.
  for (std::size_t round = 0; round < 9; ++round) {
    for (int u = 0; u < 40; ++u) {
      if (round < static_cast<std::size_t>(1 + (u % 9))) {
        add(fmt::format("w-{}", u), round, kT0 + static_cast<int64_t>(round) * 1000 + u);
      }
    }
    add("w-0", 9 + round, kT0 + static_cast<int64_t>(round) * 1000 + 500);
  }
  messages.push_back(messages[3]);
  messages.back().offset = static_cast<int64_t>(messages.size()) - 1;
  add("late", 0, kT0);
  add("w-1", 1 + 9, kT0 + 3 * kHourMs);   // Moves the watermark on by three hours.
  add("late", 1, kT0 + 3 * kHourMs + 1);  // Expired inside the batch: a fresh history.
  struct Run1 {
    std::vector<std::tuple<int, std::optional<std::string>, std::string>> outputs;
    std::map<std::string, std::string> digests;
  };
  std::map<int, Run1> runs;
  for (const int workers : {1, 2, 3}) {
    SCOPED_TRACE(workers);
    testing::TempDir dir("rotor_processor_test_workers");
    store_path_ = dir.path();
    pipeline_.workers = workers;
    OpenStore();
    now_ms_ = 1767571200000 + 86400000LL * 30;
    Run1& run = runs[workers];
    for (const std::size_t batch_size : {std::size_t{7}, std::size_t{500}}) {
      const auto half = static_cast<std::ptrdiff_t>(messages.size() / 2);
      const std::vector<Message> part(batch_size == 7 ? messages.begin() : messages.begin() + half,
                                      batch_size == 7 ? messages.begin() + half : messages.end());
      for (OutputRecord& o : Run(part, batch_size)) {
        run.outputs.emplace_back(static_cast<int>(o.topic), o.key, std::move(o.value));
      }
      now_ms_ += 10;
    }
    run.digests = StateDigests();
    EXPECT_EQ(processor_->stats().restarted_histories, 1);
    EXPECT_EQ(processor_->stats().duplicates, 1);
    EXPECT_GT(processor_->stats().snapshots, 10);
    processor_.reset();
    store_.reset();
  }
  ASSERT_EQ(runs[1].digests.size(), 41U);
  EXPECT_TRUE(runs[1].outputs == runs[2].outputs) << "2 workers published other messages";
  EXPECT_TRUE(runs[1].outputs == runs[3].outputs) << "3 workers published other messages";
  EXPECT_EQ(runs[1].digests, runs[2].digests);
  EXPECT_EQ(runs[1].digests, runs[3].digests);
}

// The sweep visits at most state.ttl_sweep_users_per_batch stored users per batch, wrapping
// around, and deletes exactly those expired against their own partition's watermark.
TEST_F(ProcessorTest, TheSweepDeletesExpiredUsersOnlyAndABoundedNumberPerBatch) {
  state_.user_ttl_ms = kHourMs;
  state_.ttl_sweep_users_per_batch = 2;
  partitions_ = 2;
  MakeProcessor();
  std::map<int32_t, std::vector<std::string>> by_partition;
  for (int i = 0; by_partition[0].size() < 5 || by_partition[1].size() < 5; ++i) {
    const std::string u = fmt::format("s-{}", i);
    auto& list = by_partition[internal::JavaPartition(u, 2)];
    if (list.size() < 5) {
      list.push_back(u);
    }
  }
  // Partition 0: three old users, one recent, one pusher. Partition 1: all old, but its
  // watermark stays put.
  const std::vector<std::string>& p0 = by_partition[0];
  const std::vector<std::string>& p1 = by_partition[1];
  for (std::size_t i = 0; i < 3; ++i) {
    Run(Keyed({EventAt(p0[i], 0, kT0)}, p0[i]), 10);
  }
  Run(Keyed({EventAt(p0[3], 0, kT0 + 50 * kMinuteMs)}, p0[3]), 10);
  for (std::size_t i = 0; i < 5; ++i) {
    Run(Keyed({EventAt(p1[i], 0, kT0)}, p1[i]), 10);
  }
  EXPECT_EQ(processor_->stats().expired_users, 0);
  ASSERT_EQ(store_->ListUsers()->size(), 9U);
  // The pusher moves partition 0's watermark to T0 + 1 h 40: p0[0..2] are expired, p0[3] not.
  const std::string& pusher = p0[4];
  std::size_t stored = 9 + 1;
  std::vector<std::size_t> deleted_per_batch;
  for (std::size_t i = 0; i < 8; ++i) {
    Run(Keyed({EventAt(pusher, i, kT0 + 100 * kMinuteMs + static_cast<int64_t>(i))}, pusher), 10);
    const std::size_t now_stored = store_->ListUsers()->size();
    deleted_per_batch.push_back(stored - now_stored);
    EXPECT_LE(stored - now_stored, 2U) << "the sweep visited more than 2 users in a batch";
    stored = now_stored;
  }
  EXPECT_EQ(processor_->stats().expired_users, 3);
  std::vector<std::string> want = {p0[3], pusher};
  want.insert(want.end(), p1.begin(), p1.end());
  std::sort(want.begin(), want.end());
  EXPECT_EQ(*store_->ListUsers(), want);
  for (std::size_t i = 0; i < 3; ++i) {
    EXPECT_EQ(*storage::testing::CountRowsForTesting(*store_, p0[i]), 0) << p0[i];
  }
  // A swept user that returns starts afresh, as an expired one would have.
  const std::string back = EventAt(p0[0], 5, kT0 + 3 * kHourMs);
  Run(Keyed({back}, p0[0]), 10);
  ExpectSameRows(Stored(p0[0]), Direct({back}));
}

// The state and the outputs do not depend on whether the sweep deleted a returning user
// first: without a sweep, with one user per batch, and with every user per batch, the same
// records give the same outputs and the same live state; only the expired users' bytes differ
// (the sweep reclaimed them).
TEST_F(ProcessorTest, SweepingOrNotGivesTheSameStateAndOutputs) {
  state_.user_ttl_ms = kHourMs;
  partitions_ = 3;
  std::vector<Message> messages;
  const auto add = [&](const std::string& user, std::size_t i, int64_t ts) {
    messages.push_back(Message{.key = user,
                               .value = EventAt(user, i, ts),
                               .offset = static_cast<int64_t>(messages.size())});
  };
  // Twelve users active at first; then hours pass in every partition; then some come back,
  // a few of them within the TTL of their last event.
  for (std::size_t round = 0; round < 3; ++round) {
    for (int u = 0; u < 12; ++u) {
      add(fmt::format("c-{}", u), round, kT0 + static_cast<int64_t>(round) * kMinuteMs + u);
    }
  }
  for (int u = 12; u < 24; ++u) {
    add(fmt::format("c-{}", u), 0, kT0 + 3 * kHourMs + u);
  }
  for (int u = 0; u < 24; u += 2) {
    add(fmt::format("c-{}", u), 3, kT0 + 3 * kHourMs + kHourMs / 2 + u);
  }
  for (int u = 1; u < 24; u += 4) {
    add(fmt::format("c-{}", u), 4, kT0 + 5 * kHourMs + u);
  }
  struct Result {
    std::vector<std::tuple<int, std::optional<std::string>, std::string>> outputs;
    std::map<std::string, std::string> digests;
    std::set<std::string> expired;
    int64_t swept = 0;
  };
  std::map<int32_t, Result> results;
  for (const int32_t sweep : {0, 1, 1000}) {
    SCOPED_TRACE(sweep);
    testing::TempDir dir("rotor_processor_test_sweep");
    store_path_ = dir.path();
    state_.ttl_sweep_users_per_batch = sweep;
    OpenStore();
    Result& r = results[sweep];
    for (const OutputRecord& o : Run(messages, 4)) {
      r.outputs.emplace_back(static_cast<int>(o.topic), o.key, o.value);
    }
    r.digests = StateDigests();
    r.expired = ExpiredStoredUsers(kHourMs);
    r.swept = processor_->stats().expired_users;
    processor_.reset();
    store_.reset();
  }
  EXPECT_EQ(results[0].swept, 0);
  EXPECT_GT(results[1].swept, 0);
  EXPECT_GT(results[1000].swept, results[1].swept);
  EXPECT_FALSE(results[0].expired.empty()) << "the test expires nobody";
  EXPECT_TRUE(results[1000].expired.empty()) << "a full sweep per batch left expired users";
  for (const int32_t sweep : {1, 1000}) {
    SCOPED_TRACE(sweep);
    EXPECT_EQ(results[sweep].outputs, results[0].outputs);
    EXPECT_EQ(Without(results[sweep].digests, results[sweep].expired),
              Without(results[0].digests, results[0].expired));
  }
}

// The users a store rebuilt from `outputs`' changelog records alone holds (what a restore of
// every partition gives).
std::vector<std::string> UsersFromChangelog(const std::vector<OutputRecord>& outputs) {
  testing::TempDir dir("rotor_processor_test_changelog");
  auto store = storage::UserStateStore::Open({.path = dir.path(),
                                              .block_cache_bytes = 1 << 20,
                                              .write_buffer_bytes = 1 << 20,
                                              .sync_writes = false,
                                              .create_if_missing = true});
  EXPECT_TRUE(store.ok()) << store.status().ToString();
  if (!store.ok()) {
    return {};
  }
  storage::StateBatch batch = (*store)->NewBatch();
  for (const OutputRecord& o : outputs) {
    if (o.topic != OutputRecord::Topic::kChangelog) {
      continue;
    }
    storage::ChangelogRecord record{.key = o.key.value_or(""), .value = std::nullopt};
    if (!o.null_value) {
      record.value = o.value;
    }
    auto marker = storage::DecodeChangelogMarker(record.key, record.value);
    auto base = storage::DecodeChangelogBase(record.key, record.value);
    EXPECT_TRUE(marker.ok() && base.ok());
    if (!marker.ok() || !base.ok() || marker->has_value() || base->has_value()) {
      continue;
    }
    EXPECT_TRUE(batch.ApplyChangelog(record).ok());
  }
  EXPECT_TRUE((*store)->Commit(batch).ok());
  auto users = (*store)->ListUsers();
  EXPECT_TRUE(users.ok());
  return users.ok() ? *users : std::vector<std::string>{};
}

// With the changelog on, every user the sweep deletes is deleted in the changelog too: a user
// expired by its partition's watermark is swept only in a batch that holds records of its
// partition (whose marker follows the deletion), never silently in a batch of another
// partition, which would leave the user in every restore.
TEST_F(ProcessorTest, WithTheChangelogEverySweptUserIsDeletedInTheChangelog) {
  state_.user_ttl_ms = kHourMs;
  state_.ttl_sweep_users_per_batch = 1000;
  partitions_ = 2;
  MakeProcessor();
  processor_->EnableChangelog();
  std::string quiet;  // In amy's partition.
  std::string other;  // In the other one.
  for (int i = 0; quiet.empty() || other.empty(); ++i) {
    const std::string u = fmt::format("q-{}", i);
    (internal::JavaPartition(u, 2) == internal::JavaPartition("amy", 2) ? quiet : other) = u;
  }
  std::vector<OutputRecord> outputs;
  const auto run = [&](const std::vector<Message>& messages) {
    for (OutputRecord& o : Run(messages, 10)) {
      outputs.push_back(std::move(o));
    }
  };
  run(Keyed({EventAt(quiet, 0, kT0)}, quiet));
  // amy moves the partition's watermark three hours on in the batch that also holds quiet's
  // second event: quiet is expired, but held by that batch, so not swept in it.
  std::vector<Message> jump = Keyed({EventAt(quiet, 1, kT0 + kMinuteMs)}, quiet);
  jump.push_back(Keyed({EventAt("amy", 0, kT0 + 3 * kHourMs)}, "amy")[0]);
  run(jump);
  // A batch of the other partition only.
  run(Keyed({EventAt(other, 0, kT0 + 3 * kHourMs)}, other));
  EXPECT_EQ(UsersFromChangelog(outputs), *store_->ListUsers()) << "after the other partition";
  // A batch of amy's partition sweeps quiet, in the changelog as well.
  run(Keyed({EventAt("amy", 1, kT0 + 3 * kHourMs + 1)}, "amy"));
  const std::vector<std::string> live = *store_->ListUsers();
  EXPECT_EQ(std::count(live.begin(), live.end(), quiet), 0) << "quiet was never swept";
  EXPECT_EQ(processor_->stats().expired_users, 1);
  EXPECT_EQ(UsersFromChangelog(outputs), live);
}

// A restart (the store reopened, a new Processor) in the middle gives the state an
// uninterrupted run gives: the watermarks come back from RocksDB with the offsets.
TEST_F(ProcessorTest, ARestartInTheMiddleExpiresWhatAnUninterruptedRunDoes) {
  state_.user_ttl_ms = kHourMs;
  state_.ttl_sweep_users_per_batch = 0;  // Expiry on arrival alone; the sweep is tested above.
  partitions_ = 2;
  std::vector<Message> messages;
  const auto add = [&](const std::string& user, std::size_t i, int64_t ts) {
    messages.push_back(Message{.key = user,
                               .value = EventAt(user, i, ts),
                               .offset = static_cast<int64_t>(messages.size())});
  };
  for (int u = 0; u < 8; ++u) {
    add(fmt::format("r-{}", u), 0, kT0 + u);
  }
  for (int u = 8; u < 16; ++u) {
    add(fmt::format("r-{}", u), 0, kT0 + 2 * kHourMs + u);  // Moves both watermarks.
  }
  const std::size_t cut = messages.size();
  for (int u = 0; u < 8; ++u) {
    add(fmt::format("r-{}", u), 1, kT0 + 2 * kHourMs + 100 + u);  // Returns: expired.
  }
  std::map<std::string, std::string> uninterrupted;
  std::vector<int64_t> uninterrupted_positions;
  {
    testing::TempDir dir("rotor_processor_test_whole");
    store_path_ = dir.path();
    OpenStore();
    uninterrupted_positions = DeltaPositions(Run(messages, 3), "r-0");
    uninterrupted = StateDigests();
    processor_.reset();
    store_.reset();
  }
  const std::vector<Message> first(messages.begin(),
                                   messages.begin() + static_cast<std::ptrdiff_t>(cut));
  const std::vector<Message> second(messages.begin() + static_cast<std::ptrdiff_t>(cut),
                                    messages.end());
  store_path_.reset();
  OpenStore();
  Run(first, 3);
  OpenStore();  // The restart.
  EXPECT_EQ(DeltaPositions(Run(second, 3), "r-0"), std::vector<int64_t>{0});
  EXPECT_EQ(uninterrupted_positions, (std::vector<int64_t>{0, 0}));
  EXPECT_EQ(StateDigests(), uninterrupted);
  EXPECT_EQ(processor_->stats().restarted_histories, 8);
}

// An abandoned batch takes the watermark it moved with it: the redo starts from the committed
// one.
TEST_F(ProcessorTest, AnAbandonedBatchTakesItsWatermarkWithIt) {
  state_.user_ttl_ms = kHourMs;
  MakeProcessor();
  Run(Keyed({EventAt("ann", 0, kT0)}, "ann"), 10);
  const std::string pusher = EventAt("ben", 0, kT0 + 5 * kHourMs);
  InputRecord r{.topic = kTopic,
                .partition = 0,
                .offset = next_offset_++,
                .has_key = true,
                .key = "ben",
                .value = pusher,
                .timestamp_ms = now_ms_,
                .publish = true};
  auto batch = processor_->Process(std::span<const InputRecord>(&r, 1));
  ASSERT_TRUE(batch.ok());
  processor_->Abandon(std::move(batch).value());
  next_offset_ = r.offset;
  const std::string ann1 = EventAt("ann", 1, kT0 + 1000);
  Run(Keyed({ann1}, "ann"), 10);  // The partition's watermark is ann's T0 again.
  ExpectSameRows(Stored("ann"), Direct({EventAt("ann", 0, kT0), ann1}));
  EXPECT_EQ(processor_->stats().restarted_histories, 0);
  const auto watermarks = store_->LoadWatermarks();
  ASSERT_TRUE(watermarks.ok());
  EXPECT_EQ(watermarks->at({std::string(kTopic), 0}), kT0 + 1000);
}

}  // namespace
}  // namespace rotor::pipeline
