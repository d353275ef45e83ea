#include "train/data/prepare.h"

#include <algorithm>
#include <cmath>
#include <cstdio>
#include <filesystem>
#include <iomanip>
#include <sstream>
#include <unordered_map>

#include "core/error.h"
#include "train/data/shards.h"
#include "train/data/tokenizer.h"
#include "train/data/tokenizer_spec.h"
#include "train/io/read_file.h"
#include "train/phase_clock.h"

namespace sinklab::train {

namespace fs = std::filesystem;

namespace {

// Where the val tail starts: about (1 - val_fraction) of the way in, moved to the start of a
// line (the next one if there is one, else the previous one).
size_t val_cut(const std::string& text, double val_fraction) {
  const size_t n = text.size();
  const size_t val_bytes = static_cast<size_t>(std::llround(static_cast<double>(n) * val_fraction));
  if (val_bytes == 0) return n;
  const size_t nominal = n - std::min(val_bytes, n);
  if (nominal == 0) return 0;
  size_t pos = text.find('\n', nominal - 1);
  if (pos != std::string::npos && pos + 1 < n) return pos + 1;
  pos = text.rfind('\n', nominal - 1);
  if (pos != std::string::npos) return pos + 1;
  return nominal;
}

// Where the document starting at or after `pos` ends: after its blank line (an empty line, or
// one holding only "\r" in text with CRLF line ends) and any further line ends; the end of the
// text when none follows. A line of spaces or tabs is text: source code has them inside its
// functions.
size_t document_end(const std::string& text, size_t pos) {
  const size_t n = text.size();
  for (size_t nl = text.find('\n', pos); nl != std::string::npos; nl = text.find('\n', nl + 1)) {
    size_t next = nl + 1;
    if (next < n && text[next] == '\r') ++next;
    if (next < n && text[next] == '\n') {
      const size_t end = text.find_first_not_of("\r\n", next);
      return end == std::string::npos ? n : end;
    }
  }
  return n;
}

// The units of one input (their ends, in order): whole documents joined in order until a unit
// holds at least min_bytes, so the units tile the text.
std::vector<size_t> document_units(const std::string& text, size_t min_bytes) {
  std::vector<size_t> ends;  // (units) the end of each unit, the last one text.size()
  size_t unit_start = 0, pos = 0;
  while (pos < text.size()) {
    pos = document_end(text, pos);
    if (pos - unit_start >= min_bytes || pos == text.size()) {
      ends.push_back(pos);
      unit_start = pos;
    }
  }
  return ends;
}

// Unit i of a count is held out when floor((i + 1) f) > floor(i f): a share f of the units,
// spread evenly from the first to the last (a corpus sorted by date or topic is sampled across
// its whole range, not at its end). Of n units, floor(n f) are held out.
bool unit_held_out(size_t i, double f) {
  return std::floor(static_cast<double>(i + 1) * f) > std::floor(static_cast<double>(i) * f);
}

// The documents split of every input (train, val): each input that holds at least one unit's
// share on its own (floor(units f) >= 1) counts its units from 0, so a large input's split does
// not depend on the others; the inputs too small for that are counted as one input, in the
// listed order, so that many small files still hold out a share f of their units together.
void split_documents(const std::vector<std::string>& texts, double f, size_t min_bytes,
                     std::vector<std::string>& train, std::vector<std::string>& val) {
  size_t pooled = 0;  // the units of the small inputs so far
  train.assign(texts.size(), {});
  val.assign(texts.size(), {});
  for (size_t k = 0; k < texts.size(); ++k) {
    const std::string& text = texts[k];
    const std::vector<size_t> ends = document_units(text, min_bytes);
    const bool alone = std::floor(static_cast<double>(ends.size()) * f) >= 1;
    size_t start = 0;
    for (size_t i = 0; i < ends.size(); ++i) {
      const bool held_out = unit_held_out(alone ? i : pooled++, f);
      (held_out ? val[k] : train[k]).append(text, start, ends[i] - start);
      start = ends[i];
    }
  }
}

std::string shard_name(const std::string& split, size_t index) {
  char buf[32];
  std::snprintf(buf, sizeof buf, "_%06zu.bin", index);
  return split + buf;
}

// Is `name` "<split>_<digits>.bin" with index >= first? (stale shards of an earlier prepare)
bool is_stale_shard(const std::string& name, const std::string& split, size_t first) {
  const std::string prefix = split + "_";
  if (name.size() <= prefix.size() + 4 || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - 4, 4, ".bin") != 0)
    return false;
  const std::string digits = name.substr(prefix.size(), name.size() - prefix.size() - 4);
  if (digits.size() < 6 ||
      !std::all_of(digits.begin(), digits.end(), [](char c) { return c >= '0' && c <= '9'; }))
    return false;
  return std::stoull(digits) >= first;
}

// Writes tokens as <dir>/<split>_000000.bin, ... (shard_tokens each); removes older shards of the
// split beyond the new count so the loader's glob sees exactly this data. Returns the file count.
size_t write_split(const std::string& dir, const std::string& split,
                   const std::vector<int32_t>& tokens, int64_t shard_tokens, std::ostream& log) {
  const size_t per = static_cast<size_t>(shard_tokens);
  const size_t n_files = std::max<size_t>(1, (tokens.size() + per - 1) / per);
  for (size_t i = 0; i < n_files; ++i) {
    const size_t begin = std::min(tokens.size(), i * per);
    const size_t end = std::min(tokens.size(), begin + per);
    write_shard((fs::path(dir) / shard_name(split, i)).string(),
                std::vector<int32_t>(tokens.begin() + begin, tokens.begin() + end));
  }
  for (const std::string& path : list_files(dir, split + "_*.bin")) {
    if (is_stale_shard(fs::path(path).filename().string(), split, n_files)) {
      fs::remove(path);
      log << "  removed stale shard " << path << "\n";
    }
  }
  return n_files;
}

}  // namespace

double unigram_entropy(const std::vector<int32_t>& tokens) {
  if (tokens.empty()) return 0.0;
  std::unordered_map<int32_t, int64_t> counts;
  for (int32_t t : tokens) ++counts[t];
  std::vector<int64_t> c;
  c.reserve(counts.size());
  for (const auto& kv : counts) c.push_back(kv.second);
  std::sort(c.begin(), c.end());  // fixed summation order: the same result on every run
  const double n = static_cast<double>(tokens.size());
  double h = 0.0;
  for (int64_t k : c) {
    const double p = static_cast<double>(k) / n;
    h -= p * std::log(p);
  }
  return h;
}

void prepare_dataset(const RunConfig& config, std::ostream& log) {
  const PrepareSection& prep = config.prepare;
  const DataSection& data = config.data;
  const std::string origin = config.source_file.empty() ? "the config" : config.source_file;
  SINKLAB_CHECK(!prep.inputs.empty(), ConfigError,
                origin << ": prepare.inputs is empty: nothing to prepare",
                "list text files, e.g. prepare.inputs: [data/raw/moby_dick.txt] (fetch them with "
                "scripts/get_data.sh)");
  SINKLAB_CHECK(prep.tokenizer == "bpe" || is_named_tokenizer(prep.tokenizer), ConfigError,
                origin << ": prepare.tokenizer is \"" << prep.tokenizer
                       << "\", expected bpe, byte, gpt2 or hf:<path>",
                "set prepare.tokenizer: bpe");
  SINKLAB_CHECK(
      prep.tokenizer != "bpe" || prep.vocab_size >= 256, ConfigError,
      origin << ": prepare.vocab_size " << prep.vocab_size << " is below the 256 byte tokens",
      "use e.g. prepare.vocab_size: 512");
  SINKLAB_CHECK(prep.val_fraction >= 0.0 && prep.val_fraction < 1.0, ConfigError,
                origin << ": prepare.val_fraction " << prep.val_fraction << " is not in [0, 1)",
                "use e.g. prepare.val_fraction: 0.05");
  SINKLAB_CHECK(prep.shard_tokens > 0, ConfigError,
                origin << ": prepare.shard_tokens " << prep.shard_tokens << " must be positive",
                "use e.g. prepare.shard_tokens: 100000000");
  SINKLAB_CHECK(!is_named_tokenizer(data.tokenizer) || data.tokenizer == prep.tokenizer,
                ConfigError,
                origin << ": data.tokenizer is " << data.tokenizer << " but prepare.tokenizer is "
                       << prep.tokenizer
                       << ": training would not read the shards with the tokenizer that wrote them",
                "set both to " + data.tokenizer +
                    ", or leave data.tokenizer empty (data.dir/tokenizer.json)");

  // 1. Read and split every input.
  std::vector<std::string> texts;
  for (const std::string& path : prep.inputs)
    texts.push_back(read_file(path, "input file (prepare.inputs)",
                              "run scripts/get_data.sh to fetch the default corpora into data/raw/, "
                              "or list your own text files in prepare.inputs"));
  log << "prepare: " << prep.inputs.size() << " input file(s)\n";
  std::vector<std::string> train_parts, val_parts;  // (inputs) each input's two parts
  if (prep.val_split == ValSplit::Tail) {
    for (std::string& text : texts) {
      const size_t cut = val_cut(text, prep.val_fraction);
      val_parts.push_back(text.substr(cut));
      text.resize(cut);
      train_parts.push_back(std::move(text));
    }
  } else {  // whole documents spread across the inputs
    split_documents(texts, prep.val_fraction, static_cast<size_t>(prep.val_unit_bytes),
                    train_parts, val_parts);
  }
  texts.clear();
  size_t total_bytes = 0, train_bytes = 0, val_bytes = 0;
  for (size_t f = 0; f < prep.inputs.size(); ++f) {
    const size_t train_n = train_parts[f].size(), val_n = val_parts[f].size();
    log << "  " << prep.inputs[f] << ": " << train_n + val_n << " bytes -> train " << train_n
        << ", val " << val_n << " (" << choice_text(prep.val_split) << ")\n";
    total_bytes += train_n + val_n;
    train_bytes += train_n;
    val_bytes += val_n;
  }
  SINKLAB_CHECK(train_bytes > 0, ValueError,
                origin << ": the inputs hold no training text (" << total_bytes << " bytes)",
                "check prepare.inputs and prepare.val_fraction");
  // A share that rounds to no validation text leaves a folder training cannot evaluate on;
  // val_fraction 0 asks for that (a folder of training text only) and is only warned about below.
  SINKLAB_CHECK(val_bytes > 0 || prep.val_fraction == 0.0, ConfigError,
                origin << ": prepare.val_fraction " << prep.val_fraction
                       << " holds out no validation text from " << total_bytes << " bytes ("
                       << (prep.val_split == ValSplit::Tail
                               ? std::string("the tail of each input rounds to 0 bytes")
                               : "whole documents joined to units of at least "
                                 "prepare.val_unit_bytes = " +
                                     std::to_string(prep.val_unit_bytes) +
                                     " bytes: fewer than 1 / val_fraction units in all")
                       << ")",
                prep.val_split == ValSplit::Tail
                    ? "raise prepare.val_fraction, or add text"
                    : "raise prepare.val_fraction, lower prepare.val_unit_bytes, or add text "
                      "(documents end at blank lines)");

  // 2. Tokenizer, trained on the train parts only (val stays unseen).
  const auto t0 = Clock::now();
  std::unique_ptr<Tokenizer> tokenizer;
  if (prep.tokenizer == "bpe") {
    std::string corpus;
    corpus.reserve(train_bytes);
    for (const std::string& p : train_parts) corpus += p;
    tokenizer = train_bpe(corpus, prep.vocab_size);
  } else {  // byte, gpt2, hf:<path>
    tokenizer = open_tokenizer(prep.tokenizer, "prepare.tokenizer");
  }
  const double train_s = seconds_since(t0);

  // 3. Encode (before writing anything, so a failure leaves an earlier prepare intact), save the
  // tokenizer, write the shards.
  std::vector<int32_t> train_tokens, val_tokens;
  for (const std::string& p : train_parts) {
    const std::vector<int32_t> ids = tokenizer->encode(p);
    train_tokens.insert(train_tokens.end(), ids.begin(), ids.end());
  }
  for (const std::string& p : val_parts) {
    const std::vector<int32_t> ids = tokenizer->encode(p);
    val_tokens.insert(val_tokens.end(), ids.begin(), ids.end());
  }
  std::error_code ec;
  fs::create_directories(data.dir, ec);
  SINKLAB_CHECK(!ec && fs::is_directory(data.dir), IOError,
                data.dir << ": cannot create the data folder (" << ec.message() << ")",
                "check data.dir and permissions");
  // Saved where the trainer looks for it: data.tokenizer, default data.dir/tokenizer.json (gpt2
  // and hf: as a Hugging Face tokenizer.json, so the folder needs nothing else to train on).
  const bool default_path = data.tokenizer.empty() || is_named_tokenizer(data.tokenizer);
  const std::string tok_path =
      default_path ? (fs::path(data.dir) / "tokenizer.json").string() : data.tokenizer;
  if (fs::path(tok_path).has_parent_path())
    fs::create_directories(fs::path(tok_path).parent_path(), ec);
  tokenizer->save(tok_path);
  log << "tokenizer: " << tokenizer->kind() << ", vocab " << tokenizer->vocab_size();
  if (prep.tokenizer == "bpe") {
    std::ostringstream secs;
    secs << std::fixed << std::setprecision(1) << train_s;
    log << " (trained in " << secs.str() << " s)";
    if (tokenizer->vocab_size() < prep.vocab_size)
      log << "; only " << tokenizer->vocab_size() << " of " << prep.vocab_size
          << " requested: the text has no more pairs to merge";
  }
  log << " -> " << tok_path << "\n";

  const size_t train_files = write_split(data.dir, "train", train_tokens, prep.shard_tokens, log);
  const size_t val_files = write_split(data.dir, "val", val_tokens, prep.shard_tokens, log);
  auto ratio = [](size_t bytes, size_t tokens) {
    std::ostringstream s;
    s << std::fixed << std::setprecision(2)
      << (tokens ? static_cast<double>(bytes) / static_cast<double>(tokens) : 0.0);
    return s.str();
  };
  log << "train: " << train_tokens.size() << " tokens (" << ratio(train_bytes, train_tokens.size())
      << " bytes/token) in " << train_files << " shard(s) -> "
      << (fs::path(data.dir) / "train_*.bin").string() << "\n";
  log << "val: " << val_tokens.size() << " tokens in " << val_files << " shard(s) -> "
      << (fs::path(data.dir) / "val_*.bin").string() << "\n";
  // Training reads windows of block_size + 1 tokens from each split (data_loader.h): a folder
  // too small for the config's model is reported now, not at the first batch.
  const size_t window = static_cast<size_t>(config.model.block_size) + 1;
  auto warn_small = [&](const char* split, size_t tokens, const char* remedy) {
    if (tokens < window)
      log << "  warning: the " << split << " split holds " << tokens
          << " tokens, fewer than model.block_size + 1 = " << window
          << ": training on it fails at its first " << split << " batch (" << remedy << ")\n";
  };
  warn_small("train", train_tokens.size(), "add text, or use a smaller model.block_size");
  warn_small("val", val_tokens.size(),
             prep.val_fraction == 0.0
                 ? "prepare.val_fraction is 0: hold out a share, e.g. 0.05"
                 : "raise prepare.val_fraction, or use a smaller model.block_size");
  std::ostringstream h;
  h << std::fixed << std::setprecision(3) << unigram_entropy(train_tokens);
  log << "unigram entropy of the train tokens: " << h.str()
      << " nats (a model that ignores context; the trained loss must fall well below it)\n";
}

}  // namespace sinklab::train
