// GPT-2's tokenizer: its pre-tokenisation pattern on tricky text (the expected pieces are written
// by hand from the pattern's definition), the byte-level alphabet, the BPE merge order, and
// (with GPT-2's vocabulary, [gpt2]) known ids and round trips.
#include <cstdlib>
#include <filesystem>
#include <fstream>
#include <map>
#include <sstream>

#include "core/philox.h"
#include "tests/helpers.h"
#include "tests/train/train_test_util.h"
#include "train/data/bpe_merge.h"
#include "train/data/byte_level.h"
#include "train/data/gpt2_vocab.h"
#include "train/data/split_regex.h"
#include "train/data/tokenizer.h"

using namespace sinklab;
using namespace sinklab::train;
using namespace sinklab::test;

namespace {

std::vector<std::string> pieces(const SplitRegex& regex, const std::string& text) {
  std::vector<std::string> out;
  regex.split(text, [&](size_t b, size_t e) { out.push_back(text.substr(b, e - b)); });
  return out;
}

// A SINKLAB_GPT2_DIR setting for the length of a scope.
struct Gpt2DirOverride {
  explicit Gpt2DirOverride(const std::string& dir) { setenv("SINKLAB_GPT2_DIR", dir.c_str(), 1); }
  ~Gpt2DirOverride() { unsetenv("SINKLAB_GPT2_DIR"); }
};

using Pieces = std::vector<std::string>;

}  // namespace

TEST_CASE("GPT-2's pattern splits text as its definition says", "[data]") {
  SINKLAB_REQUIRE_PCRE2();
  const SplitRegex gpt2(kGpt2SplitPattern, "test");
  const std::vector<std::pair<std::string, Pieces>> cases = {
      {"Hello world", {"Hello", " world"}},
      // Contractions: lower case only, and only these seven.
      {"it's I'm you're we've they'll he'd don't",
       {"it", "'s", " I", "'m", " you", "'re", " we", "'ve", " they", "'ll", " he", "'d", " don",
        "'t"}},
      {"IT'S WE'VE", {"IT", "'", "S", " WE", "'", "VE"}},  // "'S" is no contraction: "'" then "S"
      {"'s's ''s o'clock", {"'s", "'s", " ''", "s", " o", "'", "clock"}},
      // Numbers: digit runs, an optional space before them; no decimal point or separator.
      {"123 4567 3.14 1,000 2nd x2", {"123", " 4567", " 3", ".", "14", " 1", ",", "000", " 2",
                                       "nd", " x", "2"}},
      {"\xd9\xa3\xd9\xa4 \xc2\xbd", {"\xd9\xa3\xd9\xa4", " \xc2\xbd"}},  // Arabic-Indic ٣٤, ½: \p{N}
      // Whitespace: a run leaves its last space to a following word; other whitespace does not
      // join words; trailing whitespace stays one piece.
      {"a  b", {"a", " ", " b"}},
      {"a   b", {"a", "  ", " b"}},
      {"a \n b", {"a", " \n", " b"}},
      {"a\tb", {"a", "\t", "b"}},
      {"\t\tx", {"\t", "\t", "x"}},
      {"a\n\nb", {"a", "\n", "\n", "b"}},
      {"x\n  y", {"x", "\n ", " y"}},
      {"end   ", {"end", "   "}},
      {"\n\n\n", {"\n\n\n"}},
      {"  hi", {" ", " hi"}},
      {"a \xc2\xa0" "b", {"a", " ", "\xc2\xa0", "b"}},  // no-break space: whitespace, not ' '
      {"a\r\nb", {"a", "\r", "\n", "b"}},
      // Punctuation runs, with an optional space before them.
      {"x=1; f(y)!!", {"x", "=", "1", ";", " f", "(", "y", ")!!"}},
      {" ...\"", {" ...\""}},
      // Scripts: letters of any script are \p{L}; marks (Mn, Mc) are not letters.
      {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80!",  // Привет, мир!
       {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82", ",", " \xd0\xbc\xd0\xb8\xd1\x80", "!"}},
      {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x80\x81\xe4\xb8\xad",  // 日本語の、中
       {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae", "\xe3\x80\x81", "\xe4\xb8\xad"}},
      {"\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7 \xd8\xa8\xd9\x83",  // مرحبا بك
       {"\xd9\x85\xd8\xb1\xd8\xad\xd8\xa8\xd8\xa7", " \xd8\xa8\xd9\x83"}},
      // नमस्ते: न म स are letters, the virama ् and the vowel sign े are marks.
      {" \xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8\xe0\xa5\x8d\xe0\xa4\xa4\xe0\xa5\x87",
       {" \xe0\xa4\xa8\xe0\xa4\xae\xe0\xa4\xb8", "\xe0\xa5\x8d", "\xe0\xa4\xa4", "\xe0\xa5\x87"}},
      {"e\xcc\x81", {"e", "\xcc\x81"}},  // e + combining acute
      // Emoji are symbols: a wave with a skin tone, and a family joined by ZWJ, are one piece each.
      {"\xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd a\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d"
       "\xf0\x9f\x91\xa7" "b",
       {"\xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd", " a",
        "\xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d\xf0\x9f\x91\xa7", "b"}},
      // Invalid UTF-8 (sinklab's own rule: tiktoken and tokenizers take only valid text): bytes
      // that are no character never match, so each run of them is a piece of its own, and a
      // space before one is whitespace at the end of its run.
      {"ab\xff" "cd", {"ab", "\xff", "cd"}},
      {"a \xff\xfe!", {"a", " ", "\xff\xfe", "!"}},
      {"caf\xc3", {"caf", "\xc3"}},           // a cut-off é
      {"\xc0\xaf" "x", {"\xc0\xaf", "x"}},    // an overlong '/'
      {"", {}},
  };
  for (const auto& [text, expected] : cases) {
    INFO(text);
    REQUIRE(pieces(gpt2, text) == expected);
  }
}

TEST_CASE("split patterns: Oniguruma's escapes become PCRE2's, the rest is refused", "[data]") {
  SINKLAB_REQUIRE_PCRE2();
  // \s is Unicode White_Space in Oniguruma and tiktoken; PCRE2's own \s adds U+180E.
  REQUIRE(pcre2_pattern(R"(\s+(?!\S)|[^\s\p{L}])", "t") ==
          R"(\p{White_Space}+(?!\P{White_Space})|[^\p{White_Space}\p{L}])");
  REQUIRE(pcre2_pattern(R"(\w|[\w-]|\h|\W|\\s|[\]\s])", "t") ==
          R"([\p{L}\p{M}\p{Nd}\p{Pc}]|[\p{L}\p{M}\p{Nd}\p{Pc}-]|[0-9A-Fa-f]|[^\p{L}\p{M}\p{Nd}\p{Pc}]|\\s|[\]\p{White_Space}])");
  REQUIRE(pcre2_pattern("[[:alpha:]]x", "t") == "[[:alpha:]]x");
  const SplitRegex space(R"(\s+)", "t");
  REQUIRE(pieces(space, "a\xe1\xa0\x8e" "b") == Pieces{"a\xe1\xa0\x8e" "b"});  // U+180E: no space
  REQUIRE(pieces(space, "a\xc2\x85" "b") == Pieces{"a", "\xc2\x85", "b"});      // U+0085: space
  for (const char* bad : {"[a[b]]", "[a&&b]", R"([\W])", R"([^\H])"})
    REQUIRE(contains(error_message<ValueError>([&] { pcre2_pattern(bad, "file.json: field"); }),
                     "file.json: field"));
  const std::string msg = error_message<ValueError>([] { SplitRegex("(unclosed", "f.json: x"); });
  REQUIRE(contains(msg, "f.json: x"));
  REQUIRE(contains(msg, "does not compile"));
  // Empty matches leave no empty pieces, and every byte still lands in a piece.
  const SplitRegex maybe_digits(R"(\d*)", "t");
  REQUIRE(pieces(maybe_digits, "ab12c") == Pieces{"a", "b", "12", "c"});
  REQUIRE(pieces(SplitRegex(regex_literal("a.b"), "t"), "xa.bya_b") == Pieces{"x", "a.b", "ya_b"});
  // Llama 3's Split pattern (its tokenizer.json): case-insensitive contractions, digits in
  // threes, newlines kept with the whitespace before them.
  const SplitRegex llama3(
      R"((?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+)",
      "t");
  REQUIRE(pieces(llama3, "I'M 12345 hello\n\n  world") ==
          Pieces{"I", "'M", " ", "123", "45", " hello", "\n\n", " ", " world"});
}

TEST_CASE("GPT-2's byte-level alphabet", "[data]") {
  REQUIRE(byte_level_char(' ') == U'\u0120');   // Ġ
  REQUIRE(byte_level_char('\n') == U'\u010A');  // Ċ
  REQUIRE(byte_level_char(0) == U'\u0100');
  REQUIRE(byte_level_char('A') == U'A');
  REQUIRE(byte_level_char(0xAD) == U'\u0143');  // the soft hyphen is not printable
  REQUIRE(byte_level_char(0xFF) == U'\u00FF');
  std::map<char32_t, int> seen;
  std::string all;
  for (int b = 0; b < 256; ++b) {
    ++seen[byte_level_char(static_cast<uint8_t>(b))];
    REQUIRE(byte_level_byte(byte_level_char(static_cast<uint8_t>(b))) == b);
    all += static_cast<char>(b);
  }
  REQUIRE(seen.size() == 256);
  REQUIRE(byte_level_decode(byte_level_encode(all)) == all);
  REQUIRE(byte_level_encode(" hi\n") == "\xc4\xa0hi\xc4\x8a");
  REQUIRE_FALSE(byte_level_decode("\xe2\x82\xac"));  // € is not in the alphabet
  REQUIRE_FALSE(byte_level_decode("\xc4"));          // cut-off UTF-8
}

TEST_CASE("bpe_merge equals merging every occurrence of the best pair, lowest rank first",
          "[data]") {
  // Well-formed tables (a merge's result outranks the merges of its parts) over 4 symbols,
  // against the naive GPT-2 loop, on random sequences.
  for (uint64_t table_seed = 0; table_seed < 20; ++table_seed) {
    MergeTable table;
    std::vector<std::pair<int32_t, int32_t>> merges;
    int32_t next = 4;
    for (uint32_t r = 0; r < 30; ++r) {
      const PhiloxBlock b = philox4x32_10(31, table_seed, r);
      const int32_t left = static_cast<int32_t>(b.v[0] % next), right = static_cast<int32_t>(b.v[1] % next);
      if (table.add(left, right, {static_cast<int32_t>(merges.size()), next})) {
        merges.emplace_back(left, right);
        ++next;
      }
    }
    for (uint64_t s = 0; s < 50; ++s) {
      std::vector<int32_t> sym(1 + philox4x32_10(32, table_seed, s).v[0] % 40);
      for (size_t i = 0; i < sym.size(); ++i)
        sym[i] = static_cast<int32_t>(philox4x32_10(33, table_seed * 1000 + s, i).v[0] % 4);
      std::vector<int32_t> naive = sym;
      while (true) {
        size_t best = merges.size();
        for (size_t k = 0; k + 1 < naive.size(); ++k)
          if (const MergeRule* m = table.find(naive[k], naive[k + 1]))
            best = std::min(best, static_cast<size_t>(m->rank));
        if (best == merges.size()) break;
        std::vector<int32_t> merged;
        for (size_t k = 0; k < naive.size(); ++k) {
          if (k + 1 < naive.size() && naive[k] == merges[best].first &&
              naive[k + 1] == merges[best].second) {
            merged.push_back(static_cast<int32_t>(4 + best));
            ++k;
          } else {
            merged.push_back(naive[k]);
          }
        }
        naive = merged;
      }
      bpe_merge(sym, table);
      REQUIRE(sym == naive);
    }
  }
}

TEST_CASE("gpt2: a missing or damaged vocabulary is named, with the script that installs it",
          "[data]") {
  TempDir dir;
  {
    const Gpt2DirOverride env(dir.path.string());
    const Error e = test::caught<IOError>([] { load_gpt2_tokenizer(); });
    REQUIRE(contains(e.message(), dir.path.string()));
    REQUIRE(contains(e.hint(), "scripts/get_data.sh"));
  }
  // A vocabulary that is not GPT-2's: too small, or a merge whose id is not 256 + rank.
  std::string encoder = "{";
  for (int b = 0; b < 256; ++b)
    encoder += (b ? ", " : "") + std::string("\"") +
               (b == '"' || b == '\\' ? "\\" : "") + byte_level_encode(std::string(1, static_cast<char>(b))) +
               "\": " + std::to_string(b);
  dir.write("encoder.json", encoder + ", \"ab\": 256}");
  dir.write("vocab.bpe", "#version: 0.2\na b\n");
  const std::string small = error_message<IOError>([&] { read_gpt2_vocab(dir.path.string()); });
  REQUIRE(contains(small, "257 tokens and 1 merges; GPT-2 has 50257"));
  dir.write("vocab.bpe", "#version: 0.2\nb a\n");
  const std::string wrong = error_message<IOError>([&] { read_gpt2_vocab(dir.path.string()); });
  REQUIRE(contains(wrong, dir.file("vocab.bpe") + ":2"));
  REQUIRE(contains(wrong, "\"ba\", which encoder.json lacks"));
  dir.write("encoder.json", "{\"a\": [1]}");
  REQUIRE(contains(error_message<IOError>([&] { read_gpt2_vocab(dir.path.string()); }),
                   dir.file("encoder.json")));
}

TEST_CASE("gpt2: known ids, special-token text, round trips", "[data][gpt2]") {
  SINKLAB_REQUIRE_GPT2_VOCAB();
  const auto gpt2 = load_gpt2_tokenizer();
  REQUIRE(gpt2->kind() == "gpt2");
  REQUIRE(gpt2->vocab_size() == 50257);
  // Ids from js-tiktoken 1.0.21's "gpt2" (= OpenAI's encoder.py).
  const std::vector<std::pair<std::string, std::vector<int32_t>>> known = {
      {"Hello world", {15496, 995}},
      {"It's IT'S don't", {1026, 338, 7283, 6, 50, 836, 470}},
      {"  two spaces  ", {220, 734, 9029, 220, 220}},
      {"hello\n\n\tworld 1234567 3.14", {31373, 628, 197, 6894, 17031, 2231, 3134, 513, 13, 1415}},
      {"\xd0\x9f\xd1\x80\xd0\xb8\xd0\xb2\xd0\xb5\xd1\x82, \xd0\xbc\xd0\xb8\xd1\x80!",
       {140, 253, 21169, 18849, 38857, 16843, 20375, 11, 12466, 120, 18849, 21169, 0}},
      {"\xe6\x97\xa5\xe6\x9c\xac\xe8\xaa\x9e\xe3\x81\xae\xe3\x83\x86\xe3\x82\xad\xe3\x82\xb9\xe3"
       "\x83\x88",  // 日本語のテキスト
       {33768, 98, 17312, 105, 45739, 252, 5641, 24336, 25084, 43302}},
      {"\xf0\x9f\x91\x8b\xf0\x9f\x8f\xbd \xf0\x9f\x91\xa8\xe2\x80\x8d\xf0\x9f\x91\xa9\xe2\x80\x8d"
       "\xf0\x9f\x91\xa7",  // 👋🏽 👨‍👩‍👧
       {41840, 233, 8582, 237, 121, 50169, 101, 447, 235, 41840, 102, 447, 235, 41840, 100}},
      {"e\xcc\x81", {68, 136, 223}},
      // The special token's text is text (tiktoken's encode_ordinary): never id 50256.
      {"<|endoftext|>", {27, 91, 437, 1659, 5239, 91, 29}},
  };
  for (const auto& [text, ids] : known) {
    INFO(text);
    REQUIRE(gpt2->encode(text) == ids);
    REQUIRE(gpt2->decode(ids) == text);
  }
  REQUIRE(gpt2->decode({50256}) == "<|endoftext|>");
  REQUIRE_THROWS_AS(gpt2->decode({50257}), ValueError);
  // Any bytes round-trip: the torture text, invalid UTF-8, random bytes.
  const std::string torture = read_bytes(SINKLAB_SOURCE_DIR "/tests/data/tokenizer_text.txt");
  REQUIRE(torture.size() > 2000);
  REQUIRE(gpt2->decode(gpt2->encode(torture)) == torture);
  REQUIRE(gpt2->encode(torture).size() < torture.size() / 2);
  for (const std::string& s : {std::string("\xff\xfe\xc3 caf\xc3\xa9\x80"), std::string(3000, ' '),
                               std::string("a\0b", 3)})
    REQUIRE(gpt2->decode(gpt2->encode(s)) == s);
  std::string random(5000, '\0');
  for (size_t i = 0; i < random.size(); ++i)
    random[i] = static_cast<char>(philox4x32_10(9, 1, i).v[0] & 0xff);
  REQUIRE(gpt2->decode(gpt2->encode(random)) == random);
}
