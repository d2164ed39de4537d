// JsonWriter: the API's JSON responses, written straight into a string (no DOM): strings are
// escaped as RFC 8259 requires, bytes that are not UTF-8 become U+FFFD (details may quote
// client input), floats are written in their shortest round-trip form and non-finite numbers
// as null.

#ifndef ROTOR_API_INTERNAL_JSON_WRITER_H_
#define ROTOR_API_INTERNAL_JSON_WRITER_H_

#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>
#include <vector>

namespace rotor::api::internal {

// Appends `text` to `out` as a JSON string literal (quotes included).
void AppendJsonString(std::string& out, std::string_view text);

// Lifecycle: one document per writer; Take() hands it over. Concurrency: a plain value.
// Limitations: the caller nests Begin/End correctly (checked only by assert) and writes a Key
// before each member of an object.
class JsonWriter {
 public:
  JsonWriter& BeginObject();
  JsonWriter& EndObject();
  JsonWriter& BeginArray();
  JsonWriter& EndArray();
  JsonWriter& Key(std::string_view key);
  JsonWriter& String(std::string_view value);
  JsonWriter& Int(int64_t value);
  JsonWriter& Float(float value);  // Shortest form that reads back as the same float.
  JsonWriter& Bool(bool value);
  JsonWriter& Null();
  // A value already written as JSON (another writer's document).
  JsonWriter& Raw(std::string_view json);

  // Makes room for `bytes` more bytes of output (a writer that knows roughly how long its
  // document is grows its string once instead of a dozen times).
  void Reserve(std::size_t bytes) { out_.reserve(out_.size() + bytes); }

  std::string Take() { return std::move(out_); }

 private:
  void BeforeValue();

  std::string out_;
  std::vector<bool> first_;  // Per open container: no member written yet.
  bool after_key_ = false;
};

}  // namespace rotor::api::internal

#endif  // ROTOR_API_INTERNAL_JSON_WRITER_H_
