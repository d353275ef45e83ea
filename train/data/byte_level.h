// GPT-2's byte-level alphabet (`bytes_to_unicode` of OpenAI's encoder.py, used by tiktoken's
// gpt2 files and by Hugging Face's ByteLevel pre-tokenizer and decoder): every byte 0..255 is
// one printable Unicode character, so a token's bytes can be written as a JSON string.
// Printable Latin-1 bytes (0x21-0x7E, 0xA1-0xAC, 0xAE-0xFF) stand for themselves; the other 68
// bytes, in increasing order, become U+0100..U+0143 (space 0x20 -> U+0120 'Ġ', '\n' -> U+010A 'Ċ').
#pragma once
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace sinklab::train {

// The code point that stands for `byte`.
char32_t byte_level_char(uint8_t byte);
// byte_level_char's inverse; nullopt for a code point outside the alphabet.
std::optional<uint8_t> byte_level_byte(char32_t c);

// Raw bytes -> the UTF-8 of their byte-level characters ("\n hi" -> "ĊĠhi").
std::string byte_level_encode(std::string_view bytes);
// UTF-8 of byte-level characters -> raw bytes; nullopt when `text` is not valid UTF-8 or holds
// a character outside the alphabet.
std::optional<std::string> byte_level_decode(std::string_view text);

// UTF-8 helpers shared by the tokenizer files. append_utf8 writes one code point; next_utf8
// reads the code point at text[pos] and advances pos, or returns nullopt (pos unchanged) on an
// invalid, overlong or surrogate sequence.
void append_utf8(std::string& out, char32_t c);
std::optional<char32_t> next_utf8(std::string_view text, size_t& pos);

}  // namespace sinklab::train
