#include "train/io/tf_record.h"

#include "train/io/crc32c.h"

namespace sinklab::train {

namespace {

void put_le(std::string& out, uint64_t v, int bytes) {
  for (int i = 0; i < bytes; ++i) out += static_cast<char>((v >> (8 * i)) & 0xFFu);
}

uint64_t get_le(const char* p, int bytes) {
  uint64_t v = 0;
  for (int i = 0; i < bytes; ++i) v |= static_cast<uint64_t>(static_cast<uint8_t>(p[i])) << (8 * i);
  return v;
}

}  // namespace

std::string frame_record(std::string_view data) {
  std::string out;
  out.reserve(data.size() + kRecordOverhead);
  put_le(out, data.size(), 8);
  put_le(out, mask_crc32c(crc32c(out)), 4);
  out += data;
  put_le(out, mask_crc32c(crc32c(data)), 4);
  return out;
}

bool RecordReader::next(std::string& data) {
  if (stop_ != Stop::Reading) return false;
  const uint64_t left = size_ - good_;
  if (left == 0) {
    stop_ = Stop::End;
    return false;
  }
  char header[kRecordHeaderBytes];
  if (left < kRecordHeaderBytes || !in_.read(header, sizeof header)) {
    stop_ = Stop::Torn;
    return false;
  }
  if (mask_crc32c(crc32c(std::string_view(header, 8))) != get_le(header + 8, 4)) {
    stop_ = Stop::Corrupt;  // the length itself cannot be trusted
    return false;
  }
  const uint64_t length = get_le(header, 8);
  if (left < kRecordOverhead || length > left - kRecordOverhead) {  // no allocation past the end
    stop_ = Stop::Torn;
    return false;
  }
  data.resize(length);
  char footer[4];
  if (!in_.read(data.data(), static_cast<std::streamsize>(length)) || !in_.read(footer, 4)) {
    stop_ = Stop::Torn;  // the stream was shorter than `size` said
    return false;
  }
  if (mask_crc32c(crc32c(data)) != get_le(footer, 4)) {
    stop_ = Stop::Corrupt;
    return false;
  }
  good_ += kRecordOverhead + length;
  return true;
}

}  // namespace sinklab::train
