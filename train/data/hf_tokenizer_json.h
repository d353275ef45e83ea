// Hugging Face tokenizer.json: reading the byte-level BPE ones (`hf:<path>` in a config), and
// writing any sinklab tokenizer as one, with the tokenizer_config.json and
// special_tokens_map.json that transformers' AutoTokenizer reads beside it.
//
// Read (everything else is refused with an IOError naming the file and the field):
//   model         type BPE with vocab and merges ("a b" strings or [a, b] pairs); dropout null,
//                 no continuing_subword_prefix / end_of_word_suffix, byte_fallback false;
//                 ignore_merges honoured; every byte-level character in the vocab
//   normalizer    null
//   pre_tokenizer ByteLevel, or a Sequence of Split steps (pattern Regex or String, behavior
//                 Isolated, invert false) and exactly one ByteLevel; use_regex true is GPT-2's
//                 pattern (train/data/split_regex.h)
//   decoder       ByteLevel
//   added_tokens  any; special ones are never matched in text, non-special ones are (without
//                 lstrip, rstrip or single_word)
//   post_processor ignored: sinklab adds no BOS/EOS token
//   truncation, padding  null
// The ids equal Hugging Face tokenizers' encode(text, add_special_tokens=False) with
// encode_special_tokens = True (special-token text is tokenized as text, like tiktoken's
// encode_ordinary).
//
// Written: the model (vocab in id order, merges as "a b" strings, which every tokenizers
// version reads), the pre-tokenizer steps, a ByteLevel decoder, the added tokens; no
// normalizer or post-processor. sinklab's bpe becomes Sequence[ByteLevel(use_regex false),
// Split(its chunk regex over byte-level characters)], byte becomes ByteLevel(use_regex false)
// with no merges; loading the file back (here or in tokenizers) gives the same ids.
#pragma once
#include <yaml-cpp/yaml.h>

#include <cstdint>
#include <memory>
#include <string>

#include "train/data/tokenizer.h"

namespace sinklab::train {

// `path`: a tokenizer.json, or a folder holding one. kind() "hf".
std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path);
// The same from a parsed file (load_tokenizer's route for a tokenizer.json).
std::unique_ptr<Tokenizer> hf_tokenizer_from_json(const YAML::Node& root, const std::string& path);

// Writes `tokenizer` as a tokenizer.json at `path` (atomically). Throws ValueError when it cannot
// be one (a sinklab bpe with two ids for the same bytes).
void save_hf_tokenizer_json(const Tokenizer& tokenizer, const std::string& path);

// Writes <dir>/tokenizer.json, <dir>/tokenizer_config.json (tokenizer_class
// PreTrainedTokenizerFast, clean_up_tokenization_spaces false so decoding returns the bytes,
// model_max_length when > 0) and <dir>/special_tokens_map.json. Special tokens: bos, eos and
// unk are <|endoftext|> where the tokenizer has it as a special token (gpt2); otherwise none
// (sinklab's byte and bpe have no special token, and their models were trained without one).
void save_hf_tokenizer_files(const Tokenizer& tokenizer, const std::string& dir,
                             int64_t model_max_length = 0);

}  // namespace sinklab::train
