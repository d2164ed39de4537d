#include "app/print.h"

#include <algorithm>
#include <cmath>
#include <optional>
#include <span>
#include <utility>

#include <fmt/core.h>
#include <nlohmann/json.hpp>

#include "encoders/featurizer.h"

namespace rotor::cli {
namespace {

// The length of the UTF-8 sequence starting at `bytes[i]`, or 0 when it is not well-formed.
std::size_t Utf8SequenceLength(std::string_view bytes, std::size_t i) {
  const auto at = [&](std::size_t k) {
    return static_cast<unsigned char>(bytes[k]);
  };
  const unsigned char b0 = at(i);
  if (b0 < 0x80) {
    return 1;
  }
  std::size_t n = 0;
  unsigned char lo = 0x80;  // Range of the second byte (RFC 3629's table).
  unsigned char hi = 0xBF;
  if (b0 >= 0xC2 && b0 <= 0xDF) {
    n = 2;
  } else if (b0 >= 0xE0 && b0 <= 0xEF) {
    n = 3;
    lo = b0 == 0xE0 ? 0xA0 : 0x80;  // No overlong forms.
    hi = b0 == 0xED ? 0x9F : 0xBF;  // No surrogates.
  } else if (b0 >= 0xF0 && b0 <= 0xF4) {
    n = 4;
    lo = b0 == 0xF0 ? 0x90 : 0x80;  // No overlong forms.
    hi = b0 == 0xF4 ? 0x8F : 0xBF;  // Nothing above U+10FFFF.
  } else {
    return 0;
  }
  if (i + n > bytes.size() || at(i + 1) < lo || at(i + 1) > hi) {
    return 0;
  }
  for (std::size_t k = 2; k < n; ++k) {
    if (at(i + k) < 0x80 || at(i + k) > 0xBF) {
      return 0;
    }
  }
  return n;
}

double Norm(std::span<const float> row) {
  double sum = 0;
  for (const float x : row) {
    sum += static_cast<double>(x) * x;
  }
  return std::sqrt(sum);
}

}  // namespace

bool IsUtf8(std::string_view bytes) {
  for (std::size_t i = 0; i < bytes.size();) {
    const std::size_t n = Utf8SequenceLength(bytes, i);
    if (n == 0) {
      return false;
    }
    i += n;
  }
  return true;
}

std::string Base64(std::string_view bytes) {
  static constexpr std::string_view kDigits =
      "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  std::string out;
  out.reserve((bytes.size() + 2) / 3 * 4);
  for (std::size_t i = 0; i < bytes.size(); i += 3) {
    uint32_t n = static_cast<uint32_t>(static_cast<unsigned char>(bytes[i])) << 16;
    if (i + 1 < bytes.size()) {
      n |= static_cast<uint32_t>(static_cast<unsigned char>(bytes[i + 1])) << 8;
    }
    if (i + 2 < bytes.size()) {
      n |= static_cast<unsigned char>(bytes[i + 2]);
    }
    out.push_back(kDigits[(n >> 18) & 63]);
    out.push_back(kDigits[(n >> 12) & 63]);
    out.push_back(i + 1 < bytes.size() ? kDigits[(n >> 6) & 63] : '=');
    out.push_back(i + 2 < bytes.size() ? kDigits[n & 63] : '=');
  }
  return out;
}

std::string ConsumeJsonLine(const pipeline::TopicMessage& message) {
  nlohmann::ordered_json line = {{"partition", message.partition},
                                 {"offset", message.offset},
                                 {"timestamp_ms", message.timestamp_ms}};
  if (!message.key.has_value()) {
    line["key"] = nullptr;
  } else if (IsUtf8(*message.key)) {
    line["key"] = *message.key;
  } else {
    line["key_b64"] = Base64(*message.key);
  }
  nlohmann::ordered_json headers = nlohmann::ordered_json::object();
  nlohmann::ordered_json headers_b64 = nlohmann::ordered_json::object();
  for (const auto& [name, value] : message.headers) {
    // A repeated name keeps its last value, in either object.
    headers.erase(name);
    headers_b64.erase(name);
    if (IsUtf8(value)) {
      headers[name] = value;
    } else {
      headers_b64[name] = Base64(value);
    }
  }
  line["headers"] = std::move(headers);
  if (!headers_b64.empty()) {
    line["headers_b64"] = std::move(headers_b64);
  }
  line["value_b64"] = Base64(message.value);
  // Every string but a header name was checked above; `replace` makes a bad name print with
  // U+FFFD instead of throwing (nlohmann's default), so this never fails.
  return line.dump(-1, ' ', false, nlohmann::ordered_json::error_handler_t::replace);
}

uint64_t WindowDigest(const encoders::KvWindow& window) {
  const encoders::KvWindow& w = window;
  std::string bytes;
  for (int64_t p = w.next_pos - w.rows; p < w.next_pos; ++p) {
    for (int64_t b = 0; b < w.n_blocks(); ++b) {
      const auto k = w.KRow(b, w.SlotOf(p));
      const auto v = w.VRow(b, w.SlotOf(p));
      bytes.append(reinterpret_cast<const char*>(k.data()), k.size_bytes());
      bytes.append(reinterpret_cast<const char*>(v.data()), v.size_bytes());
    }
  }
  return encoders::Fnv1a64(bytes);
}

UserSummary SummarizeUser(std::string_view user, const storage::CommittedUser& committed,
                          std::string_view input_topic, int32_t partition) {
  UserSummary s;
  s.user = std::string(user);
  s.model_id = committed.model_id;
  s.input_topic = std::string(input_topic);
  s.partition = partition;
  s.next_offset = committed.next_offset;
  if (!committed.state) {
    return s;
  }
  const encoders::KvWindow& w = committed.state->window;
  s.next_pos = w.next_pos;
  s.rows = w.rows;
  s.window = w.capacity;
  s.last_ts_ms = w.last_ts_ms;
  s.recent_event_ids = static_cast<int64_t>(committed.state->recent_event_ids.size());
  if (w.rows > 0) {
    const int64_t newest = w.SlotOf(w.next_pos - 1);
    for (int64_t b = 0; b < w.n_blocks(); ++b) {
      const auto k = w.KRow(b, newest);
      const auto v = w.VRow(b, newest);
      s.newest_k.emplace_back(k.begin(), k.end());
      s.newest_v.emplace_back(v.begin(), v.end());
    }
  }
  return s;
}

std::string FormatUserSummary(const UserSummary& s) {
  std::string out = fmt::format(
      "user '{}': model {}, next position {}, {} rows cached (window {}), last event at ts_ms {}",
      s.user, s.model_id.substr(0, 12), s.next_pos, s.rows, s.window, s.last_ts_ms);
  if (s.recent_event_ids) {
    out += fmt::format(", {} recent event ids remembered", *s.recent_event_ids);
  }
  out += "\n";
  if (s.partition < 0) {
    out += fmt::format("  covers {}: partition unknown\n", s.input_topic);
  } else if (s.next_offset) {
    out += fmt::format("  covers {}/{} before offset {}\n", s.input_topic, s.partition,
                       *s.next_offset);
  } else {
    out += fmt::format("  covers {}/{}: no offset recorded\n", s.input_topic, s.partition);
  }
  for (std::size_t b = 0; b < s.newest_k.size() && b < s.newest_v.size(); ++b) {
    const std::vector<float>& k = s.newest_k[b];
    out += fmt::format("  block {} (position {}): |K| = {:.4f}, |V| = {:.4f}", b, s.next_pos - 1,
                       Norm(k), Norm(s.newest_v[b]));
    if (k.size() >= 4) {
      out += fmt::format(", K[0:4] = [{:.4f}, {:.4f}, {:.4f}, {:.4f}]", k[0], k[1], k[2], k[3]);
    }
    out += "\n";
  }
  return out;
}

std::string FormatReplayProgress(const pipeline::ReplayProgress& progress, bool bar) {
  const double fraction =
      progress.records_total > 0
          ? static_cast<double>(progress.records_done) / static_cast<double>(progress.records_total)
          : 1.0;
  const double rate =
      progress.seconds > 0 ? static_cast<double>(progress.events) / progress.seconds : 0.0;
  const double records_rate =
      progress.seconds > 0 ? static_cast<double>(progress.records_done) / progress.seconds : 0.0;
  std::optional<int64_t> eta;
  if (progress.finished || progress.records_done >= progress.records_total) {
    eta = 0;
  } else if (records_rate > 0) {
    eta = std::llround(static_cast<double>(progress.records_total - progress.records_done) /
                       records_rate);
  }
  if (!bar) {
    return fmt::format(
        "replay: {:.1f}% ({} of {} records), {:.0f} events/s, ETA {}, {} of {} partitions done",
        100.0 * fraction, progress.records_done, progress.records_total, rate,
        eta ? fmt::format("{} s", *eta) : "unknown", progress.partitions_done, progress.partitions);
  }
  constexpr int kWidth = 20;
  const int filled = std::clamp(static_cast<int>(fraction * kWidth), 0, kWidth);
  return fmt::format("[{}{}] {:5.1f}%  {}/{} records  {:.1f}k events/s  ETA {}  {}/{} partitions",
                     std::string(static_cast<std::size_t>(filled), '#'),
                     std::string(static_cast<std::size_t>(kWidth - filled), '.'), 100.0 * fraction,
                     progress.records_done, progress.records_total, rate / 1000.0,
                     eta ? fmt::format("{}:{:02}", *eta / 60, *eta % 60) : "?:??",
                     progress.partitions_done, progress.partitions);
}

}  // namespace rotor::cli
