// Decoder: the incremental decode step and candidate scoring of the SIREN-RoPE recommender
// (DESIGN sections 1-2), matching python/sirenrope/model.py's decode_batch and
// score_candidates.

#ifndef ROTOR_ENCODERS_DECODER_H_
#define ROTOR_ENCODERS_DECODER_H_

#include <cstdint>
#include <memory>
#include <span>
#include <vector>

#include "common/status.h"
#include "encoders/bundle.h"
#include "encoders/featurizer.h"
#include "encoders/kv_window.h"

namespace rotor::encoders {

// What one decoded event produced besides the rows appended to its window.
struct DecodeResult {
  std::vector<float> angles;      // [n_pairs] block angles
  std::vector<float> act_angles;  // [n_pairs] action-attention angles
  std::vector<float> hidden;      // [d_model] final LayerNorm output
  std::vector<float> logits;      // [n_labels]
};

// Runs the model of one bundle on events and candidates.
//
// Decode appends one event to one user's window: it computes the event's angles, the rotated
// K and the V row of every block (attending to the rows already cached, never to itself),
// writes them at the window's next slot and advances next_pos. DecodeBatch does the same for
// many users at once, so every projection is one matrix-matrix product. ScoreCandidates runs
// N candidate items at position next_pos against one window, reading it only.
//
// Determinism: a user's rows do not depend on which other users share a DecodeBatch call (the
// projections use a row-invariant matrix product), so Decode one event at a time and
// DecodeBatch over any grouping give bit-identical windows.
//
// Lifecycle: Create from a Bundle that outlives the Decoder (weights are not copied).
// Concurrency: not thread-safe (it owns scratch buffers reused across calls); use one
// Decoder per thread, all sharing one Bundle.
// Limitations: float32 throughout except the float64 ordinal angle (and the K/V rows written,
// rounded to the Decoder's KvDtype); reverse_order bundles
// never get here (the loader refuses them).
class Decoder {
 public:
  // Rows written are rounded to `kv_dtype` (KvDtype).
  static Result<Decoder> Create(const Bundle& bundle, KvDtype kv_dtype = KvDtype::kF32);

  Decoder(Decoder&&) noexcept;
  Decoder& operator=(Decoder&&) noexcept;
  Decoder(const Decoder&) = delete;
  Decoder& operator=(const Decoder&) = delete;
  ~Decoder();

  const ModelConfig& config() const;

  // An empty window whose first event will take position `start_pos`.
  KvWindow NewWindow(int64_t start_pos = 0) const;

  // Appends `event` (featurised with actions) to `window`. `result` may be null.
  Status Decode(KvWindow& window, const EventInputs& event, DecodeResult* result = nullptr);

  // events[i] is appended to *windows[i]; the windows must be distinct. `results` is empty
  // or has one entry per event.
  Status DecodeBatch(std::span<KvWindow* const> windows, std::span<const EventInputs> events,
                     std::span<DecodeResult> results = {});

  // logits [n, n_labels] (row-major) for n candidates (featurised without actions, with the
  // request time as ts_ms) at position window.next_pos.
  Status ScoreCandidates(const KvWindow& window, std::span<const EventInputs> candidates,
                         std::span<float> logits);

 private:
  struct Impl;
  explicit Decoder(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rotor::encoders

#endif  // ROTOR_ENCODERS_DECODER_H_
