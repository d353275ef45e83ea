// The data layer: byte and BPE tokenizers, token shards (llm.c layout), the random-window loader,
// and `prepare` (text files -> tokenizer + shards).
#include <unistd.h>
#include <yaml-cpp/yaml.h>

#include <atomic>
#include <cctype>
#include <cmath>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>
#include <sstream>

#include "core/philox.h"
#include "tests/helpers.h"
#include "tests/op_checks.h"
#include "train/config.h"
#include "train/data/data_loader.h"
#include "tests/train/train_test_util.h"
#include "train/data/prepare.h"
#include "train/data/shards.h"
#include "train/data/tokenizer.h"
#include "train/data/tokenizer_spec.h"

using namespace sinklab;
using sinklab::test::contains;
using namespace sinklab::train;
using test::iota_tokens;
using test::read_bytes;
using test::ints;
using test::TempDir;
using test::error_message;
namespace fs = std::filesystem;

namespace {


void write_bytes(const std::string& path, const std::string& bytes) {
  std::ofstream out(path, std::ios::binary | std::ios::trunc);
  out.write(bytes.data(), static_cast<std::streamsize>(bytes.size()));
}



std::string random_bytes(size_t n, uint64_t stream) {
  std::string s(n, '\0');
  for (size_t i = 0; i < n; ++i) s[i] = static_cast<char>(philox4x32_10(7, stream, i).v[0] & 0xff);
  return s;
}

// English-like text: Zipf-distributed words, punctuation, numbers, newlines and some UTF-8.
std::string synthetic_corpus(size_t n_words, uint64_t stream) {
  static const char* kWords[] = {"the",     "whale", "of",    "and",     "a",      "to",
                                 "in",      "ship",  "sea",   "that",    "his",    "captain",
                                 "Ahab",    "white", "boat",  "harpoon", "naïve",  "café",
                                 "water",   "deep",  "old",   "man",     "voyage", "Queequeg",
                                 "Ishmael", "oil",   "night", "storm"};
  constexpr size_t kN = sizeof(kWords) / sizeof(kWords[0]);
  std::string s;
  for (size_t i = 0; i < n_words; ++i) {
    const PhiloxBlock b = philox4x32_10(11, stream, i);
    const double u = (b.v[0] >> 8) * (1.0 / 16777216.0);
    const size_t w = static_cast<size_t>(std::pow(u, 3.0) * kN);  // small indices most often
    if (i % 11 == 0 && i)
      s += (b.v[1] % 3 == 0) ? ".\n" : ", ";
    else if (i)
      s += ' ';
    s += kWords[std::min(w, kN - 1)];
    if (b.v[2] % 97 == 0) s += " " + std::to_string(1790 + b.v[3] % 230);
    if (b.v[2] % 89 == 0) s += " \xe2\x80\x9cquoted\xe2\x80\x9d";  // “quoted”
  }
  return s;
}

std::vector<std::pair<int64_t, int64_t>> saved_merges(const Tokenizer& tok, const TempDir& dir) {
  const std::string path = dir.file("merges_probe.json");
  tok.save(path);
  YAML::Node root = YAML::LoadFile(path);
  std::vector<std::pair<int64_t, int64_t>> merges;
  for (const auto& m : root["merges"]) merges.emplace_back(m[0].as<int64_t>(), m[1].as<int64_t>());
  return merges;
}

}  // namespace

// ------------------------------------------------------------------------------------ tokenizers

TEST_CASE("byte tokenizer round-trips any bytes", "[data]") {
  auto tok = make_byte_tokenizer();
  REQUIRE(tok->kind() == "byte");
  REQUIRE(tok->vocab_size() == 256);
  const std::string s = random_bytes(3000, 1);
  const std::vector<int32_t> ids = tok->encode(s);
  REQUIRE(ids.size() == s.size());
  REQUIRE(tok->decode(ids) == s);
  REQUIRE(tok->encode("A") == std::vector<int32_t>{65});
  REQUIRE_THROWS_AS(tok->decode({256}), ValueError);
}

TEST_CASE("bpe round-trips text, UTF-8 and random bytes", "[data]") {
  const std::string corpus = synthetic_corpus(6000, 1);
  auto tok = train_bpe(corpus, 400);
  REQUIRE(tok->kind() == "bpe");
  REQUIRE(tok->decode(tok->encode(corpus)) == corpus);
  REQUIRE(tok->encode(corpus).size() < corpus.size() / 2);  // it compresses
  const std::vector<std::string> samples = {
      "",
      " ",
      "a",
      "   leading and trailing spaces   ",
      "tabs\tand\r\nCRLF\n\n\n  indented\n",
      "naïve café — “quotes” 日本語テキスト 😀 ",
      "numbers 1790 and 2018, 3.14159; x=42!!",
      std::string(1000, '='),
      std::string(300, ' ') + "the" + std::string(5, '\n'),
      std::string("nul\0byte", 8),
  };
  for (const std::string& s : samples) REQUIRE(tok->decode(tok->encode(s)) == s);
  for (uint64_t stream = 0; stream < 8; ++stream) {
    const std::string s = random_bytes(1 + 517 * stream, 100 + stream);
    REQUIRE(tok->decode(tok->encode(s)) == s);
  }
  // Every id decodes, and ids past the vocabulary are refused.
  std::vector<int32_t> all(static_cast<size_t>(tok->vocab_size()));
  for (size_t i = 0; i < all.size(); ++i) all[i] = static_cast<int32_t>(i);
  REQUIRE_NOTHROW(tok->decode(all));
  REQUIRE_THROWS_AS(tok->decode({static_cast<int32_t>(tok->vocab_size())}), ValueError);
  REQUIRE_THROWS_AS(tok->decode({-1}), ValueError);
}

TEST_CASE("bpe training is deterministic and respects vocab_size", "[data]") {
  TempDir dir;
  const std::string corpus = synthetic_corpus(5000, 2);
  auto a = train_bpe(corpus, 420);
  auto b = train_bpe(corpus, 420);
  REQUIRE(a->vocab_size() == 420);
  REQUIRE(saved_merges(*a, dir) == saved_merges(*b, dir));
  REQUIRE(saved_merges(*a, dir).size() == 420 - 256);
  // A smaller vocabulary is a prefix of the larger one's merges.
  auto c = train_bpe(corpus, 300);
  REQUIRE(c->vocab_size() == 300);
  const auto ma = saved_merges(*a, dir), mc = saved_merges(*c, dir);
  REQUIRE(std::equal(mc.begin(), mc.end(), ma.begin()));
  // A different corpus gives different merges.
  auto d = train_bpe(synthetic_corpus(5000, 3) + " zyzzyva zyzzyva zyzzyva", 420);
  REQUIRE(saved_merges(*d, dir) != ma);
  // A tiny corpus runs out of pairs: fewer tokens than asked, never more.
  auto e = train_bpe("abab abab", 1000);
  REQUIRE(e->vocab_size() < 1000);
  REQUIRE(e->encode("abab").size() == 1);
  REQUIRE(train_bpe("", 300)->vocab_size() == 256);
  REQUIRE_THROWS_AS(train_bpe(corpus, 100), ValueError);
}

TEST_CASE("bpe merges equal a naive recount-everything reference", "[data]") {
  // Words of lowercase letters separated by single spaces: the chunks are the first word and
  // " word" for every later one, so the reference needs no pre-splitter.
  const char* words[] = {"low", "lower", "newest", "widest", "lowest",
                         "new", "wide",  "aaaa",   "aaa"};
  std::string corpus;
  std::vector<std::string> chunks;
  for (uint32_t i = 0; i < 800; ++i) {
    const uint32_t r = philox4x32_10(5, 0, i).v[0] % 9;
    std::string w = i ? " " : "";
    w += words[r];
    corpus += w;
    chunks.push_back(w);
  }
  std::map<std::string, int64_t> counts;
  for (const auto& c : chunks) ++counts[c];
  std::vector<std::pair<std::vector<int64_t>, int64_t>> seqs;
  for (const auto& [c, n] : counts) {
    std::vector<int64_t> s;
    for (unsigned char ch : c) s.push_back(ch);
    seqs.emplace_back(s, n);
  }
  std::vector<std::pair<int64_t, int64_t>> expected;
  for (int64_t id = 256; id < 300; ++id) {
    std::map<std::pair<int64_t, int64_t>, int64_t> pc;
    for (const auto& [s, n] : seqs)
      for (size_t k = 0; k + 1 < s.size(); ++k) pc[{s[k], s[k + 1]}] += n;
    if (pc.empty()) break;
    auto best = pc.begin();  // map order: ties go to the smaller pair
    for (auto it = pc.begin(); it != pc.end(); ++it)
      if (it->second > best->second) best = it;
    expected.push_back(best->first);
    for (auto& [s, n] : seqs) {
      std::vector<int64_t> m;
      for (size_t k = 0; k < s.size(); ++k) {
        if (k + 1 < s.size() && s[k] == best->first.first && s[k + 1] == best->first.second) {
          m.push_back(id);
          ++k;
        } else {
          m.push_back(s[k]);
        }
      }
      s = m;
    }
  }
  TempDir dir;
  auto tok = train_bpe(corpus, 300);
  REQUIRE(saved_merges(*tok, dir) == expected);
  // And encode() reproduces the training segmentation of each word.
  for (const auto& [s, n] : seqs) {
    std::string text;
    for (int64_t id : s) text += tok->decode({static_cast<int32_t>(id)});
    const std::vector<int32_t> ids = tok->encode(text);
    REQUIRE(std::vector<int64_t>(ids.begin(), ids.end()) == s);
  }
}

TEST_CASE("bpe makes frequent words single tokens, with their leading space", "[data]") {
  const std::string corpus = synthetic_corpus(8000, 4);
  auto tok = train_bpe(corpus, 512);
  for (const char* w : {" the", " whale", " of", " and"}) {
    INFO(w);
    REQUIRE(tok->encode(w).size() == 1);
  }
  // Pairs never cross a word boundary: no token holds a letter followed by a space.
  for (int32_t id = 256; id < tok->vocab_size(); ++id) {
    const std::string piece = tok->decode({id});
    for (size_t k = 0; k + 1 < piece.size(); ++k)
      REQUIRE_FALSE((std::isalpha(static_cast<unsigned char>(piece[k])) && piece[k + 1] == ' '));
  }
}

TEST_CASE("tokenizer save/load round trip and load errors", "[data]") {
  TempDir dir;
  const std::string corpus = synthetic_corpus(3000, 5);
  auto tok = train_bpe(corpus, 350);
  const std::string path = dir.file("tokenizer.json");
  tok->save(path);
  REQUIRE_FALSE(fs::exists(path + ".tmp"));
  const std::string text = read_bytes(path);
  REQUIRE(contains(text, "\"format\": \"sinklab-tokenizer\""));
  REQUIRE(contains(text, "\"version\": 1"));
  REQUIRE(contains(text, "\"kind\": \"bpe\""));
  REQUIRE(contains(text, "\"vocab_size\": 350"));
  auto back = load_tokenizer(path);
  REQUIRE(back->kind() == "bpe");
  REQUIRE(back->vocab_size() == 350);
  REQUIRE(back->encode(corpus) == tok->encode(corpus));

  auto byte = make_byte_tokenizer();
  byte->save(dir.file("byte.json"));
  REQUIRE(load_tokenizer(dir.file("byte.json"))->kind() == "byte");

  const std::string missing = dir.file("nope.json");
  REQUIRE(contains(error_message<IOError>([&] { load_tokenizer(missing); }), missing));

  const std::string truncated = dir.file("truncated.json");
  write_bytes(truncated, text.substr(0, text.size() / 2));
  REQUIRE(contains(error_message<IOError>([&] { load_tokenizer(truncated); }), truncated));

  std::string v2 = text;
  v2.replace(v2.find("\"version\": 1"), 12, "\"version\": 2");
  write_bytes(dir.file("v2.json"), v2);
  const std::string v2_msg = error_message<IOError>([&] { load_tokenizer(dir.file("v2.json")); });
  REQUIRE(contains(v2_msg, dir.file("v2.json")));
  REQUIRE(contains(v2_msg, "version 2"));

  write_bytes(dir.file("other.json"), "{\"format\": \"something-else\", \"version\": 1}");
  REQUIRE(contains(error_message<IOError>([&] { load_tokenizer(dir.file("other.json")); }),
                   dir.file("other.json")));
  write_bytes(dir.file("bad_merge.json"),
              "{\"format\": \"sinklab-tokenizer\", \"version\": 1, \"kind\": \"bpe\", "
              "\"vocab_size\": 257, \"merges\": [[256, 1]]}");
  REQUIRE(contains(error_message<IOError>([&] { load_tokenizer(dir.file("bad_merge.json")); }),
                   "merge 0"));
  write_bytes(dir.file("bad_vocab.json"),
              "{\"format\": \"sinklab-tokenizer\", \"version\": 1, \"kind\": \"bpe\", "
              "\"vocab_size\": 300, \"merges\": [[97, 98]]}");
  REQUIRE(contains(error_message<IOError>([&] { load_tokenizer(dir.file("bad_vocab.json")); }),
                   "vocab_size 300"));
}

// ---------------------------------------------------------------------------------------- shards

TEST_CASE("shards round-trip as uint16 and uint32 in the llm.c layout", "[data]") {
  TempDir dir;
  std::vector<int32_t> small(1000);
  for (size_t i = 0; i < small.size(); ++i) small[i] = static_cast<int32_t>((i * 37) % 65536);
  small[5] = 65535;
  const std::string p16 = dir.file("train_000000.bin");
  write_shard(p16, small);
  REQUIRE_FALSE(fs::exists(p16 + ".tmp"));
  REQUIRE(fs::file_size(p16) == 1024 + 2 * small.size());
  const std::string raw = read_bytes(p16);
  int32_t header[256];
  std::memcpy(header, raw.data(), sizeof header);
  REQUIRE(header[0] == 20240520);
  REQUIRE(header[1] == 1);
  REQUIRE(header[2] == 1000);
  for (int i = 3; i < 256; ++i) REQUIRE(header[i] == 0);
  REQUIRE(read_shard(p16) == small);
  REQUIRE(read_shard(p16, false) == small);

  std::vector<int32_t> big = {0, 65535, 65536, 100000, 2147483647, 7};
  const std::string p32 = dir.file("big.bin");
  write_shard(p32, big);
  REQUIRE(fs::file_size(p32) == 1024 + 4 * big.size());
  std::memcpy(header, read_bytes(p32).data(), sizeof header);
  REQUIRE(header[1] == 2);
  REQUIRE(read_shard(p32, false) == big);

  write_shard(dir.file("empty.bin"), {});
  REQUIRE(read_shard(dir.file("empty.bin")).empty());
  REQUIRE_THROWS_AS(write_shard(dir.file("neg.bin"), {1, -2}), ValueError);
}

TEST_CASE("shard header errors name the file", "[data]") {
  TempDir dir;
  const std::vector<int32_t> tokens(500, 42);
  const std::string good = dir.file("good.bin");
  write_shard(good, tokens);
  const std::string bytes = read_bytes(good);

  const std::string magic = dir.file("magic.bin");
  std::string m = bytes;
  m[0] ^= 0x5a;
  write_bytes(magic, m);
  const std::string magic_msg = error_message<IOError>([&] { read_shard(magic, false); });
  REQUIRE(contains(magic_msg, magic));
  REQUIRE(contains(magic_msg, "magic"));

  const std::string version = dir.file("version.bin");
  std::string v = bytes;
  v[4] = 7;
  write_bytes(version, v);
  const std::string version_msg = error_message<IOError>([&] { read_shard(version); });
  REQUIRE(contains(version_msg, version));
  REQUIRE(contains(version_msg, "version 7"));

  const std::string truncated = dir.file("truncated.bin");
  write_bytes(truncated, bytes.substr(0, bytes.size() - 4));
  const std::string trunc_msg = error_message<IOError>([&] { read_shard(truncated); });
  REQUIRE(contains(trunc_msg, truncated));
  REQUIRE(contains(trunc_msg, "token count 500 in the header but the file holds 498 tokens"));
  REQUIRE(contains(trunc_msg, "truncated"));

  const std::string longer = dir.file("longer.bin");
  write_bytes(longer, bytes + "xyz");
  REQUIRE(contains(error_message<IOError>([&] { read_shard(longer); }), longer));

  const std::string tiny = dir.file("tiny.bin");
  write_bytes(tiny, "abc");
  REQUIRE(contains(error_message<IOError>([&] { read_shard(tiny, false); }), tiny));
  REQUIRE(contains(error_message<IOError>([&] { read_shard(tiny, true); }), tiny));  // odd size

  const std::string missing = dir.file("missing.bin");
  REQUIRE(contains(error_message<IOError>([&] { read_shard(missing); }), missing));
}

TEST_CASE("headerless nanoGPT uint16 files are read as raw tokens", "[data]") {
  TempDir dir;
  std::vector<uint16_t> ids(3000);
  for (size_t i = 0; i < ids.size(); ++i) ids[i] = static_cast<uint16_t>((i * 7919) % 50257);
  const std::string path = dir.file("train.bin");
  write_bytes(path, std::string(reinterpret_cast<const char*>(ids.data()), ids.size() * 2));
  const std::vector<int32_t> back = read_shard(path, true);
  REQUIRE(back == std::vector<int32_t>(ids.begin(), ids.end()));
  REQUIRE_THROWS_AS(read_shard(path, false), IOError);
}

TEST_CASE("list_files matches '*' patterns in name order", "[data]") {
  TempDir dir;
  for (const char* name : {"val_000000.bin", "train_000001.bin", "train_000000.bin",
                           "train_000000.bin.tmp", "xtrain_000002.bin"})
    write_bytes(dir.file(name), "");
  fs::create_directories(dir.path / "train_dir.bin");
  const auto files = list_files(dir.path.string(), "train_*.bin");
  REQUIRE(files ==
          std::vector<std::string>{dir.file("train_000000.bin"), dir.file("train_000001.bin")});
  REQUIRE(list_files(dir.path.string(), "*").size() == 5);
  REQUIRE(list_files(dir.path.string(), "val_000000.bin").size() == 1);
  REQUIRE(list_files(dir.file("no_such_dir"), "*.bin").empty());
  // Runs of digits compare as numbers, the rest byte by byte, as before.
  REQUIRE(natural_less("train_999999.bin", "train_1000000.bin"));
  REQUIRE_FALSE(natural_less("train_1000000.bin", "train_999999.bin"));
  REQUIRE(natural_less("part_bb.bin", "part_c.bin"));
  REQUIRE(natural_less("a", "ab"));
  REQUIRE(natural_less("x2y", "x10y"));
  REQUIRE_FALSE(natural_less("same_01", "same_01"));
  // Past six digits a shard name is longer: it still comes after the ones before it.
  write_bytes(dir.file("train_999999.bin"), "");
  write_bytes(dir.file("train_1000000.bin"), "");
  const auto many = list_files(dir.path.string(), "train_*.bin");
  REQUIRE(many.size() == 4);
  REQUIRE(many[2] == dir.file("train_999999.bin"));
  REQUIRE(many[3] == dir.file("train_1000000.bin"));
}

// ---------------------------------------------------------------------------------------- loader

namespace {
}  // namespace

TEST_CASE("loader: deterministic, shifted targets, resumable, windows in range", "[data]") {
  const int64_t B = 4, T = 16;
  DataLoader a(iota_tokens(5000), B, T, 1234, 1), b(iota_tokens(5000), B, T, 1234, 1);
  DataLoader other_seed(iota_tokens(5000), B, T, 99, 1),
      other_stream(iota_tokens(5000), B, T, 1234, 2);
  std::vector<std::vector<int32_t>> seen;
  for (int step = 0; step < 10; ++step) {
    Batch x = a.next(), y = b.next();
    REQUIRE(x.inputs.shape() == Shape{B, T});
    REQUIRE(x.targets.shape() == Shape{B, T});
    REQUIRE(x.inputs.dtype() == DType::I32);
    REQUIRE(ints(x.inputs) == ints(y.inputs));
    REQUIRE(ints(x.targets) == ints(y.targets));
    REQUIRE(ints(x.inputs) != ints(other_seed.next().inputs));
    REQUIRE(ints(x.inputs) != ints(other_stream.next().inputs));
    const auto in = ints(x.inputs), tg = ints(x.targets);
    for (int64_t r = 0; r < B; ++r)
      for (int64_t t = 0; t < T; ++t) {
        REQUIRE(tg[r * T + t] == in[r * T + t] + 1);  // targets = inputs shifted
        REQUIRE(in[r * T + t] == in[r * T] + t);      // one contiguous window
      }
    seen.push_back(in);
  }
  REQUIRE(a.cursor() == 10 * B);

  // Resume: a fresh loader set to the cursor after 6 batches continues identically.
  DataLoader resumed(iota_tokens(5000), B, T, 1234, 1);
  resumed.set_cursor(6 * B);
  for (int step = 6; step < 10; ++step) REQUIRE(ints(resumed.next().inputs) == seen[step]);

  // Windows cover exactly [0, N - T - 1]: with N = T + 4 there are 4 starts, all hit.
  DataLoader tiny(iota_tokens(T + 4), 64, T, 5, 3);
  std::set<int32_t> starts;
  for (int step = 0; step < 4; ++step) {
    const auto in = ints(tiny.next().inputs);
    for (int64_t r = 0; r < 64; ++r) starts.insert(in[r * T]);
  }
  REQUIRE(starts == std::set<int32_t>{0, 1, 2, 3});
  REQUIRE(tiny.max_token() == T + 3);

  DataLoader exact(iota_tokens(T + 1), 3, T, 5, 3);  // one possible window
  REQUIRE(ints(exact.next().targets)[T - 1] == T);
  REQUIRE_THROWS_AS(DataLoader(iota_tokens(T), 1, T, 5, 3), ValueError);
}

TEST_CASE("loader from_files: concatenates shards, names dir and pattern on errors", "[data]") {
  TempDir dir;
  write_shard(dir.file("train_000000.bin"), iota_tokens(100));
  std::vector<int32_t> second = iota_tokens(50);
  for (auto& t : second) t += 100;
  write_shard(dir.file("train_000001.bin"), second);
  write_shard(dir.file("val_000000.bin"), iota_tokens(10));
  DataLoader train = DataLoader::from_files(dir.path.string(), "train_*.bin", 2, 8, 1, 1);
  REQUIRE(train.tokens() == iota_tokens(150));
  REQUIRE(train.num_tokens() == 150);

  const std::string none = error_message<IOError>(
      [&] { DataLoader::from_files(dir.path.string(), "test_*.bin", 2, 8, 1, 1); });
  REQUIRE(contains(none, dir.path.string()));
  REQUIRE(contains(none, "test_*.bin"));
  const std::string small = error_message<IOError>(
      [&] { DataLoader::from_files(dir.path.string(), "val_*.bin", 2, 16, 1, 1); });
  REQUIRE(contains(small, dir.path.string()));
  REQUIRE(contains(small, "val_*.bin"));
  REQUIRE(contains(small, "10 tokens"));
}

// --------------------------------------------------------------------------------------- prepare

TEST_CASE("unigram entropy of known distributions", "[data]") {
  REQUIRE(unigram_entropy({}) == 0.0);
  REQUIRE(unigram_entropy({5, 5, 5}) == 0.0);
  REQUIRE(unigram_entropy({0, 1, 2, 3}) == Approx(std::log(4.0)));
  REQUIRE(unigram_entropy({7, 7, 1, 2}) == Approx(1.5 * std::log(2.0)));
  REQUIRE(unigram_entropy({100000, 3}) == Approx(std::log(2.0)));
}

TEST_CASE("prepare: val holds whole documents spread across the input", "[data]") {
  // 40 documents separated by blank lines, in order (like addresses sorted by date): with
  // val_fraction 0.1 and units of one document, documents 9, 19, 29 and 39 are held out,
  // whole, and none of their text is in train.
  TempDir dir;
  std::string text;
  for (int d = 0; d < 40; ++d) {
    text += "document " + std::to_string(d) + " begins.\n";
    for (int line = 0; line < 3; ++line) text += "line " + std::to_string(line) + " of doc " +
                                                 std::to_string(d) + " goes on a while.\n";
    text += "\n";
  }
  write_bytes(dir.file("docs.txt"), text);
  RunConfig config;
  config.prepare.inputs = {dir.file("docs.txt")};
  config.prepare.tokenizer = "byte";
  config.prepare.val_fraction = 0.1;
  config.prepare.val_unit_bytes = 1;  // one document per unit
  config.data.dir = dir.file("out");
  std::ostringstream log;
  prepare_dataset(config, log);
  INFO(log.str());
  auto tok = load_tokenizer(dir.file("out/tokenizer.json"));
  const std::string val = tok->decode(read_shard(dir.file("out/val_000000.bin"), false));
  const std::string train = tok->decode(read_shard(dir.file("out/train_000000.bin"), false));
  REQUIRE(train.size() + val.size() == text.size());
  for (int d = 0; d < 40; ++d) {
    const std::string begins = "document " + std::to_string(d) + " begins.";
    const std::string ends = "line 2 of doc " + std::to_string(d) + " goes on a while.\n\n";
    const bool held_out = d % 10 == 9;
    INFO("document " << d);
    REQUIRE(contains(held_out ? val : train, begins));
    REQUIRE(contains(held_out ? val : train, ends));  // whole: its last line too
    REQUIRE_FALSE(contains(held_out ? train : val, begins));
  }
  // Larger units join consecutive documents (here 3 to 4 per unit): still whole documents.
  config.prepare.val_unit_bytes = 300;
  std::ostringstream log2;
  prepare_dataset(config, log2);
  const std::string val2 = tok->decode(read_shard(dir.file("out/val_000000.bin"), false));
  REQUIRE(val2.size() > 0);
  REQUIRE(val2.rfind("document ", 0) == 0);
  REQUIRE(val2.size() >= 2);
  REQUIRE(val2.substr(val2.size() - 2) == "\n\n");
}

namespace {

// `count` documents ("document <first + d> begins." and three lines), each ending at a blank
// line; line ends `eol` ("\n" or "\r\n").
std::string numbered_documents(int first, int count, const std::string& eol) {
  std::string text;
  for (int d = first; d < first + count; ++d) {
    text += "document " + std::to_string(d) + " begins." + eol;
    for (int line = 0; line < 3; ++line)
      text += "line " + std::to_string(line) + " of doc " + std::to_string(d) + eol;
    text += eol;
  }
  return text;
}

// Which of documents [0, count) the prepared val split holds (by their first line).
std::set<int> held_out_documents(const std::string& data_dir, int count) {
  auto tok = load_tokenizer(data_dir + "/tokenizer.json");
  const std::string val = tok->decode(read_shard(data_dir + "/val_000000.bin", false));
  std::set<int> held;
  for (int d = 0; d < count; ++d)
    if (contains(val, "document " + std::to_string(d) + " begins.")) held.insert(d);
  return held;
}

RunConfig documents_config(const std::vector<std::string>& inputs, const std::string& out) {
  RunConfig config;
  config.prepare.inputs = inputs;
  config.prepare.tokenizer = "byte";
  config.prepare.val_fraction = 0.1;
  config.prepare.val_unit_bytes = 1;  // one document per unit
  config.data.dir = out;
  return config;
}

}  // namespace

TEST_CASE("prepare: documents end at CRLF blank lines too, not at lines of spaces", "[data]") {
  TempDir dir;
  // CRLF: the same 40 documents as with "\n" line ends; documents 9, 19, 29 and 39 held out.
  write_bytes(dir.file("crlf.txt"), numbered_documents(0, 40, "\r\n"));
  std::ostringstream log;
  prepare_dataset(documents_config({dir.file("crlf.txt")}, dir.file("out")), log);
  INFO(log.str());
  REQUIRE(held_out_documents(dir.file("out"), 40) == std::set<int>{9, 19, 29, 39});
  // A line of spaces or tabs inside a document (source code has them) does not end it: 20
  // documents with one such line each are 20 units, documents 9 and 19 held out, whole.
  std::string spaced;
  for (int d = 0; d < 20; ++d)
    spaced += "document " + std::to_string(d) + " begins.\n  \t\nits end " + std::to_string(d) +
              ".\n\n";
  write_bytes(dir.file("spaced.txt"), spaced);
  prepare_dataset(documents_config({dir.file("spaced.txt")}, dir.file("out2")), log);
  REQUIRE(held_out_documents(dir.file("out2"), 20) == std::set<int>{9, 19});
  auto tok = load_tokenizer(dir.file("out2/tokenizer.json"));
  REQUIRE(contains(tok->decode(read_shard(dir.file("out2/val_000000.bin"), false)),
                   "document 9 begins.\n  \t\nits end 9.\n\n"));
}

TEST_CASE("prepare: small inputs hold out their share together; large ones alone", "[data]") {
  TempDir dir;
  // Ten inputs of 4 documents: none holds out a unit alone at 0.1 (floor(0.4) = 0); counted
  // together, the 40 units hold out units 9, 19, 29 and 39 (document numbers run on).
  std::vector<std::string> small;
  for (int k = 0; k < 10; ++k) {
    small.push_back(dir.file("small" + std::to_string(k) + ".txt"));
    write_bytes(small.back(), numbered_documents(4 * k, 4, "\n"));
  }
  std::ostringstream log;
  prepare_dataset(documents_config(small, dir.file("out")), log);
  INFO(log.str());
  REQUIRE(held_out_documents(dir.file("out"), 40) == std::set<int>{9, 19, 29, 39});
  // A large input keeps its own count (its split does not depend on the others): 20 documents
  // hold out their 9 and 19 with small inputs beside it (before or after) as alone; the two
  // small ones after it (8 units together) hold out none.
  write_bytes(dir.file("large.txt"), numbered_documents(100, 20, "\n"));
  prepare_dataset(documents_config({dir.file("large.txt")}, dir.file("alone")), log);
  prepare_dataset(
      documents_config({small[0], dir.file("large.txt"), small[1]}, dir.file("mixed")), log);
  auto held = [&](const std::string& out) {
    std::set<int> all;
    for (int d : held_out_documents(out, 120)) all.insert(d);
    return all;
  };
  REQUIRE(held(dir.file("alone")) == std::set<int>{109, 119});
  REQUIRE(held(dir.file("mixed")) == std::set<int>{109, 119});
}

TEST_CASE("prepare: a share that holds out nothing is refused, naming what to change", "[data]") {
  TempDir dir;
  write_bytes(dir.file("four.txt"), numbered_documents(0, 4, "\n"));
  RunConfig config = documents_config({dir.file("four.txt")}, dir.file("out"));
  std::ostringstream log;
  const std::string e =
      error_message<ConfigError>([&] { prepare_dataset(config, log); });
  REQUIRE(contains(e, "prepare.val_fraction 0.1 holds out no validation text"));
  REQUIRE(contains(e, "prepare.val_unit_bytes"));
  REQUIRE_FALSE(fs::exists(dir.file("out/train_000000.bin")));  // nothing written
  config.prepare.val_split = ValSplit::Tail;
  config.prepare.val_fraction = 1e-4;  // 0.01 bytes
  REQUIRE(contains(error_message<ConfigError>([&] { prepare_dataset(config, log); }),
                   "the tail of each input rounds to 0 bytes"));
  // val_fraction 0 asks for no val split: written, with a warning that training needs one.
  config.prepare.val_fraction = 0;
  config.model.block_size = 16;
  std::ostringstream log0;
  prepare_dataset(config, log0);
  REQUIRE(contains(log0.str(), "warning: the val split holds 0 tokens, fewer than "
                               "model.block_size + 1 = 17"));
  REQUIRE(contains(log0.str(), "prepare.val_fraction is 0"));
  REQUIRE_FALSE(contains(log0.str(), "warning: the train split"));
  // A train split shorter than one window is reported when prepared.
  config.model.block_size = 4096;
  std::ostringstream log1;
  prepare_dataset(config, log1);
  REQUIRE(contains(log1.str(), "warning: the train split holds "));
  REQUIRE(contains(log1.str(), "model.block_size + 1 = 4097"));
  // A folder named as an input is called one.
  config.prepare.inputs = {dir.path.string()};
  REQUIRE(contains(error_message<IOError>([&] { prepare_dataset(config, log); }),
                   "is a folder, not a file"));
}

TEST_CASE("prepare: inputs -> tokenizer.json + train/val shards", "[data]") {
  TempDir dir;
  const std::string a = synthetic_corpus(4000, 6), b = synthetic_corpus(3000, 7);
  write_bytes(dir.file("a.txt"), a);
  write_bytes(dir.file("b.txt"), b);
  RunConfig config;
  config.prepare.inputs = {dir.file("a.txt"), dir.file("b.txt")};
  config.prepare.vocab_size = 320;
  config.prepare.val_fraction = 0.1;
  config.prepare.val_split = ValSplit::Tail;
  config.data.dir = dir.file("out");
  // A stale shard from an earlier, larger prepare must disappear.
  fs::create_directories(config.data.dir);
  write_shard(dir.file("out/train_000009.bin"), {1, 2, 3});
  std::ostringstream log;
  prepare_dataset(config, log);
  INFO(log.str());
  REQUIRE(contains(log.str(), "unigram entropy"));
  REQUIRE_FALSE(fs::exists(dir.file("out/train_000009.bin")));

  auto tok = load_tokenizer(dir.file("out/tokenizer.json"));
  REQUIRE(tok->vocab_size() == 320);
  const auto train = read_shard(dir.file("out/train_000000.bin"), false);
  const auto val = read_shard(dir.file("out/val_000000.bin"), false);
  const std::string train_text = tok->decode(train), val_text = tok->decode(val);
  // Each file splits into a head (train) and a tail (val) at a line start, about 10% of it.
  REQUIRE(train_text.size() + val_text.size() == a.size() + b.size());
  REQUIRE(val.size() > 0);
  REQUIRE(val_text.size() < (a.size() + b.size()) / 5);
  REQUIRE(train_text.compare(0, 100, a, 0, 100) == 0);
  // Reconstruct: train = head(a) + head(b), val = tail(a) + tail(b).
  bool found = false;
  for (size_t ha = 0; ha <= a.size() && !found; ++ha) {
    if (train_text.compare(0, ha, a, 0, ha) != 0) break;
    const size_t hb = train_text.size() - ha;
    if (hb > b.size()) continue;
    if (train_text.compare(ha, hb, b, 0, hb) == 0 && val_text == a.substr(ha) + b.substr(hb)) {
      found = true;
      REQUIRE((ha == 0 || a[ha - 1] == '\n'));
      REQUIRE((hb == 0 || b[hb - 1] == '\n'));
    }
  }
  REQUIRE(found);

  // Several shards when over shard_tokens; the loader reads them back in order.
  config.prepare.shard_tokens = 1000;
  std::ostringstream log2;
  prepare_dataset(config, log2);
  const auto shards = list_files(config.data.dir, "train_*.bin");
  REQUIRE(shards.size() == (train.size() + 999) / 1000);
  REQUIRE(DataLoader::from_files(config.data.dir, "train_*.bin", 2, 8, 1, 1).tokens() == train);

  // Byte tokenizer; a missing input names the file and the data script.
  config.prepare.tokenizer = "byte";
  config.prepare.shard_tokens = 100000000;
  std::ostringstream log3;
  prepare_dataset(config, log3);
  REQUIRE(list_files(config.data.dir, "train_*.bin").size() == 1);
  REQUIRE(load_tokenizer(dir.file("out/tokenizer.json"))->kind() == "byte");
  REQUIRE(read_shard(dir.file("out/train_000000.bin")).size() == train_text.size());
  config.prepare.inputs.push_back(dir.file("missing.txt"));
  try {
    prepare_dataset(config, log3);
    FAIL("expected an IOError");
  } catch (const IOError& e) {
    REQUIRE(contains(e.message(), dir.file("missing.txt")));
    REQUIRE(contains(e.hint(), "scripts/get_data.sh"));
  }
}

TEST_CASE("data.tokenizer that is not the shards' own tokenizer is refused, naming both",
          "[data]") {
  // A review trained a 50,304-id model on byte shards with --set data.tokenizer=gpt2.
  test::TempDir dir;
  const std::string bpe_file = dir.file("bpe.json");
  train_bpe(synthetic_corpus(3000, 2), 300)->save(bpe_file);
  open_tokenizer("byte")->save(dir.file("tokenizer.json"));  // as prepare leaves it: byte shards
  DataSection data;
  data.dir = dir.path.string();
  data.tokenizer = "byte";  // the same tokenizer, named: accepted
  REQUIRE(open_data_tokenizer(data)->kind() == "byte");
  data.tokenizer = "";  // the shards' own
  REQUIRE(open_data_tokenizer(data)->kind() == "byte");
  data.tokenizer = bpe_file;
  test::require_error<ConfigError>([&] { open_data_tokenizer(data); },
                                   {"data.tokenizer is " + bpe_file, "(bpe, 300 ids)",
                                    "tokenizer.json (byte, 256 ids)", "sinklab prepare"});
  fs::remove(dir.file("tokenizer.json"));  // no file beside the shards: nothing to compare
  REQUIRE(open_data_tokenizer(data)->kind() == "bpe");
}
