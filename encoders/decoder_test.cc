// Parity of the C++ decode step and candidate scoring with the PyTorch reference, through the
// golden files (testdata/golden, written by python -m sirenrope.golden): for every bundle and
// case, decoding the events one at a time, and in batches across users, reproduces the angles,
// rotated K, V, hidden states and logits of the full-sequence forward, and scoring the
// candidates reproduces the full forward with each candidate appended.

#include "encoders/decoder.h"

#include <algorithm>
#include <cmath>
#include <cstring>
#include <limits>
#include <string>
#include <vector>

#include <gtest/gtest.h>

#include "encoders/bundle.h"
#include "encoders/featurizer.h"
#include "encoders/internal/golden_testing.h"
#include "encoders/internal/safetensors.h"

namespace rotor::encoders {
namespace {

using ::rotor::encoders::internal::ParseSafetensors;
using ::rotor::encoders::internal::SafetensorsFile;
using ::rotor::encoders::internal::TensorView;
namespace gt = ::rotor::encoders::testing;

// DESIGN/issue tolerances: angles and K within 1e-5 absolute, V and hidden within 1e-5
// relative (to the row's largest magnitude, at least 1), candidate logits within 1e-4.
constexpr double kAbs = 1e-5;
constexpr double kLogits = 1e-4;

std::vector<float> Floats(const TensorView& t) {
  std::vector<float> out(t.data.size() / sizeof(float));
  std::memcpy(out.data(), t.data.data(), t.data.size());
  return out;
}

double MaxAbsDiff(std::span<const float> got, std::span<const float> want) {
  EXPECT_EQ(got.size(), want.size());
  double worst = 0;
  for (size_t i = 0; i < std::min(got.size(), want.size()); ++i) {
    worst = std::max(worst, std::abs(static_cast<double>(got[i]) - want[i]));
  }
  return worst;
}

double MaxRelDiff(std::span<const float> got, std::span<const float> want) {
  double scale = 1.0;
  for (float w : want) {
    scale = std::max(scale, static_cast<double>(std::abs(w)));
  }
  return MaxAbsDiff(got, want) / scale;
}

struct GoldenCase {
  std::string name;
  int64_t start_pos = 0;
  std::vector<EventInputs> events;
  std::vector<EventInputs> candidates;
  std::string expected_bytes;
  SafetensorsFile expected;

  std::vector<float> Row(const std::string& tensor, int64_t r) const {
    const TensorView* t = expected.Find(tensor);
    EXPECT_NE(t, nullptr) << tensor;
    const std::vector<float> all = Floats(*t);
    const int64_t width = t->shape.size() > 1 ? t->shape[1] : 1;
    return {all.begin() + r * width, all.begin() + (r + 1) * width};
  }
};

GoldenCase LoadCase(const std::string& name, const Featurizer& featurizer) {
  GoldenCase c;
  c.name = name;
  for (const auto& j : gt::ReadJsonLines(name + ".events.jsonl")) {
    auto ev = gt::ToEvent(j, featurizer.config(), true);
    EXPECT_TRUE(ev.ok()) << ev.status().ToString();
    auto in = featurizer.Featurize(*ev, true);
    EXPECT_TRUE(in.ok()) << in.status().ToString();
    c.events.push_back(*in);
  }
  for (const auto& j : gt::ReadJsonLines(name + ".candidates.jsonl")) {
    auto ev = gt::ToEvent(j, featurizer.config(), false);
    EXPECT_TRUE(ev.ok()) << ev.status().ToString();
    auto in = featurizer.Featurize(*ev, false);
    EXPECT_TRUE(in.ok()) << in.status().ToString();
    c.candidates.push_back(*in);
  }
  c.expected_bytes = gt::ReadGolden(name + ".expected.safetensors");
  auto parsed = ParseSafetensors(gt::AsBytes(c.expected_bytes));
  EXPECT_TRUE(parsed.ok()) << parsed.status().ToString();
  c.expected = std::move(*parsed);
  c.start_pos = std::stoll(c.expected.metadata.at("start_pos"));
  return c;
}

// Every output of one decoded event against row r of the golden case.
void ExpectRowMatches(const GoldenCase& c, const KvWindow& w, const DecodeResult& got, int64_t r) {
  const std::string at = c.name + " event " + std::to_string(r);
  EXPECT_LE(MaxAbsDiff(got.angles, c.Row("angles", r)), kAbs) << at;
  EXPECT_LE(MaxAbsDiff(got.act_angles, c.Row("act_angles", r)), kAbs) << at;
  EXPECT_LE(MaxRelDiff(got.hidden, c.Row("hidden", r)), kAbs) << at;
  EXPECT_LE(MaxAbsDiff(got.logits, c.Row("logits", r)), kLogits) << at;
  const int64_t slot = w.SlotOf(w.next_pos - 1);
  for (int64_t b = 0; b < w.n_blocks(); ++b) {
    const std::string kb = "k." + std::to_string(b);
    const std::string vb = "v." + std::to_string(b);
    EXPECT_LE(MaxAbsDiff(w.KRow(b, slot), c.Row(kb, r)), kAbs) << at << " " << kb;
    EXPECT_LE(MaxRelDiff(w.VRow(b, slot), c.Row(vb, r)), kAbs) << at << " " << vb;
  }
}

void ExpectCandidatesMatch(Decoder& decoder, const GoldenCase& c, const KvWindow& w) {
  const int64_t labels = decoder.config().n_labels();
  std::vector<float> logits(c.candidates.size() * static_cast<size_t>(labels));
  ASSERT_TRUE(decoder.ScoreCandidates(w, c.candidates, logits).ok());
  const std::vector<float> want = Floats(*c.expected.Find("cand.logits"));
  EXPECT_LE(MaxAbsDiff(logits, want), kLogits) << c.name << " candidates";
}

class DecoderGoldenTest : public ::testing::TestWithParam<std::string> {};

TEST_P(DecoderGoldenTest, DecodeOneAtATimeMatchesTheFullForward) {
  const std::string name = GetParam();
  auto bundle =
      Bundle::Load(gt::GoldenDir() + "/" + gt::GoldenBundleFile(gt::GoldenCaseBundle(name)));
  ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
  auto decoder = Decoder::Create(*bundle);
  ASSERT_TRUE(decoder.ok()) << decoder.status().ToString();
  const GoldenCase c = LoadCase(name, Featurizer(bundle->config()));
  KvWindow w = decoder->NewWindow(c.start_pos);
  for (size_t r = 0; r < c.events.size(); ++r) {
    DecodeResult got;
    ASSERT_TRUE(decoder->Decode(w, c.events[r], &got).ok());
    ExpectRowMatches(c, w, got, static_cast<int64_t>(r));
  }
  EXPECT_EQ(w.next_pos, c.start_pos + static_cast<int64_t>(c.events.size()));
  EXPECT_EQ(w.rows, std::min(bundle->config().window, static_cast<int64_t>(c.events.size())));
  // The window in position order equals the golden cache.
  const std::vector<int64_t> slots = w.OrderedSlots();
  const TensorView* pos = c.expected.Find("cache.pos");
  ASSERT_NE(pos, nullptr);
  std::vector<int64_t> want_pos(pos->data.size() / sizeof(int64_t));
  std::memcpy(want_pos.data(), pos->data.data(), pos->data.size());
  ASSERT_EQ(slots.size(), want_pos.size());
  for (size_t i = 0; i < slots.size(); ++i) {
    EXPECT_EQ(w.pos[static_cast<size_t>(slots[i])], want_pos[i]);
    for (int64_t b = 0; b < w.n_blocks(); ++b) {
      EXPECT_LE(MaxAbsDiff(w.KRow(b, slots[i]),
                           c.Row("cache.k." + std::to_string(b), static_cast<int64_t>(i))),
                kAbs);
    }
  }
  ExpectCandidatesMatch(*decoder, c, w);
}

std::string CaseTestName(const ::testing::TestParamInfo<std::string>& case_info) {
  std::string s = case_info.param;
  std::replace(s.begin(), s.end(), '.', '_');
  return s;
}

INSTANTIATE_TEST_SUITE_P(Golden, DecoderGoldenTest, ::testing::ValuesIn(gt::GoldenCaseNames()),
                         CaseTestName);

// All cases of one bundle decoded as users of one batch: step t decodes event t of every
// case that has one, so the batch holds windows of different lengths and positions.
TEST(DecoderBatchTest, BatchAcrossUsersMatchesTheFullForward) {
  for (const std::string& bundle_name : gt::GoldenBundleNames()) {
    auto bundle = Bundle::Load(gt::GoldenDir() + "/" + gt::GoldenBundleFile(bundle_name));
    ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
    auto decoder = Decoder::Create(*bundle);
    ASSERT_TRUE(decoder.ok());
    const Featurizer featurizer(bundle->config());
    std::vector<GoldenCase> cases;
    for (const std::string& name : gt::GoldenCaseNames()) {
      if (gt::GoldenCaseBundle(name) == bundle_name) {
        cases.push_back(LoadCase(name, featurizer));
      }
    }
    std::vector<KvWindow> windows;
    size_t longest = 0;
    for (const GoldenCase& c : cases) {
      windows.push_back(decoder->NewWindow(c.start_pos));
      longest = std::max(longest, c.events.size());
    }
    for (size_t t = 0; t < longest; ++t) {
      std::vector<KvWindow*> ws;
      std::vector<EventInputs> evs;
      std::vector<size_t> which;
      for (size_t i = 0; i < cases.size(); ++i) {
        if (t < cases[i].events.size()) {
          ws.push_back(&windows[i]);
          evs.push_back(cases[i].events[t]);
          which.push_back(i);
        }
      }
      std::vector<DecodeResult> results(evs.size());
      ASSERT_TRUE(decoder->DecodeBatch(ws, evs, results).ok());
      for (size_t u = 0; u < which.size(); ++u) {
        ExpectRowMatches(cases[which[u]], windows[which[u]], results[u], static_cast<int64_t>(t));
      }
    }
    for (size_t i = 0; i < cases.size(); ++i) {
      ExpectCandidatesMatch(*decoder, cases[i], windows[i]);
    }
  }
}

// state.kv_dtype bf16 / f16: every K and V row written is the float32 row rounded to nearest
// even to the dtype (the first event's rows, which attend to nothing rounded yet, equal the
// float32 decoder's rows rounded; every later row is exactly representable), and the outputs
// stay close to the float32 reference: within the dtype's rounding of the rows it attends to.
TEST(DecoderKvDtypeTest, RowsAreRoundedToTheKvDtypeAndOutputsStayClose) {
  struct Bound {
    KvDtype dtype;
    double rows;    // Relative (to the row's largest magnitude, at least 1).
    double logits;  // Absolute.
  };
  // About twice the worst measured over the golden cases (bf16: rows 3.6e-3, logits 1.3e-4;
  // f16: rows 4.8e-4, logits 1.3e-5): bf16 keeps 8 bits of mantissa (a row's rounding is within
  // 2^-9 of its magnitude), f16 11 (2^-12), and the differences pass through the blocks.
  for (const Bound bound : {Bound{KvDtype::kBF16, 8e-3, 3e-4}, Bound{KvDtype::kF16, 1e-3, 3e-5}}) {
    for (const std::string& name : gt::GoldenCaseNames()) {
      auto bundle =
          Bundle::Load(gt::GoldenDir() + "/" + gt::GoldenBundleFile(gt::GoldenCaseBundle(name)));
      ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
      auto exact = Decoder::Create(*bundle);
      auto rounded = Decoder::Create(*bundle, bound.dtype);
      ASSERT_TRUE(exact.ok() && rounded.ok());
      const GoldenCase c = LoadCase(name, Featurizer(bundle->config()));
      KvWindow we = exact->NewWindow(c.start_pos);
      KvWindow wr = rounded->NewWindow(c.start_pos);
      double worst_rows = 0;
      double worst_logits = 0;
      for (size_t r = 0; r < c.events.size(); ++r) {
        DecodeResult got;
        ASSERT_TRUE(exact->Decode(we, c.events[r]).ok());
        ASSERT_TRUE(rounded->Decode(wr, c.events[r], &got).ok());
        const int64_t slot = wr.SlotOf(wr.next_pos - 1);
        for (int64_t b = 0; b < wr.n_blocks(); ++b) {
          for (const bool is_k : {true, false}) {
            const std::span<const float> row = is_k ? wr.KRow(b, slot) : wr.VRow(b, slot);
            const std::span<const float> f32 = is_k ? we.KRow(b, slot) : we.VRow(b, slot);
            std::vector<float> want(f32.begin(), f32.end());
            RoundToKvDtype(bound.dtype, want);
            for (size_t j = 0; j < row.size(); ++j) {
              ASSERT_EQ(KvDtypeValue(bound.dtype, KvDtypeBits(bound.dtype, row[j])), row[j])
                  << name << " event " << r << ": not representable";
              if (r == 0) {
                ASSERT_EQ(row[j], want[j]) << name << ": the first row is not the f32 row rounded";
              }
            }
            worst_rows = std::max(worst_rows, MaxRelDiff(row, f32));
          }
        }
        worst_logits = std::max(worst_logits,
                                MaxAbsDiff(got.logits, c.Row("logits", static_cast<int64_t>(r))));
      }
      EXPECT_LE(worst_rows, bound.rows) << name;
      EXPECT_LE(worst_logits, bound.logits) << name;
    }
  }
}

// Streaming, restarts and replays group events into batches differently; the rows must not
// depend on the grouping. 9 copies of each golden case (27+ users) decoded in one batch per
// step against the same cases decoded one event at a time: equal bit for bit.
TEST(DecoderBatchTest, RowsDoNotDependOnWhichUsersShareTheBatch) {
  auto bundle = Bundle::Load(gt::GoldenDir() + "/" + gt::GoldenBundleFile("siren"));
  ASSERT_TRUE(bundle.ok()) << bundle.status().ToString();
  auto decoder = Decoder::Create(*bundle);
  ASSERT_TRUE(decoder.ok());
  const Featurizer featurizer(bundle->config());
  std::vector<GoldenCase> cases;
  for (int copy = 0; copy < 9; ++copy) {
    for (const std::string& name : gt::GoldenCaseNames()) {
      if (gt::GoldenCaseBundle(name) == "siren") {
        cases.push_back(LoadCase(name, featurizer));
      }
    }
  }
  std::vector<KvWindow> batched;
  std::vector<KvWindow> alone;
  size_t longest = 0;
  for (const GoldenCase& c : cases) {
    batched.push_back(decoder->NewWindow(c.start_pos));
    alone.push_back(decoder->NewWindow(c.start_pos));
    longest = std::max(longest, c.events.size());
  }
  for (size_t t = 0; t < longest; ++t) {
    std::vector<KvWindow*> ws;
    std::vector<EventInputs> evs;
    for (size_t i = 0; i < cases.size(); ++i) {
      if (t < cases[i].events.size()) {
        ws.push_back(&batched[i]);
        evs.push_back(cases[i].events[t]);
        ASSERT_TRUE(decoder->Decode(alone[i], cases[i].events[t]).ok());
      }
    }
    ASSERT_TRUE(decoder->DecodeBatch(ws, evs).ok());
  }
  for (size_t i = 0; i < cases.size(); ++i) {
    for (int64_t b = 0; b < batched[i].n_blocks(); ++b) {
      const auto& kb = batched[i].k[static_cast<size_t>(b)];
      const auto& ka = alone[i].k[static_cast<size_t>(b)];
      const auto& vb = batched[i].v[static_cast<size_t>(b)];
      const auto& va = alone[i].v[static_cast<size_t>(b)];
      ASSERT_TRUE(std::equal(kb.begin(), kb.end(), ka.begin())) << "case " << i << " block " << b;
      ASSERT_TRUE(std::equal(vb.begin(), vb.end(), va.begin())) << "case " << i << " block " << b;
    }
  }
}

TEST(DecoderTest, RefusesMismatchedInputs) {
  auto bundle = Bundle::Load(gt::GoldenDir() + "/" + gt::GoldenBundleFile("siren"));
  ASSERT_TRUE(bundle.ok());
  auto decoder = Decoder::Create(*bundle);
  ASSERT_TRUE(decoder.ok());
  const GoldenCase c = LoadCase("siren.short", Featurizer(bundle->config()));
  KvWindow w = decoder->NewWindow(0);
  EventInputs bad = c.events[0];
  bad.item_features.pop_back();
  EXPECT_EQ(decoder->Decode(w, bad).message(), "item.features: 7 values, the model needs 8");
  bad = c.events[0];
  bad.cat_rows[0] = 999;
  EXPECT_EQ(decoder->Decode(w, bad).message(), "attrs.topic: row 999 outside the table");
  bad = c.events[0];
  bad.item_features[3] = std::numeric_limits<float>::quiet_NaN();
  EXPECT_EQ(decoder->Decode(w, bad).message(), "event inputs hold a NaN or an infinity");
  bad = c.events[0];
  bad.actions[0] = std::numeric_limits<float>::infinity();
  EXPECT_FALSE(decoder->Decode(w, bad).ok());
  EXPECT_EQ(w.next_pos, 0);  // nothing reached the window
  EXPECT_EQ(w.rows, 0);
  // A featurised NaN is refused before it could be decoded at all.
  nlohmann::json raw = gt::ReadJsonLines("siren.short.events.jsonl")[0];
  raw["item"]["features"][2] = std::numeric_limits<double>::quiet_NaN();
  auto ev = gt::ToEvent(raw, bundle->config(), true);
  ASSERT_TRUE(ev.ok());
  EXPECT_EQ(Featurizer(bundle->config()).Featurize(*ev, true).status().message(),
            "item.features[2]: not finite");
  KvWindow* twice[2] = {&w, &w};
  EventInputs two[2] = {c.events[0], c.events[1]};
  EXPECT_FALSE(decoder->DecodeBatch(twice, two).ok());
  KvWindow wrong(2, 3, 4, 0);
  EXPECT_FALSE(decoder->Decode(wrong, c.events[0]).ok());
  std::vector<float> too_few(1);
  EXPECT_FALSE(decoder->ScoreCandidates(w, c.candidates, too_few).ok());
}

}  // namespace
}  // namespace rotor::encoders
