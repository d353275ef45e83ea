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
  const std::string written = (std::filesystem::path(data.dir) / "tokenizer.json").string();
  if (data.tokenizer.empty()) return open_tokenizer(written);
  std::unique_ptr<Tokenizer> named = open_tokenizer(data.tokenizer);
  // The shards' own tokenizer, where prepare left it: another one would read their ids as other
  // text (a model of the wrong vocabulary, samples decoded wrong). Compared by what they do: the
  // vocabulary and the ids of a text of ASCII, digits and multi-byte characters.
  std::error_code ec;
  if (std::filesystem::is_regular_file(written, ec)) {
    const std::unique_ptr<Tokenizer> shards = open_tokenizer(written, "data.dir/tokenizer.json");
    const std::string text = "Attention sinks, 2024: \xc3\xbc" "ber caf\xc3\xa9 \xe2\x80\x94 ok?";
    SINKLAB_CHECK(named->vocab_size() == shards->vocab_size() &&
                      named->encode(text) == shards->encode(text),
                  ConfigError,
                  "data.tokenizer is " << data.tokenizer << " (" << named->kind() << ", "
                      << named->vocab_size() << " ids) but the shards in " << data.dir
                      << " were written with " << written << " (" << shards->kind() << ", "
                      << shards->vocab_size() << " ids)",
                  "set data.tokenizer to the tokenizer `sinklab prepare` used, or leave it empty "
                  "(data.dir/tokenizer.json); or prepare the data again with this tokenizer");
  }
  return named;
}

}  // namespace sinklab::train
