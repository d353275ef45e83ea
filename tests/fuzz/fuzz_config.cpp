// libFuzzer target: the YAML config reader (parse_config: YAML syntax, the key table, types,
// bounds, variants, validation) on arbitrary text.
#include <cstddef>
#include <cstdint>
#include <string>

#include "tests/fuzz/fuzz_input.h"
#include "train/config.h"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string text(reinterpret_cast<const char*>(data), size);
  return sinklab::fuzz::accept_errors([&] {
    const sinklab::train::RunConfig config = sinklab::train::parse_config(text, "fuzz.yaml");
    for (const auto& variant : config.variants) sinklab::train::apply_variant(config, variant);
    sinklab::train::to_yaml(config);
  });
}
