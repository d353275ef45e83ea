#include "train/commands/tokenize.h"

#include <iomanip>

#include "core/error.h"
#include "train/data/hf_tokenizer_json.h"
#include "train/io/read_file.h"
#include "train/data/shards.h"
#include "train/data/tokenizer_spec.h"
#include "train/phase_clock.h"

namespace sinklab::train {

void run_tokenize(const TokenizeOptions& o, std::ostream& out) {
  SINKLAB_CHECK(o.file.empty() || o.text.empty(), ConfigError,
                "tokenize: both --file and --text are given", "give one text to encode");
  SINKLAB_CHECK(!o.file.empty() || !o.text.empty() || !o.write_hf.empty(), ConfigError,
                "tokenize: nothing to do", "give --file or --text to encode, or --write-hf DIR");
  SINKLAB_CHECK(o.out.empty() || !o.file.empty() || !o.text.empty(), ConfigError,
                "tokenize: --out " << o.out << " without --file or --text", "give the text");
  const auto t0 = Clock::now();
  const auto tokenizer = open_tokenizer(o.tokenizer, "--tokenizer");
  const double load_s = seconds_since(t0);
  if (!o.write_hf.empty()) {
    save_hf_tokenizer_files(*tokenizer, o.write_hf, o.model_max_length);
    out << "wrote " << o.write_hf << "/tokenizer.json, tokenizer_config.json, "
        << "special_tokens_map.json (" << tokenizer->kind() << ", vocab "
        << tokenizer->vocab_size() << ")\n";
  }
  if (o.file.empty() && o.text.empty()) return;
  const std::string text =
      o.file.empty() ? o.text : read_file(o.file, "text file (--file)", "check the path");
  const auto t1 = Clock::now();
  const std::vector<int32_t> ids = tokenizer->encode(text);
  const double encode_s = seconds_since(t1);
  if (o.out.empty()) {
    for (size_t i = 0; i < ids.size(); ++i) out << (i ? " " : "") << ids[i];
    out << "\n";
    return;
  }
  write_shard(o.out, ids);
  out << std::fixed << std::setprecision(2) << (o.file.empty() ? "--text" : o.file) << ": "
      << text.size() << " bytes -> " << ids.size() << " tokens ("
      << (ids.empty() ? 0.0 : static_cast<double>(text.size()) / static_cast<double>(ids.size()))
      << " bytes/token; " << tokenizer->kind() << " loaded in " << load_s << " s, encoded in "
      << encode_s << " s) -> " << o.out << "\n";
}

}  // namespace sinklab::train
