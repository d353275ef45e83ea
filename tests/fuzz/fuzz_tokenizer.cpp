// libFuzzer target: the tokenizer file reader (sinklab's JSON: format version, vocabulary and
// merges; a Hugging Face tokenizer.json: model, pre-tokenizer patterns, added tokens) on
// arbitrary bytes; a tokenizer that loads must also encode and decode a fixed text.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_input.h"
#include "train/data/tokenizer.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = sinklab::fuzz::write_input(data, size, ".json");
  return sinklab::fuzz::accept_errors([&] {
    const auto tokenizer = sinklab::train::load_tokenizer(path);
    const auto ids = tokenizer->encode("Call me Ishmael. Some years ago\n\t-- 1841 \xc3\xa9");
    tokenizer->decode(ids);
  });
}
