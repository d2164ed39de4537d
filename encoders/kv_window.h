// KvWindow: one user's ready-to-rank state, the rotated K and the V rows of the last `window`
// events for every attention block (DESIGN section 2).

#ifndef ROTOR_ENCODERS_KV_WINDOW_H_
#define ROTOR_ENCODERS_KV_WINDOW_H_

#include <cstdint>
#include <span>
#include <string_view>
#include <vector>

#include "encoders/tensor.h"

namespace rotor::encoders {

// The precision a window's rows are kept in (state.kv_dtype): every K and V row is computed in
// float32, then rounded to nearest even to this dtype as the decoder writes it (held in float32
// memory, exactly representable in the dtype, and stored in its 16 bits), so whatever attends
// to a row, now or after a restart or a replay, sees the same rounded values. sirenrope's
// GenerativeRecommender.kv_dtype is the reference.
enum class KvDtype : unsigned char { kF32, kBF16, kF16 };

// `row` rounded in place to nearest even to `dtype` and kept in float32 (unchanged for kF32;
// NaN stays NaN). Defined with the wire's conversions (ready_tensors.cc).
void RoundToKvDtype(KvDtype dtype, std::span<float> row);
// A value of a 16-bit dtype (kBF16, kF16) as its bits, rounded to nearest even; and back.
uint16_t KvDtypeBits(KvDtype dtype, float x);
float KvDtypeValue(KvDtype dtype, uint16_t bits);
// "f32", "bf16" or "f16" (state.kv_dtype's spellings).
std::string_view KvDtypeName(KvDtype dtype);

// The cached window of one user: for each of the n_blocks attention blocks (the L layers and
// the action attention), `capacity` rows of d_model floats for K and for V.
//
// Rows live in a ring: the event at position p occupies slot (p - first_pos) mod capacity,
// so appending never moves memory. Attention is a sum over the set of visible rows, so the
// ring order does not change results (beyond float summation order); `Ordered` gives the
// rows oldest first for storage and output.
//
// Memory: the slots in use are [0, min(events appended, capacity)), filled in order until the
// ring wraps, so a window may hold fewer slots than `capacity` (`slots()`) and grow as events
// arrive (EnsureSlots, by doubling): a user with a short history costs its rows, not a full
// window (the daemon's hot-window cache then holds many more of them, and a new user's
// window is not a full zeroed allocation). The 4-argument constructor makes every slot.
//
// Lifecycle: made by Decoder::NewWindow (or restored by storage with the same shape);
// Decoder::Decode appends in place.
// Concurrency: a plain value; one writer at a time.
// Limitations: capacity is the model's window, fixed at creation.
struct KvWindow {
  int64_t capacity = 0;   // The model's window W.
  int64_t d_model = 0;    // Floats per row.
  int64_t first_pos = 0;  // Position of the first event this window ever held (ring origin).
  int64_t next_pos = 0;   // Position the next event will take.
  int64_t rows = 0;       // Valid rows: min(events appended, capacity).
  int64_t last_ts_ms = 0;
  std::vector<AlignedFloats> k;  // n_blocks x [capacity, d_model]
  std::vector<AlignedFloats> v;  // n_blocks x [capacity, d_model]
  std::vector<int64_t> pos;      // [capacity] position held by each slot

  KvWindow() = default;
  KvWindow(int64_t n_blocks, int64_t window, int64_t d, int64_t start_pos)
      : KvWindow(n_blocks, window, d, start_pos, window) {}
  // With `slots` of the capacity made (0..window); EnsureSlots makes more.
  KvWindow(int64_t n_blocks, int64_t window, int64_t d, int64_t start_pos, int64_t slots)
      : capacity(window), d_model(d), first_pos(start_pos), next_pos(start_pos) {
    // Each block built in place: assign(n, value) would zero one block and copy it n times,
    // a third of the cost of a new user's window in the daemon's profile.
    const auto blocks = static_cast<size_t>(n_blocks);
    const auto floats = static_cast<size_t>(slots * d);
    k.reserve(blocks);
    v.reserve(blocks);
    for (size_t b = 0; b < blocks; ++b) {
      k.emplace_back(floats);
      v.emplace_back(floats);
    }
    pos.assign(static_cast<size_t>(window), 0);
  }

  int64_t n_blocks() const { return static_cast<int64_t>(k.size()); }
  // Slots made (each block holds slots() * d_model floats of K and of V).
  int64_t slots() const {
    return k.empty() || d_model == 0 ? 0 : static_cast<int64_t>(k[0].size()) / d_model;
  }
  // The slots in use: min(events appended, capacity).
  int64_t used_slots() const {
    return next_pos - first_pos < capacity ? next_pos - first_pos : capacity;
  }
  // Makes at least `n` slots (n <= capacity), doubling what is there (existing rows kept).
  void EnsureSlots(int64_t n) {
    const int64_t have = slots();
    if (n <= have) {
      return;
    }
    int64_t want = have < 4 ? 4 : 2 * have;
    want = want < n ? n : want;
    want = want > capacity ? capacity : want;
    const auto floats = static_cast<size_t>(want * d_model);
    for (auto& block : k) {
      block.resize(floats);
    }
    for (auto& block : v) {
      block.resize(floats);
    }
  }
  // Slot of the event at position p (p >= first_pos).
  int64_t SlotOf(int64_t p) const { return (p - first_pos) % capacity; }
  // The slot the next event will write.
  int64_t NextSlot() const { return SlotOf(next_pos); }
  std::span<const float> KRow(int64_t block, int64_t slot) const {
    return {k[static_cast<size_t>(block)].data() + slot * d_model, static_cast<size_t>(d_model)};
  }
  std::span<const float> VRow(int64_t block, int64_t slot) const {
    return {v[static_cast<size_t>(block)].data() + slot * d_model, static_cast<size_t>(d_model)};
  }
  // Slots in position order, oldest first.
  std::vector<int64_t> OrderedSlots() const {
    std::vector<int64_t> out;
    out.reserve(static_cast<size_t>(rows));
    for (int64_t p = next_pos - rows; p < next_pos; ++p) {
      out.push_back(SlotOf(p));
    }
    return out;
  }
};

}  // namespace rotor::encoders

#endif  // ROTOR_ENCODERS_KV_WINDOW_H_
