// Byte tokenizer and byte-level BPE: training, encoding, decoding, JSON files.
//
// Training works on unique pre-split chunks ("words") with their corpus counts, never on the raw
// text: pair counts are kept in a hash map and updated incrementally after each merge (only the
// words that contain the merged pair are touched), and the best pair comes from a max-heap with
// lazy deletion. Ties go to the smaller (left, right) id pair, so the merges depend only on the
// chunk counts: the same corpus always gives the same tokenizer.
#include "train/data/tokenizer.h"

#include <fcntl.h>
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <limits>
#include <mutex>
#include <queue>
#include <sstream>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "train/io/atomic_file.h"

namespace sinklab::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kFormat = "sinklab-tokenizer";
constexpr int64_t kFormatVersion = 1;
// Chunks longer than this are cut into pieces (long runs of one class: random bytes, rulers of
// '=' or indentation). Keeps encode() quadratic only in a small constant.
constexpr size_t kMaxChunk = 128;

// ---------------------------------------------------------------------------------------------
// Pre-splitting. Classes: whitespace, letters (ASCII letters and every byte >= 0x80, so UTF-8
// words stay whole), digits, other (punctuation, control bytes). Chunks:
//   ' '? letters+ | digits+ | ' '? other+ | whitespace+
// A whitespace run followed by a letter or other byte leaves its last ' ' to that chunk (GPT-2's
// `\s+(?!\S)`), so " the" is one chunk whatever precedes it.
enum class ByteClass : uint8_t { Space, Letter, Digit, Other };

constexpr ByteClass byte_class(unsigned char c) {
  if (c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' || c == '\f')
    return ByteClass::Space;
  if ((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || c >= 0x80) return ByteClass::Letter;
  if (c >= '0' && c <= '9') return ByteClass::Digit;
  return ByteClass::Other;
}

bool takes_leading_space(ByteClass c) { return c == ByteClass::Letter || c == ByteClass::Other; }

// Calls emit(std::string_view) for each chunk of `text`, in order; the chunks concatenate to it.
template <class Emit>
void split_chunks(std::string_view text, Emit&& emit) {
  const size_t n = text.size();
  auto cls = [&](size_t i) { return byte_class(static_cast<unsigned char>(text[i])); };
  size_t i = 0;
  while (i < n) {
    const size_t start = i;
    ByteClass c = cls(i);
    if (text[i] == ' ' && i + 1 < n && takes_leading_space(cls(i + 1))) {
      c = cls(i + 1);
      i += 1;
    }
    if (c == ByteClass::Space) {
      size_t j = i;
      while (j < n && cls(j) == ByteClass::Space) ++j;
      if (j < n && j - i >= 2 && text[j - 1] == ' ' && takes_leading_space(cls(j))) --j;
      i = j;
    } else {
      while (i < n && cls(i) == c) ++i;
    }
    for (size_t p = start; p < i; p += kMaxChunk) emit(text.substr(p, std::min(kMaxChunk, i - p)));
  }
}

uint64_t pair_key(int32_t a, int32_t b) {
  return (static_cast<uint64_t>(static_cast<uint32_t>(a)) << 32) | static_cast<uint32_t>(b);
}

std::string json_header(const char* kind, int64_t vocab_size) {
  std::ostringstream out;
  out << "{\"format\": \"" << kFormat << "\", \"version\": " << kFormatVersion << ", \"kind\": \""
      << kind << "\", \"vocab_size\": " << vocab_size;
  return out.str();
}

// ---------------------------------------------------------------------------------------------
class ByteTokenizer final : public Tokenizer {
 public:
  std::string kind() const override { return "byte"; }
  int64_t vocab_size() const override { return 256; }
  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int32_t> ids(text.size());
    for (size_t i = 0; i < text.size(); ++i) ids[i] = static_cast<unsigned char>(text[i]);
    return ids;
  }
  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out(ids.size(), '\0');
    for (size_t i = 0; i < ids.size(); ++i) {
      SINKLAB_CHECK(ids[i] >= 0 && ids[i] < 256, ValueError,
                    "byte tokenizer: cannot decode id " << ids[i] << " at position " << i
                                                        << " (vocabulary 0..255)",
                    "the ids come from a different tokenizer or a model with a larger vocabulary");
      out[i] = static_cast<char>(ids[i]);
    }
    return out;
  }
  void save(const std::string& path) const override {
    write_file_atomic(path, json_header("byte", 256) + "}\n");
  }
};

// ---------------------------------------------------------------------------------------------
class BpeTokenizer final : public Tokenizer {
 public:
  // merges[r] = (left, right) makes token 256 + r. Checked by the callers.
  explicit BpeTokenizer(std::vector<std::pair<int32_t, int32_t>> merges)
      : merges_(std::move(merges)) {
    pieces_.resize(256 + merges_.size());
    for (int i = 0; i < 256; ++i) pieces_[i] = std::string(1, static_cast<char>(i));
    rank_.reserve(merges_.size() * 2);
    for (size_t r = 0; r < merges_.size(); ++r) {
      const auto [a, b] = merges_[r];
      pieces_[256 + r] = pieces_[a] + pieces_[b];
      rank_.emplace(pair_key(a, b), static_cast<int32_t>(r));
    }
  }

  std::string kind() const override { return "bpe"; }
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }

  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 16);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() > kMaxCacheEntries) cache_.clear();
    split_chunks(text, [&](std::string_view chunk) {
      if (chunk.size() == 1) {  // a single byte is its own token
        ids.push_back(static_cast<unsigned char>(chunk[0]));
        return;
      }
      if (chunk.size() > kMaxCachedChunk) {
        encode_chunk(chunk, ids);
        return;
      }
      auto it = cache_.find(std::string(chunk));
      if (it == cache_.end()) {
        std::vector<int32_t> enc;
        encode_chunk(chunk, enc);
        it = cache_.emplace(std::string(chunk), std::move(enc)).first;
      }
      ids.insert(ids.end(), it->second.begin(), it->second.end());
    });
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    out.reserve(ids.size() * 4);
    for (size_t i = 0; i < ids.size(); ++i) {
      SINKLAB_CHECK(ids[i] >= 0 && static_cast<size_t>(ids[i]) < pieces_.size(), ValueError,
                    "bpe tokenizer: cannot decode id " << ids[i] << " at position " << i
                                                       << " (vocabulary 0.." << pieces_.size() - 1
                                                       << ")",
                    "the ids come from a different tokenizer or a model with a padded "
                    "vocabulary (sample only ids < vocab_size)");
      out += pieces_[ids[i]];
    }
    return out;
  }

  void save(const std::string& path) const override {
    std::string text = json_header("bpe", vocab_size());
    text += ",\n \"merges\": [";
    for (size_t r = 0; r < merges_.size(); ++r) {
      if (r) text += ',';
      text += r % 16 == 0 ? "\n  " : " ";
      text +=
          '[' + std::to_string(merges_[r].first) + ", " + std::to_string(merges_[r].second) + ']';
    }
    text += "\n ]}\n";
    write_file_atomic(path, text);
  }

 private:
  static constexpr size_t kMaxCachedChunk = 64;
  static constexpr size_t kMaxCacheEntries = 1 << 20;

  // Applies merges by rank (lowest first, every occurrence, left to right): the same tokens
  // as replaying the training merges in order.
  void encode_chunk(std::string_view chunk, std::vector<int32_t>& out) const {
    std::vector<int32_t> sym(chunk.size());
    for (size_t i = 0; i < chunk.size(); ++i) sym[i] = static_cast<unsigned char>(chunk[i]);
    while (sym.size() >= 2) {
      int32_t best = std::numeric_limits<int32_t>::max();
      for (size_t k = 0; k + 1 < sym.size(); ++k) {
        auto it = rank_.find(pair_key(sym[k], sym[k + 1]));
        if (it != rank_.end() && it->second < best) best = it->second;
      }
      if (best == std::numeric_limits<int32_t>::max()) break;
      const auto [a, b] = merges_[best];
      const int32_t id = 256 + best;
      size_t w = 0;
      for (size_t k = 0; k < sym.size(); ++k) {
        if (k + 1 < sym.size() && sym[k] == a && sym[k + 1] == b) {
          sym[w++] = id;
          ++k;
        } else {
          sym[w++] = sym[k];
        }
      }
      sym.resize(w);
    }
    out.insert(out.end(), sym.begin(), sym.end());
  }

  std::vector<std::pair<int32_t, int32_t>> merges_;
  std::vector<std::string> pieces_;             // token id -> its bytes
  std::unordered_map<uint64_t, int32_t> rank_;  // (left, right) -> merge rank
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;  // chunk -> ids
};

// ---------------------------------------------------------------------------------------------
// BPE training state.
struct Word {
  std::vector<int32_t> sym;
  int64_t count;
};

struct HeapEntry {
  int64_t count;
  uint64_t pair;
  // priority_queue pops the largest: more frequent first, then the smaller pair.
  bool operator<(const HeapEntry& o) const {
    return count != o.count ? count < o.count : pair > o.pair;
  }
};

std::vector<std::pair<int32_t, int32_t>> learn_merges(const std::string& corpus,
                                                      int64_t vocab_size) {
  // 1. Unique chunks with their counts, in a fixed (sorted) order.
  std::unordered_map<std::string_view, int64_t> chunk_counts;
  chunk_counts.reserve(1 << 16);
  split_chunks(corpus, [&](std::string_view c) {
    if (c.size() >= 2) ++chunk_counts[c];  // single bytes have no pairs
  });
  std::vector<std::pair<std::string_view, int64_t>> sorted(chunk_counts.begin(),
                                                           chunk_counts.end());
  std::sort(sorted.begin(), sorted.end());
  chunk_counts = {};
  std::vector<Word> words;
  words.reserve(sorted.size());
  for (const auto& [text, count] : sorted) {
    Word w;
    w.sym.resize(text.size());
    for (size_t i = 0; i < text.size(); ++i) w.sym[i] = static_cast<unsigned char>(text[i]);
    w.count = count;
    words.push_back(std::move(w));
  }

  // 2. Pair counts and, per pair, the words that contain it (may hold stale entries).
  std::unordered_map<uint64_t, int64_t> pair_counts;
  std::unordered_map<uint64_t, std::vector<int32_t>> where;
  for (size_t wi = 0; wi < words.size(); ++wi) {
    const Word& w = words[wi];
    for (size_t k = 0; k + 1 < w.sym.size(); ++k) {
      const uint64_t p = pair_key(w.sym[k], w.sym[k + 1]);
      pair_counts[p] += w.count;
      auto& list = where[p];
      if (list.empty() || list.back() != static_cast<int32_t>(wi))
        list.push_back(static_cast<int32_t>(wi));
    }
  }
  std::vector<HeapEntry> initial;
  initial.reserve(pair_counts.size());
  for (const auto& [p, c] : pair_counts) initial.push_back({c, p});
  std::priority_queue<HeapEntry> heap(std::less<HeapEntry>(), std::move(initial));

  // 3. Merge loop.
  std::vector<std::pair<int32_t, int32_t>> merges;
  const int64_t n_merges = vocab_size - 256;
  merges.reserve(static_cast<size_t>(std::max<int64_t>(n_merges, 0)));
  std::unordered_map<uint64_t, int64_t> delta;
  std::vector<int32_t> merged;
  while (static_cast<int64_t>(merges.size()) < n_merges) {
    while (!heap.empty()) {
      auto it = pair_counts.find(heap.top().pair);
      if (it != pair_counts.end() && it->second == heap.top().count) break;
      heap.pop();  // stale entry
    }
    if (heap.empty()) break;  // every chunk is a single token: no pair left to merge
    const uint64_t best = heap.top().pair;
    heap.pop();
    const int32_t a = static_cast<int32_t>(best >> 32),
                  b = static_cast<int32_t>(best & 0xffffffffu);
    const int32_t id = 256 + static_cast<int32_t>(merges.size());
    merges.emplace_back(a, b);

    std::vector<int32_t> list = std::move(where[best]);
    where.erase(best);
    std::sort(list.begin(), list.end());
    list.erase(std::unique(list.begin(), list.end()), list.end());
    delta.clear();
    for (int32_t wi : list) {
      Word& w = words[wi];
      std::vector<int32_t>& sym = w.sym;
      bool found = false;
      for (size_t k = 0; k + 1 < sym.size() && !found; ++k) found = sym[k] == a && sym[k + 1] == b;
      if (!found) continue;
      for (size_t k = 0; k + 1 < sym.size(); ++k) delta[pair_key(sym[k], sym[k + 1])] -= w.count;
      merged.clear();
      for (size_t k = 0; k < sym.size(); ++k) {
        if (k + 1 < sym.size() && sym[k] == a && sym[k + 1] == b) {
          merged.push_back(id);
          ++k;
        } else {
          merged.push_back(sym[k]);
        }
      }
      sym.assign(merged.begin(), merged.end());
      for (size_t k = 0; k + 1 < sym.size(); ++k) {
        const uint64_t p = pair_key(sym[k], sym[k + 1]);
        delta[p] += w.count;
        if (sym[k] == id || sym[k + 1] == id) {  // a pair new to this word
          auto& l = where[p];
          if (l.empty() || l.back() != wi) l.push_back(wi);
        }
      }
    }
    for (const auto& [p, d] : delta) {
      if (d == 0) continue;
      auto it = pair_counts.find(p);
      const int64_t c = (it == pair_counts.end() ? 0 : it->second) + d;
      if (c <= 0) {
        if (it != pair_counts.end()) pair_counts.erase(it);
        where.erase(p);
      } else {
        if (it == pair_counts.end())
          pair_counts.emplace(p, c);
        else
          it->second = c;
        heap.push({c, p});
      }
    }
    pair_counts.erase(best);  // fully merged
  }
  return merges;
}

}  // namespace

std::unique_ptr<Tokenizer> make_byte_tokenizer() { return std::make_unique<ByteTokenizer>(); }

std::unique_ptr<Tokenizer> train_bpe(const std::string& corpus, int64_t vocab_size) {
  SINKLAB_CHECK(vocab_size >= 256 && vocab_size <= std::numeric_limits<int32_t>::max(), ValueError,
                "train_bpe: vocab_size " << vocab_size << " is out of range",
                "byte-level BPE needs at least the 256 byte tokens (prepare.vocab_size >= 256)");
  return std::make_unique<BpeTokenizer>(learn_merges(corpus, vocab_size));
}

std::unique_ptr<Tokenizer> load_tokenizer(const std::string& path) {
  std::error_code ec;
  SINKLAB_CHECK(fs::is_regular_file(path, ec), IOError, path << ": tokenizer file not found",
                "run `sinklab prepare <config>` to train one, or set data.tokenizer: byte");
  YAML::Node root;
  try {
    root = YAML::LoadFile(path);
  } catch (const YAML::Exception& e) {
    SINKLAB_FAIL(IOError, path << ": not valid tokenizer JSON (" << e.what() << ")",
                 "the file is damaged: re-run `sinklab prepare <config>`");
  }
  const char* remake = "re-run `sinklab prepare <config>` to write a fresh tokenizer.json";
  SINKLAB_CHECK(root.IsMap() && root["format"] && root["format"].IsScalar() &&
                    root["format"].Scalar() == kFormat,
                IOError, path << ": not a sinklab tokenizer (no \"format\": \"" << kFormat << "\")",
                remake);
  try {
    SINKLAB_CHECK(root["version"] && root["version"].IsScalar(), IOError,
                  path << ": tokenizer file has no \"version\"", remake);
    const int64_t version = root["version"].as<int64_t>();
    SINKLAB_CHECK(version == kFormatVersion, IOError,
                  path << ": tokenizer format version " << version << ", this build reads version "
                       << kFormatVersion,
                  remake);
    const std::string kind = root["kind"] ? root["kind"].as<std::string>() : std::string();
    const int64_t vocab = root["vocab_size"] ? root["vocab_size"].as<int64_t>() : -1;
    if (kind == "byte") {
      SINKLAB_CHECK(vocab == 256, IOError,
                    path << ": byte tokenizer with vocab_size " << vocab << " (must be 256)",
                    remake);
      return make_byte_tokenizer();
    }
    SINKLAB_CHECK(kind == "bpe", IOError,
                  path << ": unknown tokenizer kind \"" << kind << "\" (expected bpe or byte)",
                  remake);
    const YAML::Node list = root["merges"];
    SINKLAB_CHECK(list && list.IsSequence(), IOError,
                  path << ": bpe tokenizer without a \"merges\" list", remake);
    std::vector<std::pair<int32_t, int32_t>> merges;
    merges.reserve(list.size());
    std::unordered_map<uint64_t, size_t> seen;
    for (size_t r = 0; r < list.size(); ++r) {
      const YAML::Node m = list[r];
      SINKLAB_CHECK(m.IsSequence() && m.size() == 2, IOError,
                    path << ": merge " << r << " is not a [left, right] pair", remake);
      const int64_t a = m[0].as<int64_t>(), b = m[1].as<int64_t>();
      const int64_t limit = 256 + static_cast<int64_t>(r);
      SINKLAB_CHECK(a >= 0 && b >= 0 && a < limit && b < limit, IOError,
                    path << ": merge " << r << " [" << a << ", " << b
                         << "] refers to a token that does not exist yet (ids must be < " << limit
                         << ")",
                    remake);
      const auto [it, fresh] =
          seen.emplace(pair_key(static_cast<int32_t>(a), static_cast<int32_t>(b)), r);
      SINKLAB_CHECK(
          fresh, IOError,
          path << ": merge " << r << " [" << a << ", " << b << "] repeats merge " << it->second,
          remake);
      merges.emplace_back(static_cast<int32_t>(a), static_cast<int32_t>(b));
    }
    SINKLAB_CHECK(vocab == 256 + static_cast<int64_t>(merges.size()), IOError,
                  path << ": vocab_size " << vocab << " but " << merges.size()
                       << " merges (expected vocab_size = 256 + merges)",
                  remake);
    return std::make_unique<BpeTokenizer>(std::move(merges));
  } catch (const YAML::Exception& e) {
    SINKLAB_FAIL(IOError, path << ": malformed tokenizer file (" << e.what() << ")", remake);
  }
}

std::unique_ptr<Tokenizer> load_data_tokenizer(const DataSection& data) {
  if (data.tokenizer == "byte") return make_byte_tokenizer();
  const std::string path = data.tokenizer.empty() ? data.dir + "/tokenizer.json" : data.tokenizer;
  SINKLAB_CHECK(fs::exists(path), IOError,
                "tokenizer file " << path << " does not exist (data.tokenizer)",
                "run `sinklab prepare <config>` first, or set data.tokenizer: byte");
  return load_tokenizer(path);
}

}  // namespace sinklab::train
