// `sinklab prepare`: text files -> tokenizer.json + train/val token shards (llm.c layout).
//
// Reads prepare.inputs, holds out prepare.val_fraction of each for val (val_split documents:
// whole documents, blocks ending at a blank line, joined to units of at least val_unit_bytes and
// spread evenly across the input, small inputs counted together; tail: each input's last bytes,
// cut at a line boundary), trains the tokenizer (bpe with prepare.vocab_size) on the
// concatenated train parts or opens the one named (byte, gpt2, hf:<path>), saves it where the
// trainer looks for it (data.tokenizer, default data.dir/tokenizer.json), and writes
// data.dir/train_000000.bin, val_000000.bin, ...
// (a new shard every prepare.shard_tokens tokens). Prints a short summary to `log`.
#pragma once
#include <cstdint>
#include <ostream>
#include <vector>

#include "train/config.h"

namespace sinklab::train {

void prepare_dataset(const RunConfig& config, std::ostream& log);

// Entropy in nats of the tokens' empirical unigram distribution: the loss of a model that
// ignores context. A trained model's loss must fall well below it. 0 for no tokens.
double unigram_entropy(const std::vector<int32_t>& tokens);

}  // namespace sinklab::train
