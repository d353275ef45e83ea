// Batches of random contiguous windows from a token stream (no BOS, as in the paper).
//
// Window start positions come from Philox keyed by (seed, stream, draw index), so the loader's
// whole state is one counter: `cursor()` after N batches, and set_cursor() resumes exactly.
// Two loaders with the same seed and data give identical batches in identical order.
//
// window_stride (data.window_stride): 0 (default) = a window may start at any offset, the paper's
// setting. S > 0 = windows start only at multiples of S, i.e. at the starts of fixed-length
// documents of S >= T + 1 tokens (synthetic data with a BOS token at position 0, such as
// scripts/make_bigram_backcopy.py). The cursor still counts windows either way.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

#include "core/tensor.h"

namespace sinklab::train {

struct Batch {
  Tensor inputs;   // (B, T) int32
  Tensor targets;  // (B, T) int32, inputs shifted by one
};

// The running hash of a step's token ids (StepRecord::batch_hash): h folded over n tokens
// (FNV-1a's multiply over each id). Start from kTokenHashStart.
constexpr uint64_t kTokenHashStart = 1469598103934665603ull;
uint64_t hash_tokens(uint64_t h, const int32_t* tokens, int64_t n);

class DataLoader {
 public:
  // tokens: the concatenation of all shards of one split.
  // window_stride: 0 = any offset; S > 0 = starts at multiples of S (S >= seq_len + 1).
  DataLoader(std::vector<int32_t> tokens, int64_t batch_size, int64_t seq_len, uint64_t seed,
             uint64_t stream, int64_t window_stride = 0);
  // Loads every file of one split (shards.h list_files + read_shard). Throws IOError naming the
  // folder and pattern when no file matches, and when the split has fewer than T+1 tokens.
  static DataLoader from_files(const std::string& dir, const std::string& pattern,
                               int64_t batch_size, int64_t seq_len, uint64_t seed, uint64_t stream,
                               int64_t window_stride = 0);

  Batch next();                      // draws B windows, advances the cursor by B
  // Data parallel: rank `rank` of `world_size` draws its own B windows of the round's
  // world_size * B (train/data/batch_slice.h) and every rank advances the cursor by
  // world_size * B. The rounds of W ranks are the batches of one rank, in the same order.
  Batch next_slice(int rank, int world_size);
  // h folded (hash_tokens) over the inputs of windows [first, first + count) of the stream, in
  // order: the hash of the batches that hold those windows, whichever ranks drew them. A
  // data-parallel step's round of W ranks is [cursor before the draw, + W B), so every world
  // size and placement gives one global batch the same hash.
  uint64_t hash_windows(uint64_t h, uint64_t first, uint64_t count) const;
  uint64_t cursor() const { return cursor_; }
  void set_cursor(uint64_t c) { cursor_ = c; }
  int64_t num_tokens() const { return static_cast<int64_t>(tokens_.size()); }
  const std::vector<int32_t>& tokens() const { return tokens_; }
  int32_t max_token() const;
  int64_t window_stride() const { return window_stride_; }
  // Distinct window starts: N - T for stride 0, whole documents floor((N - T - 1) / S) + 1 else.
  uint64_t num_window_starts() const;

 private:
  std::vector<int32_t> tokens_;
  int64_t batch_size_, seq_len_;
  uint64_t seed_, stream_;
  int64_t window_stride_ = 0;
  uint64_t cursor_ = 0;
};

}  // namespace sinklab::train
