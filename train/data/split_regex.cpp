#include "train/data/split_regex.h"

#if SINKLAB_HAVE_PCRE2
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#endif

#include <cctype>
#include <memory>

#include "core/error.h"

namespace sinklab::train {

namespace {

constexpr const char* kWhiteSpace = "\\p{White_Space}";
constexpr const char* kNotWhiteSpace = "\\P{White_Space}";
constexpr const char* kWordChars = "\\p{L}\\p{M}\\p{Nd}\\p{Pc}";  // Oniguruma's \w
constexpr const char* kHexDigits = "0-9A-Fa-f";                   // Oniguruma's \h

#if SINKLAB_HAVE_PCRE2
std::string pcre2_message(int code) {
  PCRE2_UCHAR buffer[256];
  if (pcre2_get_error_message(code, buffer, sizeof buffer) < 0) return "error " + std::to_string(code);
  return reinterpret_cast<const char*>(buffer);
}
#endif

}  // namespace

std::string pcre2_pattern(const std::string& pattern, const std::string& what) {
  std::string out;
  out.reserve(pattern.size() + 32);
  bool in_class = false;
  auto refuse = [&](const std::string& construct) {
    SINKLAB_FAIL(ValueError,
                 what << ": the pattern " << pattern << " uses " << construct
                      << ", which PCRE2 (sinklab's regex engine) reads differently from Oniguruma",
                 "only byte-level BPE tokenizers with PCRE2-compatible split patterns are "
                 "supported; rewrite the class without it");
  };
  // A class's members: bare inside a class, else in brackets (negated: [^...]).
  auto add_class = [&](const char* members, bool negated) {
    if (!in_class) out += negated ? "[^" : "[";
    out += members;
    if (!in_class) out += ']';
  };
  for (size_t i = 0; i < pattern.size(); ++i) {
    const char c = pattern[i];
    if (c == '\\' && i + 1 < pattern.size()) {
      const char e = pattern[++i];
      switch (e) {
        case 's': out += kWhiteSpace; break;
        case 'S': out += kNotWhiteSpace; break;
        case 'w': add_class(kWordChars, false); break;
        case 'h': add_class(kHexDigits, false); break;
        case 'W':
          if (in_class) refuse("\\W inside a character class");
          add_class(kWordChars, true);
          break;
        case 'H':
          if (in_class) refuse("\\H inside a character class");
          add_class(kHexDigits, true);
          break;
        default: out += '\\'; out += e;
      }
      continue;
    }
    if (!in_class && c == '[') {
      in_class = true;
      out += c;
      // A ']' right after '[' or '[^' is a literal.
      if (i + 1 < pattern.size() && pattern[i + 1] == '^') out += pattern[++i];
      if (i + 1 < pattern.size() && pattern[i + 1] == ']') out += pattern[++i];
      continue;
    }
    if (in_class) {
      if (c == ']') {
        in_class = false;
      } else if (c == '[') {
        const size_t close = pattern.find(":]", i);
        if (i + 1 < pattern.size() && pattern[i + 1] == ':' && close != std::string::npos) {
          out.append(pattern, i, close + 2 - i);  // a POSIX class such as [:alpha:]
          i = close + 1;
          continue;
        }
        refuse("a character class nested in a class");
      } else if (c == '&' && i + 1 < pattern.size() && pattern[i + 1] == '&') {
        refuse("a class intersection (&&)");
      }
    }
    out += c;
  }
  return out;
}

std::string regex_literal(std::string_view text) {
  std::string out;
  for (const char c : text) {
    const auto u = static_cast<unsigned char>(c);
    if (u < 0x80 && !std::isalnum(u) && u != ' ') out += '\\';
    out += c;
  }
  return out;
}

#if !SINKLAB_HAVE_PCRE2

bool split_regex_available() { return false; }

SplitRegex::SplitRegex(const std::string& pattern, const std::string& what)
    : pattern_(pattern), what_(what) {
  SINKLAB_FAIL(ConfigError,
               what << ": this sinklab was built without PCRE2, which the gpt2 and hf: tokenizers "
                       "need for their split pattern",
               "install libpcre2-dev and pkg-config (scripts/deps.sh does), then configure and "
               "build again");
}

SplitRegex::~SplitRegex() = default;

void SplitRegex::split(std::string_view, const std::function<void(size_t, size_t)>&) const {}

#else

bool split_regex_available() { return true; }

SplitRegex::SplitRegex(const std::string& pattern, const std::string& what)
    : pattern_(pattern), what_(what) {
  const std::string translated = pcre2_pattern(pattern, what);
  int error = 0;
  PCRE2_SIZE offset = 0;
  code_ = pcre2_compile(reinterpret_cast<PCRE2_SPTR>(translated.data()), translated.size(),
                        PCRE2_UTF | PCRE2_UCP | PCRE2_MATCH_INVALID_UTF, &error, &offset, nullptr);
  SINKLAB_CHECK(code_ != nullptr, ValueError,
                what << ": the pattern " << pattern << " does not compile (PCRE2: "
                     << pcre2_message(error) << " at offset " << offset << " of " << translated
                     << ")",
                "fix the regex, or use a tokenizer whose pre-tokenizer is GPT-2's ByteLevel");
  pcre2_jit_compile(code_, PCRE2_JIT_COMPLETE);  // best effort: the interpreter works without
}

SplitRegex::~SplitRegex() { pcre2_code_free(code_); }

void SplitRegex::split(std::string_view text,
                       const std::function<void(size_t, size_t)>& emit) const {
  // Per call (encode may run on several threads): match data, and a JIT stack that may grow to
  // 64 MiB for long backtracking runs such as \s+(?!\S) over megabytes of spaces.
  std::unique_ptr<pcre2_match_data, decltype(&pcre2_match_data_free)> match(
      pcre2_match_data_create_from_pattern(code_, nullptr), &pcre2_match_data_free);
  std::unique_ptr<pcre2_match_context, decltype(&pcre2_match_context_free)> context(
      pcre2_match_context_create(nullptr), &pcre2_match_context_free);
  std::unique_ptr<pcre2_jit_stack, decltype(&pcre2_jit_stack_free)> stack(
      pcre2_jit_stack_create(32 * 1024, 64 * 1024 * 1024, nullptr), &pcre2_jit_stack_free);
  SINKLAB_CHECK(match && context && stack, ValueError, what_ << ": out of memory for PCRE2",
                "free some memory");
  pcre2_jit_stack_assign(context.get(), nullptr, stack.get());
  const auto subject = reinterpret_cast<PCRE2_SPTR>(text.data());
  size_t pos = 0, gap = 0;  // next search start; start of the stretch not yet emitted
  uint32_t options = 0;
  while (pos <= text.size()) {
    const int rc = pcre2_match(code_, subject, text.size(), pos, options, match.get(), context.get());
    if (rc == PCRE2_ERROR_NOMATCH) {
      if (options == 0 || pos >= text.size()) break;
      // No non-empty match at pos after an empty one: step over one character and go on.
      options = 0;
      ++pos;
      while (pos < text.size() && (static_cast<uint8_t>(text[pos]) & 0xC0) == 0x80) ++pos;
      continue;
    }
    SINKLAB_CHECK(rc >= 0, ValueError,
                  what_ << ": matching the pattern " << pattern_ << " failed (PCRE2: "
                        << pcre2_message(rc) << ")",
                  "the text triggers a PCRE2 limit; split it into smaller parts");
    const PCRE2_SIZE* ovector = pcre2_get_ovector_pointer(match.get());
    const size_t begin = ovector[0], end = ovector[1];
    if (begin > gap) emit(gap, begin);
    if (end > begin) emit(begin, end);
    gap = end;
    // After an empty match, the next one may not be empty at the same place.
    options = end == begin ? PCRE2_NOTEMPTY_ATSTART | PCRE2_ANCHORED : 0;
    pos = end;
    if (end == begin && pos >= text.size()) break;
  }
  if (gap < text.size()) emit(gap, text.size());
}

#endif  // SINKLAB_HAVE_PCRE2

}  // namespace sinklab::train
