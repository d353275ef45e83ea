// Hugging Face tokenizer.json: sinklab's tokenizers written and read back (same ids), the
// features of other byte-level BPE files (Split + ByteLevel, merges as pairs or strings, added
// tokens, ignore_merges, add_prefix_space), and the errors for files sinklab cannot run.
#include <filesystem>
#include <fstream>
#include <sstream>

#include "core/philox.h"
#include "tests/helpers.h"
#include "tests/train/train_test_util.h"
#include "train/config.h"
#include "train/data/byte_level.h"
#include "train/data/gpt2_vocab.h"
#include "train/data/hf_tokenizer_json.h"
#include "train/data/json_file.h"
#include "train/io/json_text.h"
#include "train/data/prepare.h"
#include "train/data/shards.h"
#include "train/data/tokenizer.h"
#include "train/data/tokenizer_spec.h"

using namespace sinklab;
using namespace sinklab::train;
using sinklab::test::contains;
using sinklab::test::error_message;
using sinklab::test::read_bytes;
using sinklab::test::TempDir;
namespace fs = std::filesystem;

namespace {

// Strings where sinklab's chunk rules have their corners: runs of every byte class across the
// 128-byte cut, whitespace runs before letters, digits and symbols, bytes >= 0x80 and controls.
std::string chunk_corners(uint64_t stream, size_t pieces) {
  static const char* kRuns[] = {" ", "  ", "\n", " \n ", "\t", "a", "Zq", "1", "42", ".", "!?",
                                "\xc3\xa9", "\xff", "\x01", "\r\n", " x", "  7", "   ;"};
  constexpr size_t kN = sizeof(kRuns) / sizeof(kRuns[0]);
  std::string s;
  for (size_t i = 0; i < pieces; ++i) {
    const PhiloxBlock b = philox4x32_10(77, stream, i);
    const std::string run = kRuns[b.v[0] % kN];
    const size_t repeat = b.v[1] % 8 == 0 ? 60 + b.v[2] % 140 : 1 + b.v[2] % 3;  // long runs too
    for (size_t r = 0; r < repeat; ++r) s += run;
  }
  return s;
}

std::string corpus_text() {
  std::string s;
  for (int i = 0; i < 300; ++i)
    s += "the whale and the sea, " + std::to_string(1790 + i) + " caf\xc3\xa9s; Ahab's boat!!\n";
  return s;
}

// A byte-level tokenizer.json: byte b has id b, `extra` adds "text": id entries, and the other
// parts are JSON text.
std::string hf_json(const std::string& extra_vocab, const std::string& merges,
                    const std::string& pre_tokenizer, const std::string& added = "[]",
                    const std::string& model_extra = "") {
  std::string vocab;
  for (int b = 0; b < 256; ++b)
    vocab += (b ? ", " : "") + json_string(byte_level_encode(std::string(1, static_cast<char>(b)))) +
             ": " + std::to_string(b);
  if (!extra_vocab.empty()) vocab += ", " + extra_vocab;
  return R"({"version": "1.0", "truncation": null, "padding": null, "added_tokens": )" + added +
         R"(, "normalizer": null, "pre_tokenizer": )" + pre_tokenizer +
         R"(, "post_processor": {"type": "TemplateProcessing"}, "decoder": {"type": "ByteLevel"}, )"
         R"("model": {"type": "BPE", "dropout": null, )" + model_extra + R"("vocab": {)" +
         vocab + R"(}, "merges": )" + merges + "}}";
}

// `json` with its first `from` replaced by `to`.
std::string replaced(std::string json, const std::string& from, const std::string& to) {
  const size_t at = json.find(from);
  REQUIRE(at != std::string::npos);
  return json.replace(at, from.size(), to);
}

constexpr const char* kByteLevelGpt2 = R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": true})";

}  // namespace

TEST_CASE("hf tokenizer.json: sinklab's byte and bpe written and read back give the same ids",
          "[data]") {
  SINKLAB_REQUIRE_PCRE2();
  TempDir dir;
  const auto bpe = train_bpe(corpus_text() + chunk_corners(1, 400), 420);
  const auto byte = make_byte_tokenizer();
  for (const Tokenizer* tok : {byte.get(), bpe.get()}) {
    INFO(tok->kind());
    const std::string path = dir.file(tok->kind() + ".json");
    save_hf_tokenizer_json(*tok, path);
    REQUIRE_FALSE(fs::exists(path + ".tmp"));
    const auto back = load_hf_tokenizer(path);
    REQUIRE(back->kind() == "hf");
    REQUIRE(back->vocab_size() == tok->vocab_size());
    REQUIRE(load_tokenizer(path)->kind() == "hf");  // prepare's files: either format
    std::vector<std::string> texts = {corpus_text(), "", " ", std::string(300, ' ') + "x",
                                      std::string(129, 'a'), " " + std::string(127, 'b') + "c",
                                      std::string(256, '7'), std::string(260, '\n') + "  z"};
    for (uint64_t s = 0; s < 30; ++s) texts.push_back(chunk_corners(100 + s, 60));
    std::string random(4000, '\0');
    for (size_t i = 0; i < random.size(); ++i)
      random[i] = static_cast<char>(philox4x32_10(5, 5, i).v[0] & 0xff);
    texts.push_back(random);
    for (const std::string& t : texts) {
      const std::vector<int32_t> ids = tok->encode(t);
      REQUIRE(back->encode(t) == ids);
      REQUIRE(back->decode(ids) == t);
    }
  }
  // The bpe's pieces are sinklab's chunks: its file says so, over byte-level characters.
  const std::string text = read_bytes(dir.file("bpe.json"));
  REQUIRE(contains(text, R"("type": "Split", "pattern": {"Regex": ")"));
  REQUIRE(contains(text, R"("behavior": "Isolated")"));
  REQUIRE(contains(text, R"({"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": false})"));
  REQUIRE(contains(text, json_string(byte_level_encode(bpe->decode({300}))) + ": 300,\n"));
}

TEST_CASE("hf tokenizer files: tokenizer_config.json and special tokens", "[data]") {
  SINKLAB_REQUIRE_PCRE2();
  TempDir dir;
  const auto bpe = train_bpe(corpus_text(), 300);
  save_hf_tokenizer_files(*bpe, dir.file("hf"), 128);
  REQUIRE(fs::exists(dir.file("hf/tokenizer.json")));
  REQUIRE(read_bytes(dir.file("hf/special_tokens_map.json")) == "{}\n");  // bpe has none
  const YAML::Node config = parse_json(read_bytes(dir.file("hf/tokenizer_config.json")));
  REQUIRE(config["tokenizer_class"].as<std::string>() == "PreTrainedTokenizerFast");
  REQUIRE(config["clean_up_tokenization_spaces"].as<std::string>() == "false");
  REQUIRE(config["model_max_length"].as<int>() == 128);
  REQUIRE_FALSE(config["eos_token"]);
  REQUIRE(load_hf_tokenizer(dir.file("hf"))->encode("the whale") == bpe->encode("the whale"));
}

TEST_CASE("hf tokenizer.json: Split + ByteLevel, merge forms, added tokens, options", "[data]") {
  SINKLAB_REQUIRE_PCRE2();
  TempDir dir;
  const std::string vocab = R"("ab": 256, "abc": 257, "\u0120a": 258, "xyz": 260)";
  const std::string split_first =
      R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\s+|\\S+"}, )"
      R"("behavior": "Isolated", "invert": false}, {"type": "ByteLevel", "add_prefix_space": false, )"
      R"("trim_offsets": true, "use_regex": false}]})";
  const std::string added =
      R"([{"id": 300, "content": "<sep>", "special": false, "lstrip": false, "rstrip": false},)"
      R"( {"id": 301, "content": "<|end|>", "special": true, "lstrip": true}])";
  // Merges as strings and as pairs: the same tokenizer.
  const auto strings = load_hf_tokenizer(dir.write(
      "strings.json", hf_json(vocab, R"(["a b", "ab c", "\u0120 a"])", split_first, added)));
  const auto pairs = load_hf_tokenizer(dir.write(
      "pairs.json", hf_json(vocab, R"([["a", "b"], ["ab", "c"], ["\u0120", "a"]])", split_first, added)));
  // "<sep>" (not special) is cut out of the text; "<|end|>" (special) is text.
  const std::vector<int32_t> expected = {257, 32, 256, 300, 120, 60, 124, 101, 110, 100, 124, 62};
  REQUIRE(strings->encode("abc ab<sep>x<|end|>") == expected);
  REQUIRE(pairs->encode("abc ab<sep>x<|end|>") == expected);
  REQUIRE(strings->decode({257, 300, 301}) == "abc<sep><|end|>");
  REQUIRE(strings->vocab_size() == 302);
  REQUIRE_THROWS_AS(strings->decode({259}), ValueError);  // an id without a token
  // GPT-2's pattern keeps " ab" whole: (a, b) outranks (Ġ, a), so " ab" is Ġ + ab.
  const auto gpt2_split =
      load_hf_tokenizer(dir.write("gpt2.json", hf_json(vocab, R"(["a b", "ab c", "\u0120 a"])", kByteLevelGpt2)));
  REQUIRE(gpt2_split->encode("abc ab a") == std::vector<int32_t>{257, 32, 256, 258});
  // add_prefix_space puts a space before the text.
  const auto prefixed = load_hf_tokenizer(dir.write(
      "prefix.json", hf_json(vocab, R"(["\u0120 a"])",
                             R"({"type": "ByteLevel", "add_prefix_space": true, "use_regex": true})")));
  REQUIRE(prefixed->encode("a") == std::vector<int32_t>{258});
  // ignore_merges: a piece that is a vocab token as a whole is that token.
  const auto whole = load_hf_tokenizer(dir.write(
      "whole.json", hf_json(vocab, "[]", kByteLevelGpt2, "[]", R"("ignore_merges": true, )")));
  REQUIRE(whole->encode("xyz xy") == std::vector<int32_t>{260, 32, 120, 121});
  REQUIRE(gpt2_split->encode("xyz") == std::vector<int32_t>{120, 121, 122});
  // A String pattern splits at the literal string; JSON surrogate pairs are characters.
  const auto literal = load_hf_tokenizer(dir.write(
      "literal.json",
      hf_json(vocab, R"(["a b"])",
              R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"String": "."}, )"
              R"("behavior": "Isolated"}, {"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})",
              R"([{"id": 400, "content": "\ud83d\ude00", "special": false}])")));
  REQUIRE(literal->encode("ab.ab") == std::vector<int32_t>{256, 46, 256});
  REQUIRE(literal->encode("a\xf0\x9f\x98\x80") == std::vector<int32_t>{97, 400});
  // Written back and read again: the same tokenizer.
  save_hf_tokenizer_json(*strings, dir.file("again.json"));
  REQUIRE(load_hf_tokenizer(dir.file("again.json"))->encode("abc ab<sep>x<|end|>") == expected);
}

TEST_CASE("hf tokenizer.json: what sinklab cannot run is refused, naming the file and field",
          "[data]") {
  SINKLAB_REQUIRE_PCRE2();
  TempDir dir;
  const std::string vocab = R"("ab": 256)";
  const std::string ok_merges = R"(["a b"])";
  const std::string split_then_bytes =
      R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "%s"}, )"
      R"({"type": "ByteLevel", "add_prefix_space": false, "use_regex": false}]})";
  auto behavior = [&](const std::string& b) {
    std::string s = split_then_bytes;
    return s.replace(s.find("%s"), 2, b);
  };
  const std::string valid = hf_json(vocab, ok_merges, kByteLevelGpt2);
  const std::vector<std::pair<std::string, std::vector<std::string>>> cases = {
      {valid, {}},  // loads
      {replaced(valid, "\"BPE\"", "\"WordPiece\""), {"model.type", "WordPiece"}},
      {replaced(valid, "\"normalizer\": null", R"("normalizer": {"type": "NFC"})"),
       {"normalizer", "NFC"}},
      {hf_json(vocab, ok_merges, R"({"type": "Metaspace", "replacement": "_"})"),
       {"pre_tokenizer.type", "Metaspace"}},
      {hf_json(vocab, ok_merges, behavior("Removed")),
       {"pre_tokenizer.pretokenizers[0].behavior", "Removed"}},
      {hf_json(vocab, ok_merges, R"({"type": "Sequence", "pretokenizers": [)" + std::string(kByteLevelGpt2) + ", " + kByteLevelGpt2 + "]}"),
       {"2 ByteLevel steps"}},
      {hf_json(vocab, ok_merges, R"({"type": "ByteLevel"})"),
       {"pre_tokenizer.add_prefix_space is missing"}},
      {hf_json(vocab, ok_merges, R"({"type": "Split", "pattern": {"Regex": "\\w+"}, "behavior": "Isolated"})"),
       {"0 ByteLevel steps"}},
      {hf_json(vocab, ok_merges, R"({"type": "Sequence", "pretokenizers": [{"type": "Split", "pattern": {"Regex": "(x"}, "behavior": "Isolated"}, )" + std::string(kByteLevelGpt2) + "]}"),
       {"pre_tokenizer step 0", "does not compile"}},
      {hf_json(vocab, ok_merges, kByteLevelGpt2, "[]", R"("byte_fallback": true, )"),
       {"model.byte_fallback"}},
      {hf_json(vocab, ok_merges, kByteLevelGpt2, "[]", R"("continuing_subword_prefix": "##", )"),
       {"model.continuing_subword_prefix", "##"}},
      {replaced(valid, "\"dropout\": null", "\"dropout\": 0.1"), {"model.dropout", "0.1"}},
      {hf_json(vocab, R"(["a zz"])", kByteLevelGpt2), {"model.merges[0]", "\"zz\" is not in model.vocab"}},
      {hf_json(vocab, R"(["ab"])", kByteLevelGpt2), {"model.merges[0]", "one space"}},
      {hf_json(vocab, R"(["b a"])", kByteLevelGpt2), {"model.merges[0]", "\"ba\" is not in model.vocab"}},
      {replaced(valid, "\"\xc4\x80\": 0, ", ""), {"lacks the byte-level character", "byte 0"}},
      {replaced(valid, "\"truncation\": null", R"("truncation": {"max_length": 8})"),
       {"truncation"}},
      {hf_json(vocab, ok_merges, kByteLevelGpt2, R"([{"id": 300, "content": "x", "special": false, "lstrip": true}])"),
       {"added_tokens[0].lstrip"}},
      {hf_json(vocab, ok_merges, kByteLevelGpt2, R"([{"id": 97, "content": "<x>", "special": true}])"),
       {"added token \"<x>\" has the id 97"}},
      {hf_json(R"("ab": 97)", "[]", kByteLevelGpt2), {"gives the id 97 to two tokens"}},
      // One stray id far past the others (the fuzzer's: a table of 77M entries for 257 tokens).
      {hf_json(R"("ab": 77777741)", ok_merges, kByteLevelGpt2),
       {"token ids reach 77777741 for 257 tokens", "ids unused"}},
      {hf_json(vocab, ok_merges, kByteLevelGpt2, R"([{"id": 2000000, "content": "<x>", "special": true}])"),
       {"token ids reach 2000000 for 258 tokens"}},
      {R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "decoder": {"type": "WordPiece"}})",
       {"decoder.type", "WordPiece"}},
      {R"({"model": {"type": "BPE", "vocab": {}, "merges": []}, "decoder": null})", {"decoder"}},
      {R"({"model": {"type": "BPE", "vocab": [1, 2], "merges": []}})", {"model.vocab", "not an object"}},
      {R"({"model": {"type": "BPE", "vocab": {"a": 0}, "merges": [], "dropout": "x"}})", {"wrong type"}},
      {R"({"model": {"type": "BPE", "vocab": {"a": "x"}}})", {"model.vocab[\"a\"]", "integer"}},
      {R"({"model": {"ty)", {"not valid JSON"}},
      {R"({"model": {"type": "BPE", "vocab": {"\ud800": 0}}})", {"not valid JSON"}},  // a lone surrogate
  };
  for (size_t i = 0; i < cases.size(); ++i) {
    const auto& [json, mentions] = cases[i];
    const std::string path = dir.write("t" + std::to_string(i) + ".json", json);
    INFO("case " << i << ": " << json.substr(0, 200));
    if (mentions.empty()) {
      REQUIRE_NOTHROW(load_hf_tokenizer(path));
      continue;
    }
    const std::string msg = error_message<IOError>([&] { load_hf_tokenizer(path); });
    REQUIRE(contains(msg, path));
    for (const std::string& m : mentions) {
      INFO(msg);
      REQUIRE(contains(msg, m));
    }
  }
  // Files that are not there, or are no tokenizer of either kind.
  REQUIRE(contains(error_message<IOError>([&] { load_hf_tokenizer(dir.file("none")); }),
                   dir.file("none")));
  fs::create_directories(dir.file("empty"));
  REQUIRE(contains(error_message<IOError>([&] { load_hf_tokenizer(dir.file("empty")); }),
                   dir.file("empty/tokenizer.json")));
  const std::string neither = dir.write("neither.json", R"({"x": 1})");
  REQUIRE(contains(error_message<IOError>([&] { load_tokenizer(neither); }),
                   "nor a Hugging Face tokenizer.json"));
  REQUIRE_THROWS_AS(open_tokenizer("hf:"), ConfigError);
  REQUIRE(contains(test::caught<IOError>([&] { open_tokenizer(dir.file("nope.json")); }).hint(),
                   "byte, gpt2 or hf:"));
}

TEST_CASE("hf tokenizer.json: a bpe with two ids for the same bytes cannot be written", "[data]") {
  TempDir dir;
  // ab, bc, then abc twice: (ab, c) and (a, bc).
  const std::string path = dir.write(
      "dup.json",
      R"({"format": "sinklab-tokenizer", "version": 1, "kind": "bpe", "vocab_size": 260, )"
      R"("merges": [[97, 98], [98, 99], [256, 99], [97, 257]]})");
  const auto tok = load_tokenizer(path);
  const std::string msg =
      error_message<ValueError>([&] { save_hf_tokenizer_json(*tok, dir.file("out.json")); });
  REQUIRE(contains(msg, "tokens 258 and 259"));
  REQUIRE_FALSE(fs::exists(dir.file("out.json")));
}

TEST_CASE("prepare with hf:<tokenizer.json> writes shards of its ids and the file beside them",
          "[data]") {
  SINKLAB_REQUIRE_PCRE2();
  TempDir dir;
  const std::string text = corpus_text();
  const auto bpe = train_bpe(text, 330);
  save_hf_tokenizer_json(*bpe, dir.file("bpe_tokenizer.json"));
  std::ofstream(dir.file("in.txt"), std::ios::binary) << text;
  RunConfig config;
  config.prepare.inputs = {dir.file("in.txt")};
  config.prepare.tokenizer = std::string(kHfPrefix) + dir.file("bpe_tokenizer.json");
  config.prepare.val_fraction = 0;
  config.data.dir = dir.file("out");
  std::ostringstream log;
  prepare_dataset(config, log);
  INFO(log.str());
  REQUIRE(contains(log.str(), "tokenizer: hf, vocab 330"));
  REQUIRE(read_shard(dir.file("out/train_000000.bin"), false) == bpe->encode(text));
  const auto saved = open_data_tokenizer(config.data);  // what training decodes samples with
  REQUIRE(saved->kind() == "hf");
  REQUIRE(saved->encode(text) == bpe->encode(text));
  config.data.dir = dir.file("elsewhere");
  REQUIRE(contains(error_message<IOError>([&] { open_data_tokenizer(config.data); }),
                   dir.file("elsewhere/tokenizer.json") + " does not exist (data.tokenizer)"));
  // data.tokenizer naming another tokenizer than prepare's is refused.
  config.data.tokenizer = "byte";
  REQUIRE(contains(error_message<ConfigError>([&] { prepare_dataset(config, log); }),
                   "data.tokenizer is byte but prepare.tokenizer is hf:"));
}

TEST_CASE("gpt2: written as tokenizer.json and read back, with its special tokens",
          "[data][gpt2]") {
  SINKLAB_REQUIRE_GPT2_VOCAB();
  TempDir dir;
  const auto gpt2 = open_tokenizer("gpt2");
  save_hf_tokenizer_files(*gpt2, dir.file("hf"), 1024);
  const auto back = open_tokenizer("hf:" + dir.file("hf"));
  REQUIRE(back->vocab_size() == 50257);
  const std::string torture = read_bytes(SINKLAB_SOURCE_DIR "/tests/data/tokenizer_text.txt");
  REQUIRE(back->encode(torture) == gpt2->encode(torture));
  REQUIRE(back->encode("<|endoftext|>") == gpt2->encode("<|endoftext|>"));  // text, not 50256
  REQUIRE(back->decode({50256}) == "<|endoftext|>");
  const std::string json = read_bytes(dir.file("hf/tokenizer.json"));
  REQUIRE(contains(json, R"("pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true})"));
  REQUIRE(contains(json, R"({"id": 50256, "content": "<|endoftext|>")"));
  const YAML::Node config = parse_json(read_bytes(dir.file("hf/tokenizer_config.json")));
  for (const char* key : {"bos_token", "eos_token", "unk_token"})
    REQUIRE(config[key].as<std::string>() == "<|endoftext|>");
  REQUIRE(config["model_max_length"].as<int>() == 1024);
  REQUIRE(config["added_tokens_decoder"]["50256"]["special"].as<std::string>() == "true");
  const YAML::Node special = parse_json(read_bytes(dir.file("hf/special_tokens_map.json")));
  REQUIRE(special["eos_token"].as<std::string>() == "<|endoftext|>");
}

TEST_CASE("tokenizer.json written and read back: sinklab's ids on every shipped corpus",
          "[data][gpt2]") {
  SINKLAB_REQUIRE_GPT2_VOCAB();
  SINKLAB_REQUIRE_CORPORA();
  TempDir dir;
  const std::string moby = read_bytes(test::corpora_dir() + "/moby_dick.txt");
  const std::string sotu = read_bytes(test::corpora_dir() + "/sotu.txt");
  REQUIRE(moby.size() > 1000000);
  REQUIRE(sotu.size() > 10000000);
  std::vector<std::unique_ptr<Tokenizer>> tokenizers;
  tokenizers.push_back(make_byte_tokenizer());
  tokenizers.push_back(train_bpe(moby, 4096));
  tokenizers.push_back(open_tokenizer("gpt2"));
  for (const auto& tok : tokenizers) {
    INFO(tok->kind());
    const std::string path = dir.file(tok->kind() + ".json");
    save_hf_tokenizer_json(*tok, path);
    const auto back = load_hf_tokenizer(path);
    for (const std::string* text : {&moby, &sotu}) {
      const std::vector<int32_t> ids = tok->encode(*text);
      REQUIRE(back->encode(*text) == ids);
      REQUIRE(back->decode(ids) == *text);
    }
  }
}

TEST_CASE("parse_json: a \\u escape cut off at the end of the text is a YAML error, not "
          "std::out_of_range (found by the tokenizer fuzzer)", "[tokenizer]") {
  for (const char* text : {"{\"a\": \"\\u", "{\"a\": \"\\ud83d", "{\"a\": \"\\ud83d\\",
                           "{\"a\": \"\\ud83d\\u", "{\"a\": \"\\ud83d\\ude0"}) {
    INFO(text);
    try {
      (void)parse_json(text);
    } catch (const YAML::Exception&) {  // unterminated: yaml-cpp's own error
    }
  }
  // A whole pair still becomes the character's UTF-8.
  REQUIRE(parse_json("{\"a\": \"\\ud83d\\ude00\"}")["a"].as<std::string>() == "\xf0\x9f\x98\x80");
}
