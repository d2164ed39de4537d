// Test-only helpers: the golden files that python/sirenrope/golden.py writes (testdata/golden),
// read from the directory CMake passes as ROTOR_GOLDEN_DIR.

#ifndef ROTOR_ENCODERS_INTERNAL_GOLDEN_TESTING_H_
#define ROTOR_ENCODERS_INTERNAL_GOLDEN_TESTING_H_

#include <cstddef>
#include <cstdint>
#include <fstream>
#include <iterator>
#include <limits>
#include <span>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <nlohmann/json.hpp>

#include "common/status.h"
#include "encoders/featurizer.h"
#include "encoders/model_config.h"

namespace rotor::encoders::testing {

inline std::string GoldenDir() {
  return ROTOR_GOLDEN_DIR;
}

// The whole file, or an exception (tests only).
inline std::string ReadFileOrThrow(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) {
    throw std::runtime_error("cannot open " + path);
  }
  return {std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>()};
}

inline std::string ReadGolden(const std::string& name) {
  return ReadFileOrThrow(GoldenDir() + "/" + name);
}

inline std::span<const std::byte> AsBytes(std::string_view s) {
  return std::as_bytes(std::span<const char>(s.data(), s.size()));
}

// manifest.json: {"bundles": {name: {"file", "variant"}}, "cases": [{"name", "bundle", ...}]}.
inline nlohmann::json GoldenManifest() {
  return nlohmann::json::parse(ReadGolden("manifest.json"));
}

// Names of the bundles in the manifest ("siren", "time_linear", ...).
inline std::vector<std::string> GoldenBundleNames() {
  const nlohmann::json manifest = GoldenManifest();
  std::vector<std::string> names;
  for (const auto& [name, info] : manifest["bundles"].items()) {
    names.push_back(name);
  }
  return names;
}

// File name of a bundle ("siren.bundle.safetensors").
inline std::string GoldenBundleFile(const std::string& bundle) {
  return GoldenManifest()["bundles"][bundle]["file"].get<std::string>();
}

// Case names ("siren.short", ...), each with <case>.events.jsonl, .candidates.jsonl and
// .expected.safetensors.
inline std::vector<std::string> GoldenCaseNames() {
  const nlohmann::json manifest = GoldenManifest();
  std::vector<std::string> names;
  for (const auto& c : manifest["cases"]) {
    names.push_back(c["name"].get<std::string>());
  }
  return names;
}

inline std::string GoldenCaseBundle(const std::string& case_name) {
  const nlohmann::json manifest = GoldenManifest();
  for (const auto& c : manifest["cases"]) {
    if (c["name"] == case_name) {
      return c["bundle"].get<std::string>();
    }
  }
  throw std::runtime_error("no golden case " + case_name);
}

// The lines of a JSONL file, each parsed.
inline std::vector<nlohmann::json> ReadJsonLines(const std::string& name) {
  std::vector<nlohmann::json> rows;
  std::istringstream in(ReadGolden(name));
  for (std::string line; std::getline(in, line);) {
    if (!line.empty()) {
      rows.push_back(nlohmann::json::parse(line));
    }
  }
  return rows;
}

// The DESIGN section 4 JSON of one event as the Event struct's contract describes it: what
// has the wrong type is absent, integers beyond int64 saturate (Featurize calls them out of
// range), and non-numbers where numbers belong are the parser's own error (returned here).
inline Result<Event> ToEvent(const nlohmann::json& j, const ModelConfig& config,
                             bool need_actions) {
  Event ev;
  if (const auto t = j.find("ts_ms"); t != j.end() && t->is_number_integer()) {
    ev.has_ts_ms = true;
    if (t->is_number_unsigned() &&
        t->get<uint64_t>() > static_cast<uint64_t>(std::numeric_limits<int64_t>::max())) {
      ev.ts_ms = std::numeric_limits<int64_t>::max();
    } else {
      ev.ts_ms = t->get<int64_t>();
    }
  }
  if (const auto item = j.find("item"); item != j.end() && item->is_object()) {
    ev.has_item = true;
    if (const auto id = item->find("id"); id != item->end() && id->is_string()) {
      ev.has_item_id = true;
      ev.item_id = id->get<std::string>();
    }
    if (const auto f = item->find("features"); f != item->end() && f->is_array()) {
      ev.has_item_features = true;
      for (std::size_t k = 0; k < f->size(); ++k) {
        if (!(*f)[k].is_number()) {
          return Status::InvalidArgument("item.features[{}]: expected a number", k);
        }
        ev.item_features.push_back((*f)[k].get<double>());
      }
    }
  }
  if (const auto a = j.find("action"); a != j.end()) {
    ev.action_is_object = a->is_object();
    if (a->is_object()) {
      for (const auto& [name, value] : a->items()) {
        if (value.is_number()) {
          ev.actions.emplace_back(name, value.get<double>());
          continue;
        }
        for (const ActionSpec& spec : config.schema.actions) {
          if (need_actions && spec.name == name) {
            return Status::InvalidArgument("action.{}: expected a number", name);
          }
        }
      }
    }
  }
  if (const auto attrs = j.find("attrs"); attrs != j.end()) {
    ev.attrs_is_object = attrs->is_object();
    if (attrs->is_object()) {
      for (const auto& [name, value] : attrs->items()) {
        if (value.is_string()) {
          ev.attrs.emplace_back(name, value.get<std::string>());
        }
      }
    }
  }
  return ev;
}

}  // namespace rotor::encoders::testing

#endif  // ROTOR_ENCODERS_INTERNAL_GOLDEN_TESTING_H_
