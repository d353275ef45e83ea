// libFuzzer target: the token shard reader (llm.c header, token count against the file size,
// uint16/uint32 tokens, and the headerless nanoGPT stream) on arbitrary bytes.
#include <cstddef>
#include <cstdint>

#include "tests/fuzz/fuzz_input.h"
#include "train/data/shards.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string path = sinklab::fuzz::write_input(data, size, ".bin");
  return sinklab::fuzz::accept_errors([&] {
    sinklab::train::read_shard(path, /*allow_raw=*/false);
    sinklab::train::read_shard(path, /*allow_raw=*/true);
  });
}
