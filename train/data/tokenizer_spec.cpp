#include "train/data/tokenizer_spec.h"

#include <filesystem>

#include "core/error.h"
#include "train/data/gpt2_vocab.h"
#include "train/data/hf_tokenizer_json.h"

namespace sinklab::train {

bool is_named_tokenizer(const std::string& spec) {
  return spec == "byte" || spec == "gpt2" || spec.rfind(kHfPrefix, 0) == 0;
}

std::unique_ptr<Tokenizer> open_tokenizer(const std::string& spec, const std::string& key) {
  if (spec == "byte") return make_byte_tokenizer();
  if (spec == "gpt2") return load_gpt2_tokenizer();
  if (spec.rfind(kHfPrefix, 0) == 0) {
    const std::string path = spec.substr(std::char_traits<char>::length(kHfPrefix));
    SINKLAB_CHECK(!path.empty(), ConfigError, key << " is \"hf:\" without a path",
                  "write hf:<path to tokenizer.json or its folder>");
    return load_hf_tokenizer(path);
  }
  std::error_code ec;
  SINKLAB_CHECK(std::filesystem::exists(spec, ec), IOError,
                "tokenizer file " << spec << " does not exist (" << key << ")",
                "run `sinklab prepare <config>` first, or set " + key +
                    " to byte, gpt2 or hf:<tokenizer.json>");
  return load_tokenizer(spec);
}

std::unique_ptr<Tokenizer> open_data_tokenizer(const DataSection& data) {
  return open_tokenizer(data.tokenizer.empty()
                            ? (std::filesystem::path(data.dir) / "tokenizer.json").string()
                            : data.tokenizer);
}

}  // namespace sinklab::train
