#include "train/io/tf_event.h"

#include <bit>

#include "core/error.h"

namespace sinklab::train {

namespace {

// Wire types (protobuf encoding spec).
constexpr uint32_t kVarint = 0, kFixed64 = 1, kBytes = 2, kFixed32 = 5;

void put_varint(std::string& out, uint64_t v) {
  for (; v >= 0x80; v >>= 7) out += static_cast<char>((v & 0x7Fu) | 0x80u);
  out += static_cast<char>(v);
}

void put_key(std::string& out, uint32_t field, uint32_t wire) {
  put_varint(out, (static_cast<uint64_t>(field) << 3) | wire);
}

void put_fixed(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFFu);
}

void put_bytes(std::string& out, uint32_t field, std::string_view bytes) {
  put_key(out, field, kBytes);
  put_varint(out, bytes.size());
  out += bytes;
}

// Reads one message's fields in order; every read checks the bounds.
class WireReader {
 public:
  WireReader(std::string_view bytes, const char* message) : b_(bytes), message_(message) {}
  bool done() const { return pos_ == b_.size(); }

  // The next field's number and wire type.
  std::pair<uint32_t, uint32_t> key() {
    const uint64_t k = varint();
    if ((k >> 3) == 0 || (k >> 3) > 0x1FFFFFFFu) fail("field number " + std::to_string(k >> 3));
    return {static_cast<uint32_t>(k >> 3), static_cast<uint32_t>(k & 7u)};
  }
  uint64_t varint() {
    uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (pos_ == b_.size()) fail("a varint runs past the end");
      const auto byte = static_cast<uint8_t>(b_[pos_++]);
      v |= static_cast<uint64_t>(byte & 0x7Fu) << shift;
      if (!(byte & 0x80u)) return v;
    }
    fail("a varint is longer than 10 bytes");
  }
  uint64_t fixed(int bytes) {
    if (b_.size() - pos_ < static_cast<size_t>(bytes)) fail("a fixed-width value runs past the end");
    uint64_t v = 0;
    for (int i = 0; i < bytes; ++i)
      v |= static_cast<uint64_t>(static_cast<uint8_t>(b_[pos_++])) << (8 * i);
    return v;
  }
  std::string_view bytes() {
    const uint64_t n = varint();
    if (n > b_.size() - pos_) fail("a length of " + std::to_string(n) + " runs past the end");
    const std::string_view out = b_.substr(pos_, n);
    pos_ += n;
    return out;
  }
  void skip(uint32_t wire) {
    switch (wire) {
      case kVarint: varint(); return;
      case kFixed64: fixed(8); return;
      case kBytes: bytes(); return;
      case kFixed32: fixed(4); return;
      default: fail("wire type " + std::to_string(wire) + " (groups are not supported)");
    }
  }
  [[noreturn]] void fail(const std::string& what) const {
    SINKLAB_FAIL(IOError, "malformed " << message_ << " protobuf at byte " << pos_ << " of "
                                       << b_.size() << ": " << what,
                 "the events file is damaged or was not written by TensorBoard or sinklab");
  }

 private:
  std::string_view b_;
  const char* message_;
  size_t pos_ = 0;
};

void decode_value(std::string_view bytes, std::vector<ScalarValue>& out) {
  WireReader r(bytes, "Summary.Value");
  ScalarValue v;
  bool simple = false;
  while (!r.done()) {
    const auto [field, wire] = r.key();
    if (field == 1 && wire == kBytes) {
      v.tag = r.bytes();
    } else if (field == 2 && wire == kFixed32) {
      v.value = std::bit_cast<float>(static_cast<uint32_t>(r.fixed(4)));
      simple = true;
    } else {
      r.skip(wire);
    }
  }
  if (simple) out.push_back(std::move(v));
}

void decode_summary(std::string_view bytes, std::vector<ScalarValue>& out) {
  WireReader r(bytes, "Summary");
  while (!r.done()) {
    const auto [field, wire] = r.key();
    if (field == 1 && wire == kBytes)
      decode_value(r.bytes(), out);
    else
      r.skip(wire);
  }
}

}  // namespace

std::string encode_event(const Event& e) {
  std::string out;
  if (e.wall_time != 0) {
    put_key(out, 1, kFixed64);
    put_fixed(out, std::bit_cast<uint64_t>(e.wall_time), 8);
  }
  if (e.step != 0) {
    put_key(out, 2, kVarint);
    put_varint(out, static_cast<uint64_t>(e.step));  // negative: ten bytes, as int64 is
  }
  if (!e.file_version.empty()) {
    put_bytes(out, 3, e.file_version);
  } else if (!e.scalars.empty()) {
    std::string summary, value;
    for (const ScalarValue& s : e.scalars) {
      value.clear();
      if (!s.tag.empty()) put_bytes(value, 1, s.tag);
      put_key(value, 2, kFixed32);
      put_fixed(value, std::bit_cast<uint32_t>(s.value), 4);
      put_bytes(summary, 1, value);
    }
    put_bytes(out, 5, summary);
  }
  return out;
}

Event decode_event(std::string_view bytes) {
  Event e;
  WireReader r(bytes, "Event");
  while (!r.done()) {
    const auto [field, wire] = r.key();
    if (field == 1 && wire == kFixed64)
      e.wall_time = std::bit_cast<double>(r.fixed(8));
    else if (field == 2 && wire == kVarint)
      e.step = static_cast<int64_t>(r.varint());
    else if (field == 3 && wire == kBytes)
      e.file_version = r.bytes();
    else if (field == 5 && wire == kBytes)
      decode_summary(r.bytes(), e.scalars);
    else
      r.skip(wire);
  }
  return e;
}

}  // namespace sinklab::train
