// The split patterns of tokenizers, matched with PCRE2 (Debian's libpcre2-8): GPT-2's
// pre-tokenisation regex and the Split regexes of Hugging Face tokenizer.json files.
//
// Patterns arrive in the syntax Hugging Face's tokenizers compile with Oniguruma (and tiktoken
// with Rust's regex). They are compiled in UTF mode with Unicode properties (\p{L}, \p{N}) after
// a small translation where PCRE2 reads an escape differently: \s and \S are Unicode White_Space
// as in Oniguruma and tiktoken (PCRE2's own \s also matches U+180E), \w is Oniguruma's word
// character (letters, marks, decimal digits, connector punctuation) and \h a hex digit.
// Unicode tables are PCRE2's (Unicode 14 in Debian 12's 10.42): characters assigned later can
// classify differently from a newer Oniguruma or tiktoken. JIT-compiled where PCRE2 has a JIT.
// A build without PCRE2 (CMake did not find libpcre2-dev) has no SplitRegex: its constructor
// throws ConfigError saying so, and split_regex_available() is false.
#pragma once
#include <cstddef>
#include <functional>
#include <string>
#include <string_view>

struct pcre2_real_code_8;

namespace sinklab::train {

// GPT-2's pre-tokenisation pattern (OpenAI's encoder.py; tiktoken's "gpt2"; Hugging Face's
// ByteLevel pre-tokenizer with use_regex): contractions, an optional space before letters,
// numbers or other symbols, and whitespace runs that leave their last space to the next word.
inline constexpr const char* kGpt2SplitPattern =
    R"('s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+)";

// An Oniguruma / tiktoken pattern in PCRE2 syntax (the translation above). Throws ValueError
// naming `what` (the file and field) for a construct PCRE2 cannot express the same way: a class
// nested in a class, && intersections, \W or \H inside a class.
std::string pcre2_pattern(const std::string& pattern, const std::string& what);

// A pattern that matches `text` literally (ASCII punctuation escaped).
std::string regex_literal(std::string_view text);

// Whether this build has PCRE2 (else the gpt2 and hf: tokenizers cannot run).
bool split_regex_available();

class SplitRegex {
 public:
  // Throws ValueError naming `what` when the pattern does not compile.
  SplitRegex(const std::string& pattern, const std::string& what);
  ~SplitRegex();
  SplitRegex(const SplitRegex&) = delete;
  SplitRegex& operator=(const SplitRegex&) = delete;

  const std::string& pattern() const { return pattern_; }  // as given (Oniguruma syntax)

  // Calls emit(begin, end) for the pieces of `text`, in order, covering it: each match and each
  // stretch between matches (Hugging Face's Split behaviour "Isolated"); empty pieces are left
  // out. Bytes that are not UTF-8 never match (PCRE2_MATCH_INVALID_UTF), so they stay in the
  // stretches between matches; a match never spans them.
  void split(std::string_view text, const std::function<void(size_t, size_t)>& emit) const;

 private:
  std::string pattern_, what_;
  pcre2_real_code_8* code_ = nullptr;
};

}  // namespace sinklab::train
