// The byte-level BPE tokenizer over a ByteLevelBpeModel: pre-tokenizer steps with PCRE2, merges
// through bpe_merge, a cache of encoded pieces.
#include "train/data/byte_level_bpe.h"

#include <algorithm>
#include <array>
#include <functional>
#include <limits>
#include <mutex>
#include <optional>
#include <string_view>
#include <unordered_map>

#include "core/error.h"
#include "train/data/bpe_merge.h"
#include "train/data/byte_level.h"
#include "train/data/hf_tokenizer_json.h"
#include "train/data/split_regex.h"
#include "train/data/tokenizer.h"

namespace sinklab::train {

namespace {

struct CompiledStep {
  PreTokenizerStep::Type type;
  bool add_prefix_space = false;
  std::unique_ptr<SplitRegex> regex;  // null: ByteLevel without a regex
};

// The most ids below a tokenizer's largest that no token holds.
constexpr int64_t kMaxUnusedIds = int64_t{1} << 20;

class ByteLevelBpeTokenizer final : public Tokenizer {
 public:
  ByteLevelBpeTokenizer(ByteLevelBpeModel model, std::string kind, const std::string& origin)
      : model_(std::move(model)), kind_(std::move(kind)) {
    const char* hint = "the file is not a byte-level BPE tokenizer sinklab can run; fix or "
                       "regenerate it";
    // 1. Vocabulary: id -> bytes.
    std::unordered_map<std::string, int32_t> id_of;
    id_of.reserve(model_.vocab.size() * 2);
    int64_t size = 0;
    for (const auto& [text, id] : model_.vocab) {
      SINKLAB_CHECK(id >= 0, IOError, origin << ": model.vocab gives \"" << text << "\" the id " << id,
                    hint);
      size = std::max<int64_t>(size, int64_t{id} + 1);
      SINKLAB_CHECK(id_of.emplace(text, id).second, IOError,
                    origin << ": model.vocab lists \"" << text << "\" twice", hint);
    }
    for (const AddedToken& t : model_.added_tokens) {
      SINKLAB_CHECK(t.id >= 0 && !t.content.empty(), IOError,
                    origin << ": added_tokens has an entry with id " << t.id << " and content \""
                           << t.content << "\"",
                    hint);
      size = std::max<int64_t>(size, int64_t{t.id} + 1);
    }
    SINKLAB_CHECK(size <= std::numeric_limits<int32_t>::max(), IOError,
                  origin << ": token ids reach " << size - 1, hint);
    // A tokenizer's ids run from 0 with at most a few unused ones (special tokens placed past
    // the vocabulary); the id table is as long as the largest id, so a stray huge id would
    // allocate gigabytes for nothing.
    const int64_t entries = static_cast<int64_t>(model_.vocab.size() + model_.added_tokens.size());
    SINKLAB_CHECK(size - entries <= kMaxUnusedIds, IOError,
                  origin << ": token ids reach " << size - 1 << " for " << entries
                         << " tokens: more than " << kMaxUnusedIds << " ids unused",
                  hint);
    pieces_.assign(static_cast<size_t>(size), std::nullopt);
    std::vector<const std::string*> text_of(static_cast<size_t>(size), nullptr);
    for (const auto& [text, id] : model_.vocab) {
      SINKLAB_CHECK(!pieces_[id], IOError,
                    origin << ": model.vocab gives the id " << id << " to two tokens (one is \""
                           << text << "\")",
                    hint);
      // A vocab entry outside the byte-level alphabet cannot come out of a merge; it decodes to
      // its own UTF-8 (as an added token would).
      pieces_[id] = byte_level_decode(text).value_or(text);
      text_of[id] = &text;
    }
    for (const AddedToken& t : model_.added_tokens) {
      SINKLAB_CHECK(!text_of[t.id] || *text_of[t.id] == t.content || *pieces_[t.id] == t.content,
                    IOError,
                    origin << ": added token \"" << t.content << "\" has the id " << t.id
                           << ", which model.vocab gives to \"" << *text_of[t.id] << "\"",
                    hint);
      pieces_[t.id] = t.content;
      if (!t.special) literal_tokens_.push_back(t);
    }
    // Longest first, so the leftmost match is also the longest one there.
    std::sort(literal_tokens_.begin(), literal_tokens_.end(),
              [](const AddedToken& a, const AddedToken& b) {
                return a.content.size() > b.content.size();
              });
    for (int b = 0; b < 256; ++b) {
      std::string ch;
      append_utf8(ch, byte_level_char(static_cast<uint8_t>(b)));
      const auto it = id_of.find(ch);
      SINKLAB_CHECK(it != id_of.end(), IOError,
                    origin << ": model.vocab lacks the byte-level character \"" << ch
                           << "\" (byte " << b << "): not a byte-level BPE vocabulary",
                    hint);
      byte_ids_[b] = it->second;
    }
    // 2. Merges.
    merges_.reserve(model_.merges.size());
    for (size_t r = 0; r < model_.merges.size(); ++r) {
      const auto& [a, b] = model_.merges[r];
      const auto ia = id_of.find(a), ib = id_of.find(b), ic = id_of.find(a + b);
      SINKLAB_CHECK(ia != id_of.end() && ib != id_of.end() && ic != id_of.end(), IOError,
                    origin << ": model.merges[" << r << "] \"" << a << " " << b << "\": \""
                           << (ia == id_of.end() ? a : ib == id_of.end() ? b : a + b)
                           << "\" is not in model.vocab",
                    hint);
      // A repeated pair keeps its first (lowest) rank, as in Hugging Face's BPE.
      merges_.add(ia->second, ib->second, {static_cast<int32_t>(r), ic->second});
    }
    if (model_.ignore_merges) whole_tokens_ = std::move(id_of);
    // 3. Pre-tokenizer (a pattern PCRE2 cannot take is a fault of the file: IOError).
    int byte_level_steps = 0;
    for (size_t i = 0; i < model_.pre_tokenizer.size(); ++i) try {
      const PreTokenizerStep& s = model_.pre_tokenizer[i];
      CompiledStep c;
      c.type = s.type;
      c.add_prefix_space = s.add_prefix_space;
      const std::string what = origin + ": pre_tokenizer step " + std::to_string(i);
      if (s.type == PreTokenizerStep::Type::ByteLevel) {
        ++byte_level_steps;
        if (s.use_regex) c.regex = std::make_unique<SplitRegex>(kGpt2SplitPattern, what);
      } else {
        c.regex = std::make_unique<SplitRegex>(s.literal ? regex_literal(s.pattern) : s.pattern,
                                               what);
      }
      steps_.push_back(std::move(c));
    } catch (const ValueError& e) {
      SINKLAB_FAIL(IOError, e.message(), e.hint());
    }
    SINKLAB_CHECK(byte_level_steps == 1, IOError,
                  origin << ": pre_tokenizer has " << byte_level_steps
                         << " ByteLevel steps; a byte-level BPE tokenizer needs exactly one",
                  hint);
  }

  std::string kind() const override { return kind_; }
  int64_t vocab_size() const override { return static_cast<int64_t>(pieces_.size()); }
  ByteLevelBpeModel byte_level_bpe() const override { return model_; }
  void save(const std::string& path) const override { save_hf_tokenizer_json(*this, path); }

  std::vector<int32_t> encode(const std::string& text) const override {
    std::vector<int32_t> ids;
    ids.reserve(text.size() / 3 + 16);
    std::lock_guard<std::mutex> lock(cache_mutex_);
    if (cache_.size() > kMaxCacheEntries) cache_.clear();
    const auto encode_part = [&](std::string_view part) {
      pre_tokenize(0, part, [&](std::string_view piece) { encode_piece(piece, ids); });
    };
    // Non-special added tokens are cut out first, leftmost (and there longest) first.
    size_t done = 0;
    for (size_t i = 0; i < text.size() && !literal_tokens_.empty(); ++i) {
      for (const AddedToken& t : literal_tokens_) {
        if (text.compare(i, t.content.size(), t.content) != 0) continue;
        encode_part(std::string_view(text).substr(done, i - done));
        ids.push_back(t.id);
        i += t.content.size() - 1;
        done = i + 1;
        break;
      }
    }
    encode_part(std::string_view(text).substr(done));
    return ids;
  }

  std::string decode(const std::vector<int32_t>& ids) const override {
    std::string out;
    out.reserve(ids.size() * 4);
    for (size_t i = 0; i < ids.size(); ++i) {
      const int32_t id = ids[i];
      SINKLAB_CHECK(id >= 0 && static_cast<size_t>(id) < pieces_.size() && pieces_[id],
                    ValueError,
                    kind_ << " tokenizer: cannot decode id " << id << " at position " << i
                          << " (vocabulary 0.." << pieces_.size() - 1
                          << (id >= 0 && static_cast<size_t>(id) < pieces_.size()
                                  ? ", which has no token with this id"
                                  : "")
                          << ")",
                    "the ids come from a different tokenizer or a model with a padded "
                    "vocabulary (sample only ids < vocab_size)");
      out += *pieces_[id];
    }
    return out;
  }

 private:
  static constexpr size_t kMaxCachedPiece = 64;
  static constexpr size_t kMaxCacheEntries = 1 << 20;

  // Runs steps_[step..] on `piece` (raw bytes); `emit` gets each final piece.
  void pre_tokenize(size_t step, std::string_view piece,
                    const std::function<void(std::string_view)>& emit, bool mapped = false) const {
    if (piece.empty()) return;
    if (step == steps_.size()) {
      emit(piece);
      return;
    }
    const CompiledStep& s = steps_[step];
    const auto recurse = [&](std::string_view sub) { pre_tokenize(step + 1, sub, emit, true); };
    if (s.type == PreTokenizerStep::Type::ByteLevel) {
      std::string prefixed;
      if (s.add_prefix_space && piece.front() != ' ') {
        prefixed.reserve(piece.size() + 1);
        prefixed += ' ';
        prefixed += piece;
        piece = prefixed;
      }
      if (!s.regex) return recurse(piece);
      s.regex->split(piece, [&](size_t b, size_t e) { recurse(piece.substr(b, e - b)); });
      return;
    }
    if (!mapped) {  // a Split before the ByteLevel step sees the raw text
      s.regex->split(piece, [&](size_t b, size_t e) {
        pre_tokenize(step + 1, piece.substr(b, e - b), emit, false);
      });
      return;
    }
    // After ByteLevel the regex sees byte-level characters, one per raw byte.
    const std::string chars = byte_level_encode(piece);
    std::vector<uint32_t> raw_at(chars.size() + 1, 0);  // char offset -> raw byte offset
    for (size_t c = 0, r = 0; c < chars.size(); ++r) {
      const size_t len = static_cast<uint8_t>(chars[c]) < 0x80 ? 1 : 2;  // U+0021..U+0143
      raw_at[c] = static_cast<uint32_t>(r);
      c += len;
    }
    raw_at[chars.size()] = static_cast<uint32_t>(piece.size());
    s.regex->split(chars, [&](size_t b, size_t e) {
      recurse(piece.substr(raw_at[b], raw_at[e] - raw_at[b]));
    });
  }

  void encode_piece(std::string_view piece, std::vector<int32_t>& out) const {
    if (piece.size() <= kMaxCachedPiece) {
      const auto it = cache_.find(std::string(piece));
      if (it != cache_.end()) {
        out.insert(out.end(), it->second.begin(), it->second.end());
        return;
      }
    }
    std::vector<int32_t> symbols;
    const auto whole = model_.ignore_merges ? whole_tokens_.find(byte_level_encode(piece))
                                            : whole_tokens_.end();
    if (whole != whole_tokens_.end()) {
      symbols.push_back(whole->second);
    } else {
      symbols.resize(piece.size());
      for (size_t i = 0; i < piece.size(); ++i) symbols[i] = byte_ids_[static_cast<uint8_t>(piece[i])];
      bpe_merge(symbols, merges_);
    }
    out.insert(out.end(), symbols.begin(), symbols.end());
    if (piece.size() <= kMaxCachedPiece) cache_.emplace(std::string(piece), std::move(symbols));
  }

  ByteLevelBpeModel model_;
  std::string kind_;
  std::vector<std::optional<std::string>> pieces_;  // id -> bytes (nullopt: no such token)
  std::array<int32_t, 256> byte_ids_{};             // byte -> the id of its character
  MergeTable merges_;
  std::unordered_map<std::string, int32_t> whole_tokens_;  // ignore_merges: text -> id
  std::vector<AddedToken> literal_tokens_;                 // non-special added tokens
  std::vector<CompiledStep> steps_;
  mutable std::mutex cache_mutex_;
  mutable std::unordered_map<std::string, std::vector<int32_t>> cache_;  // piece -> ids
};

}  // namespace

std::unique_ptr<Tokenizer> make_byte_level_bpe_tokenizer(ByteLevelBpeModel model,
                                                         const std::string& kind,
                                                         const std::string& origin) {
  return std::make_unique<ByteLevelBpeTokenizer>(std::move(model), kind, origin);
}

}  // namespace sinklab::train
