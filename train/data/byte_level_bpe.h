// Byte-level BPE as data, and the tokenizer that runs it: the part of a Hugging Face
// tokenizer.json that sinklab reads and writes (a BPE model over GPT-2's byte-level alphabet, a
// pre-tokenizer of Split regexes and one ByteLevel step, added tokens). GPT-2's own files
// (encoder.json + vocab.bpe), any such tokenizer.json, and sinklab's byte and bpe tokenizers
// all become one ByteLevelBpeModel.
//
// Encoding, as Hugging Face's tokenizers with encode_special_tokens on and no post-processor
// (no BOS/EOS added): the text is cut at non-special added tokens; special added tokens
// (<|endoftext|>) are never matched in text: sinklab encodes the text it is given as text, like
// tiktoken's encode_ordinary. Each remaining part goes through the pre-tokenizer steps in order,
// then each piece's bytes start as their byte tokens and merge by rank (train/data/bpe_merge.h).
#pragma once
#include <cstdint>
#include <memory>
#include <string>
#include <utility>
#include <vector>

namespace sinklab::train {

class Tokenizer;

struct PreTokenizerStep {
  enum class Type { ByteLevel, Split };
  Type type = Type::ByteLevel;
  // ByteLevel: maps bytes to byte-level characters; later Split steps see those characters.
  bool add_prefix_space = false;  // a space before each piece that does not start with one
  bool use_regex = true;          // split with GPT-2's pattern first (on the raw text)
  // Split: behavior Isolated (matches and the stretches between them are pieces), not inverted.
  std::string pattern;            // a regex in tokenizer.json's (Oniguruma) syntax
  bool literal = false;           // `pattern` is a plain string (tokenizer.json's "String")
};

struct AddedToken {
  int32_t id = 0;
  std::string content;  // UTF-8, decoded as is
  bool special = true;  // special: never matched in text; non-special: cut out of the text first
};

struct ByteLevelBpeModel {
  // model.vocab: token text in byte-level characters ("Ġthe") -> id.
  std::vector<std::pair<std::string, int32_t>> vocab;
  // model.merges in rank order, as token texts; each concatenation must be in the vocab.
  std::vector<std::pair<std::string, std::string>> merges;
  std::vector<PreTokenizerStep> pre_tokenizer;  // Split steps and exactly one ByteLevel
  std::vector<AddedToken> added_tokens;
  bool ignore_merges = false;  // a piece that is a vocab token as a whole is that token
};

// Checks `model` and builds its tokenizer. kind(): `kind` ("gpt2", "hf"). Throws IOError naming
// `origin` (the file) and the offending field: an id used twice, a byte-level character missing
// from the vocab, a merge whose parts or result are not in the vocab, a pre-tokenizer without
// exactly one ByteLevel step, an added token whose id the vocab gives another token.
std::unique_ptr<Tokenizer> make_byte_level_bpe_tokenizer(ByteLevelBpeModel model,
                                                         const std::string& kind,
                                                         const std::string& origin);

}  // namespace sinklab::train
