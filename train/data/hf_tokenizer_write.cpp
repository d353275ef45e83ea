// Tokenizer -> tokenizer.json, tokenizer_config.json, special_tokens_map.json
// (train/data/hf_tokenizer_json.h says what is written).
#include <algorithm>
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "train/data/hf_tokenizer_json.h"
#include "train/data/json_file.h"
#include "train/io/json_text.h"
#include "train/io/atomic_file.h"

namespace sinklab::train {

namespace {

namespace fs = std::filesystem;

constexpr const char* kEndOfText = "<|endoftext|>";

const char* boolean(bool b) { return b ? "true" : "false"; }

std::string step_json(const PreTokenizerStep& s) {
  std::ostringstream out;
  if (s.type == PreTokenizerStep::Type::ByteLevel) {
    out << R"({"type": "ByteLevel", "add_prefix_space": )" << boolean(s.add_prefix_space)
        << R"(, "trim_offsets": true, "use_regex": )" << boolean(s.use_regex) << "}";
  } else {
    out << R"({"type": "Split", "pattern": {")" << (s.literal ? "String" : "Regex")
        << "\": " << json_string(s.pattern) << R"(}, "behavior": "Isolated", "invert": false})";
  }
  return out.str();
}

// The special token that stands for bos, eos and unk: <|endoftext|> where it is one.
const AddedToken* end_of_text(const ByteLevelBpeModel& model) {
  for (const AddedToken& t : model.added_tokens)
    if (t.special && t.content == kEndOfText) return &t;
  return nullptr;
}

std::string added_token_json(const AddedToken& t) {
  std::ostringstream out;
  out << "{\"id\": " << t.id << ", \"content\": " << json_string(t.content)
      << R"(, "single_word": false, "lstrip": false, "rstrip": false, "normalized": false, )"
      << "\"special\": " << boolean(t.special) << "}";
  return out.str();
}

}  // namespace

void save_hf_tokenizer_json(const Tokenizer& tokenizer, const std::string& path) {
  const ByteLevelBpeModel model = tokenizer.byte_level_bpe();
  std::string out;
  out.reserve(64 * (model.vocab.size() + model.merges.size()) + 4096);
  out += "{\n  \"version\": \"1.0\",\n  \"truncation\": null,\n  \"padding\": null,\n";
  out += "  \"added_tokens\": [";
  for (size_t i = 0; i < model.added_tokens.size(); ++i)
    out += (i ? ",\n    " : "\n    ") + added_token_json(model.added_tokens[i]);
  out += model.added_tokens.empty() ? "],\n" : "\n  ],\n";
  out += "  \"normalizer\": null,\n  \"pre_tokenizer\": ";
  if (model.pre_tokenizer.size() == 1) {
    out += step_json(model.pre_tokenizer[0]);
  } else {
    out += "{\"type\": \"Sequence\", \"pretokenizers\": [";
    for (size_t i = 0; i < model.pre_tokenizer.size(); ++i)
      out += (i ? ",\n    " : "\n    ") + step_json(model.pre_tokenizer[i]);
    out += "\n  ]}";
  }
  out += ",\n  \"post_processor\": null,\n";
  out += R"(  "decoder": {"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, )"
         "\"use_regex\": true},\n";
  out += R"(  "model": {"type": "BPE", "dropout": null, "unk_token": null, )"
         R"("continuing_subword_prefix": null, "end_of_word_suffix": null, "fuse_unk": false, )"
         "\"byte_fallback\": false, ";
  if (model.ignore_merges) out += "\"ignore_merges\": true, ";  // older readers lack the key
  out += "\"vocab\": {";
  std::vector<const std::pair<std::string, int32_t>*> by_id;
  by_id.reserve(model.vocab.size());
  for (const auto& entry : model.vocab) by_id.push_back(&entry);
  std::sort(by_id.begin(), by_id.end(), [](auto* a, auto* b) { return a->second < b->second; });
  for (size_t i = 0; i < by_id.size(); ++i) {
    out += i ? ",\n    " : "\n    ";
    out += json_string(by_id[i]->first) + ": " + std::to_string(by_id[i]->second);
  }
  out += "\n  },\n  \"merges\": [";
  for (size_t i = 0; i < model.merges.size(); ++i) {
    out += i ? ",\n    " : "\n    ";
    out += json_string(model.merges[i].first + " " + model.merges[i].second);
  }
  out += model.merges.empty() ? "]}\n}\n" : "\n  ]}\n}\n";
  write_file_atomic(path, out);
}

void save_hf_tokenizer_files(const Tokenizer& tokenizer, const std::string& dir,
                             int64_t model_max_length) {
  std::error_code ec;
  fs::create_directories(dir, ec);
  SINKLAB_CHECK(fs::is_directory(dir, ec), IOError,
                dir << ": cannot create the folder for the tokenizer files (" << ec.message() << ")",
                "check the path and permissions");
  save_hf_tokenizer_json(tokenizer, (fs::path(dir) / "tokenizer.json").string());
  const ByteLevelBpeModel model = tokenizer.byte_level_bpe();
  // bos, eos and unk: <|endoftext|> where it is a special token, else none.
  std::string special_lines;
  if (const AddedToken* eot = end_of_text(model))
    for (const char* key : {"bos_token", "eos_token", "unk_token"})
      special_lines += std::string("  \"") + key + "\": " + json_string(eot->content) + ",\n";
  const std::string special =  // the lines without the last one's comma
      special_lines.empty() ? "{}\n"
                            : "{\n" + special_lines.substr(0, special_lines.size() - 2) + "\n}\n";
  write_file_atomic((fs::path(dir) / "special_tokens_map.json").string(), special);

  std::string config = "{\n  \"tokenizer_class\": \"PreTrainedTokenizerFast\",\n";
  config += "  \"clean_up_tokenization_spaces\": false,\n";
  if (model_max_length > 0)
    config += "  \"model_max_length\": " + std::to_string(model_max_length) + ",\n";
  config += special_lines;
  config += "  \"added_tokens_decoder\": {";
  for (size_t i = 0; i < model.added_tokens.size(); ++i) {
    const AddedToken& t = model.added_tokens[i];
    config += (i ? ",\n    \"" : "\n    \"") + std::to_string(t.id) + "\": {\"content\": " +
              json_string(t.content) +
              R"(, "lstrip": false, "normalized": false, "rstrip": false, "single_word": false, )"
              "\"special\": " + boolean(t.special) + "}";
  }
  config += model.added_tokens.empty() ? "}\n}\n" : "\n  }\n}\n";
  write_file_atomic((fs::path(dir) / "tokenizer_config.json").string(), config);
}

}  // namespace sinklab::train
