// Random-window batches. Draw i (i = cursor, cursor+1, ...) picks its window start from the
// Philox block (seed, stream, i): lanes 0 and 1 make a 64-bit uniform r, and the start is
// floor(r * M / 2^64) with M = N - T valid starts, i.e. uniform on [0, N - T - 1] (bias < M/2^64).
// With a window stride S > 0 the same draw picks a document index d uniform on [0, D - 1], with
// D = floor((N - T - 1) / S) + 1 whole windows starting at multiples of S, and the start is d * S.
#include "train/data/data_loader.h"

#include <algorithm>
#include <cstring>
#include <limits>

#include "core/error.h"
#include "train/data/batch_slice.h"
#include "core/philox.h"
#include "train/data/shards.h"

namespace sinklab::train {

namespace {

uint64_t window_start(uint64_t seed, uint64_t stream, uint64_t draw, uint64_t n_starts) {
  const PhiloxBlock blk = philox4x32_10(seed, stream, draw);
  const uint64_t r = (static_cast<uint64_t>(blk.v[1]) << 32) | blk.v[0];
  return static_cast<uint64_t>((static_cast<unsigned __int128>(r) * n_starts) >> 64);
}

}  // namespace

DataLoader::DataLoader(std::vector<int32_t> tokens, int64_t batch_size, int64_t seq_len,
                       uint64_t seed, uint64_t stream, int64_t window_stride)
    : tokens_(std::move(tokens)),
      batch_size_(batch_size),
      seq_len_(seq_len),
      seed_(seed),
      stream_(stream),
      window_stride_(window_stride) {
  SINKLAB_CHECK(batch_size_ > 0 && seq_len_ > 0, ValueError,
                "DataLoader: batch_size " << batch_size_ << " and seq_len " << seq_len_
                                          << " must be positive",
                "check train.batch_size and model.block_size");
  SINKLAB_CHECK(static_cast<int64_t>(tokens_.size()) >= seq_len_ + 1, ValueError,
                "DataLoader: " << tokens_.size() << " tokens, fewer than seq_len + 1 = "
                               << seq_len_ + 1 << " (one window of inputs and targets)",
                "use more data or a smaller model.block_size");
  SINKLAB_CHECK(window_stride_ == 0 || window_stride_ >= seq_len_ + 1, ValueError,
                "DataLoader: window_stride " << window_stride_
                    << " must be 0 (any offset) or at least seq_len + 1 = " << seq_len_ + 1
                    << " (one whole window per document)",
                "set data.window_stride to 0 or to the document length (model.block_size + 1 "
                "for scripts/make_bigram_backcopy.py data)");
}

uint64_t DataLoader::num_window_starts() const {
  const uint64_t n = tokens_.size(), t = static_cast<uint64_t>(seq_len_);
  if (window_stride_ == 0) return n - t;  // starts 0 .. N-T-1
  return (n - t - 1) / static_cast<uint64_t>(window_stride_) + 1;  // d*S + T + 1 <= N
}

namespace {
bool looks_like_shard(const std::string& path) {
  const std::string name = path.substr(path.find_last_of('/') + 1);
  if (name.size() < 12 || name.compare(name.size() - 4, 4, ".bin") != 0) return false;
  const std::string digits = name.substr(name.size() - 10, 6);
  return name[name.size() - 11] == '_' &&
         digits.find_first_not_of("0123456789") == std::string::npos;
}
}  // namespace

DataLoader DataLoader::from_files(const std::string& dir, const std::string& pattern,
                                  int64_t batch_size, int64_t seq_len, uint64_t seed,
                                  uint64_t stream, int64_t window_stride) {
  const std::vector<std::string> files = list_files(dir, pattern);
  SINKLAB_CHECK(!files.empty(), IOError,
                "no file in " << dir << " matches " << pattern << " (data.dir / data.*_pattern)",
                "run `sinklab prepare <config>` to write the token shards, or fix data.dir");
  std::vector<int32_t> tokens;
  for (const std::string& f : files) {
    // Files named like shards (train_000000.bin) must carry the llm.c header; any other .bin
    // (e.g. nanoGPT's train.bin) may be a raw uint16 stream.
    std::vector<int32_t> part = read_shard(f, !looks_like_shard(f));
    if (tokens.empty())
      tokens = std::move(part);
    else
      tokens.insert(tokens.end(), part.begin(), part.end());
  }
  SINKLAB_CHECK(static_cast<int64_t>(tokens.size()) >= seq_len + 1, IOError,
                dir << "/" << pattern << ": " << tokens.size() << " tokens in " << files.size()
                    << " file(s), fewer than block_size + 1 = " << seq_len + 1
                    << " needed for one window",
                "use a smaller model.block_size or more input text; for the val split, the "
                "log of `sinklab prepare` says what each input held out (prepare.val_fraction)");
  return DataLoader(std::move(tokens), batch_size, seq_len, seed, stream, window_stride);
}

uint64_t hash_tokens(uint64_t h, const int32_t* tokens, int64_t n) {
  for (int64_t i = 0; i < n; ++i) {
    h ^= static_cast<uint32_t>(tokens[i]);
    h *= 1099511628211ull;
  }
  return h;
}

uint64_t DataLoader::hash_windows(uint64_t h, uint64_t first, uint64_t count) const {
  const uint64_t n_starts = num_window_starts();
  const uint64_t stride = window_stride_ > 0 ? static_cast<uint64_t>(window_stride_) : 1;
  for (uint64_t w = first; w < first + count; ++w)
    h = hash_tokens(h, tokens_.data() + stride * window_start(seed_, stream_, w, n_starts),
                    seq_len_);
  return h;
}

Batch DataLoader::next() { return next_slice(0, 1); }

Batch DataLoader::next_slice(int rank, int world_size) {
  const int64_t B = batch_size_, T = seq_len_;
  const uint64_t n_starts = num_window_starts();
  const uint64_t stride = window_stride_ > 0 ? static_cast<uint64_t>(window_stride_) : 1;
  const BatchSlice slice = batch_slice(cursor_, rank, world_size, B);
  Batch batch;
  batch.inputs = Tensor::empty({B, T}, DType::I32);   // (B, T)
  batch.targets = Tensor::empty({B, T}, DType::I32);  // (B, T)
  int32_t* x = batch.inputs.data<int32_t>();
  int32_t* y = batch.targets.data<int32_t>();
  for (int64_t b = 0; b < B; ++b) {
    const uint64_t s =
        stride * window_start(seed_, stream_, slice.first + static_cast<uint64_t>(b), n_starts);
    const int32_t* src = tokens_.data() + s;
    std::memcpy(x + b * T, src, static_cast<size_t>(T) * sizeof(int32_t));
    std::memcpy(y + b * T, src + 1, static_cast<size_t>(T) * sizeof(int32_t));
  }
  cursor_ += static_cast<uint64_t>(B) * static_cast<uint64_t>(world_size);
  return batch;
}

int32_t DataLoader::max_token() const {
  return tokens_.empty() ? -1 : *std::max_element(tokens_.begin(), tokens_.end());
}

}  // namespace sinklab::train
