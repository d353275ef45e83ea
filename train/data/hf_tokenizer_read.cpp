// tokenizer.json -> ByteLevelBpeModel -> tokenizer (train/data/hf_tokenizer_json.h lists what is
// accepted).
#include <filesystem>
#include <sstream>

#include "core/error.h"
#include "train/data/hf_tokenizer_json.h"
#include "train/data/json_file.h"
#include "train/io/read_file.h"

namespace sinklab::train {

namespace {

constexpr const char* kHint =
    "sinklab reads byte-level BPE tokenizer.json files only (GPT-2, Llama 3, sinklab's own "
    "export): use one of those, or prepare.tokenizer: bpe";

// Field access with errors naming the file and the dotted field.
class Reader {
 public:
  explicit Reader(std::string path) : path_(std::move(path)) {}

  [[noreturn]] void refuse(const std::string& field, const std::string& what) const {
    SINKLAB_FAIL(IOError, path_ << ": " << field << " " << what << ": not supported", kHint);
  }
  [[noreturn]] void malformed(const std::string& field, const std::string& what) const {
    SINKLAB_FAIL(IOError, path_ << ": " << field << " " << what,
                 "the file is not a valid tokenizer.json; fetch or write it again");
  }

  static bool absent(const YAML::Node& n) { return !n || n.IsNull(); }

  std::string string(const YAML::Node& n, const std::string& field) const {
    if (!n || !n.IsScalar()) malformed(field, "is not a string");
    return n.Scalar();
  }
  bool boolean(const YAML::Node& n, const std::string& field, bool fallback) const {
    if (absent(n)) return fallback;
    if (!n.IsScalar() || (n.Scalar() != "true" && n.Scalar() != "false"))
      malformed(field, "is not true or false");
    return n.Scalar() == "true";
  }
  int32_t id(const YAML::Node& n, const std::string& field) const {
    int64_t v = -1;
    try {
      v = n.as<int64_t>();
    } catch (const YAML::Exception&) {
      malformed(field, "is not an integer id");
    }
    if (v < 0 || v > INT32_MAX) malformed(field, "is the id " + std::to_string(v));
    return static_cast<int32_t>(v);
  }
  // `field` must be null, absent or one of `allowed` (scalar text).
  void require(const YAML::Node& n, const std::string& field,
               std::initializer_list<const char*> allowed) const {
    if (absent(n)) return;
    if (n.IsScalar())
      for (const char* a : allowed)
        if (n.Scalar() == a) return;
    std::ostringstream s;
    s << "is " << (n.IsScalar() ? "\"" + n.Scalar() + "\"" : std::string("not a plain value"));
    refuse(field, s.str());
  }
  std::string type_of(const YAML::Node& n, const std::string& field) const {
    if (!n.IsMap()) malformed(field, "is not an object");
    return string(n["type"], field + ".type");
  }

 private:
  std::string path_;
};

PreTokenizerStep read_step(const Reader& r, const YAML::Node& n, const std::string& field) {
  PreTokenizerStep step;
  const std::string type = r.type_of(n, field);
  if (type == "ByteLevel") {
    step.type = PreTokenizerStep::Type::ByteLevel;
    // Required, as in tokenizers (only use_regex has a default there).
    if (Reader::absent(n["add_prefix_space"])) r.malformed(field + ".add_prefix_space", "is missing");
    step.add_prefix_space = r.boolean(n["add_prefix_space"], field + ".add_prefix_space", false);
    step.use_regex = r.boolean(n["use_regex"], field + ".use_regex", true);
    return step;
  }
  if (type != "Split") r.refuse(field + ".type", "is \"" + type + "\" (sinklab runs ByteLevel and Split)");
  step.type = PreTokenizerStep::Type::Split;
  const YAML::Node pattern = n["pattern"];
  if (!pattern || !pattern.IsMap()) r.malformed(field + ".pattern", "is not an object");
  if (pattern["Regex"]) {
    step.pattern = r.string(pattern["Regex"], field + ".pattern.Regex");
  } else if (pattern["String"]) {
    step.pattern = r.string(pattern["String"], field + ".pattern.String");
    step.literal = true;
  } else {
    r.malformed(field + ".pattern", "has neither Regex nor String");
  }
  if (Reader::absent(n["behavior"])) r.malformed(field + ".behavior", "is missing");
  r.require(n["behavior"], field + ".behavior", {"Isolated"});
  if (r.boolean(n["invert"], field + ".invert", false)) r.refuse(field + ".invert", "is true");
  return step;
}

ByteLevelBpeModel read_model(const YAML::Node& root, const Reader& r) {
  ByteLevelBpeModel model;
  // --- model
  const YAML::Node m = root["model"];
  const std::string type = r.type_of(m, "model");
  if (type != "BPE") r.refuse("model.type", "is \"" + type + "\" (sinklab runs BPE)");
  if (!Reader::absent(m["dropout"]) && m["dropout"].as<double>() != 0.0)
    r.refuse("model.dropout", "is " + m["dropout"].Scalar());
  r.require(m["continuing_subword_prefix"], "model.continuing_subword_prefix", {""});
  r.require(m["end_of_word_suffix"], "model.end_of_word_suffix", {""});
  if (r.boolean(m["byte_fallback"], "model.byte_fallback", false))
    r.refuse("model.byte_fallback", "is true");
  model.ignore_merges = r.boolean(m["ignore_merges"], "model.ignore_merges", false);
  const YAML::Node vocab = m["vocab"];
  if (!vocab || !vocab.IsMap()) r.malformed("model.vocab", "is not an object");
  model.vocab.reserve(vocab.size());
  for (auto it = vocab.begin(); it != vocab.end(); ++it) {
    const std::string text = it->first.Scalar();
    model.vocab.emplace_back(text, r.id(it->second, "model.vocab[\"" + text + "\"]"));
  }
  const YAML::Node merges = m["merges"];
  if (!merges || !merges.IsSequence()) r.malformed("model.merges", "is not a list");
  model.merges.reserve(merges.size());
  size_t i = 0;
  for (const YAML::Node& e : merges) {
    const std::string field = "model.merges[" + std::to_string(i++) + "]";
    if (e.IsSequence() && e.size() == 2) {
      model.merges.emplace_back(r.string(e[0], field), r.string(e[1], field));
      continue;
    }
    const std::string text = r.string(e, field);
    const size_t space = text.find(' ');
    if (space == std::string::npos || text.find(' ', space + 1) != std::string::npos)
      r.malformed(field, "\"" + text + "\" is not two tokens separated by one space");
    model.merges.emplace_back(text.substr(0, space), text.substr(space + 1));
  }
  // --- pipeline around the model
  if (!Reader::absent(root["normalizer"]))
    r.refuse("normalizer", "is " + r.type_of(root["normalizer"], "normalizer"));
  for (const char* key : {"truncation", "padding"})
    if (!Reader::absent(root[key])) r.refuse(key, "is set");
  const YAML::Node decoder = root["decoder"];
  if (Reader::absent(decoder)) r.refuse("decoder", "is null (sinklab decodes byte-level tokens)");
  if (const std::string t = r.type_of(decoder, "decoder"); t != "ByteLevel")
    r.refuse("decoder.type", "is \"" + t + "\" (sinklab decodes as ByteLevel)");
  const YAML::Node pre = root["pre_tokenizer"];
  if (Reader::absent(pre)) r.refuse("pre_tokenizer", "is null (a byte-level BPE needs ByteLevel)");
  if (r.type_of(pre, "pre_tokenizer") == "Sequence") {
    const YAML::Node list = pre["pretokenizers"];
    if (!list || !list.IsSequence()) r.malformed("pre_tokenizer.pretokenizers", "is not a list");
    size_t i = 0;
    for (const YAML::Node& step : list)
      model.pre_tokenizer.push_back(
          read_step(r, step, "pre_tokenizer.pretokenizers[" + std::to_string(i++) + "]"));
  } else {
    model.pre_tokenizer.push_back(read_step(r, pre, "pre_tokenizer"));
  }
  // --- added tokens
  const YAML::Node added = root["added_tokens"];
  if (!Reader::absent(added)) {
    if (!added.IsSequence()) r.malformed("added_tokens", "is not a list");
    size_t i = 0;
    for (const YAML::Node& entry : added) {
      const std::string field = "added_tokens[" + std::to_string(i++) + "]";
      if (!entry.IsMap()) r.malformed(field, "is not an object");
      AddedToken t;
      t.id = r.id(entry["id"], field + ".id");
      t.content = r.string(entry["content"], field + ".content");
      t.special = r.boolean(entry["special"], field + ".special", false);
      if (!t.special)
        for (const char* flag : {"lstrip", "rstrip", "single_word"})
          if (r.boolean(entry[flag], field + "." + flag, false))
            r.refuse(field + "." + flag, "is true for the non-special token \"" + t.content + "\"");
      model.added_tokens.push_back(std::move(t));
    }
  }
  return model;
}

}  // namespace

std::unique_ptr<Tokenizer> hf_tokenizer_from_json(const YAML::Node& root, const std::string& path) {
  const Reader r(path);
  if (!root.IsMap()) r.malformed("the document", "is not a JSON object");
  try {
    return make_byte_level_bpe_tokenizer(read_model(root, r), "hf", path);
  } catch (const YAML::Exception& e) {
    r.malformed("a field", std::string("has the wrong type (") + e.what() + ")");
  }
}

std::unique_ptr<Tokenizer> load_hf_tokenizer(const std::string& path) {
  std::error_code ec;
  const std::string file = std::filesystem::is_directory(path, ec)
                               ? (std::filesystem::path(path) / "tokenizer.json").string()
                               : path;
  const std::string text =
      read_file(file, "tokenizer.json",
                "give hf:<path> a Hugging Face tokenizer.json, or the folder that holds one");
  YAML::Node root;
  try {
    root = parse_json(text);
  } catch (const YAML::Exception& e) {
    SINKLAB_FAIL(IOError, file << ": not valid JSON (" << e.what() << ")",
                 "the file is damaged: fetch or write it again");
  }
  return hf_tokenizer_from_json(root, file);
}

}  // namespace sinklab::train
