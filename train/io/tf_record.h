// TFRecord framing, the container of TensorBoard event files. Each record is
//   uint64 length | uint32 masked CRC-32C of those 8 bytes | `length` bytes of data |
//   uint32 masked CRC-32C of the data
// all little-endian (train/io/crc32c.h: the CRC and its mask).
#pragma once
#include <cstdint>
#include <istream>
#include <string>
#include <string_view>

namespace sinklab::train {

constexpr uint64_t kRecordHeaderBytes = 12;  // length and its CRC
constexpr uint64_t kRecordOverhead = 16;     // header and the data's CRC

// `data` framed as one record.
std::string frame_record(std::string_view data);

// Reads records one after another from the start of a stream of `size` bytes, checking both
// CRCs before trusting a length or the data. It stops at the end of the stream or at the first
// record that is cut short or fails a check: a crash while appending tears only the last
// record, and nothing after a damaged record can be found again.
class RecordReader {
 public:
  enum class Stop {
    Reading,  // not stopped yet
    End,      // the stream ends where a record ends
    Torn,     // the stream ends inside a record (header or data cut short)
    Corrupt,  // a length or data CRC does not match
  };
  RecordReader(std::istream& in, uint64_t size) : in_(in), size_(size) {}
  // The next record's data; false when there is none (stop() says why).
  bool next(std::string& data);
  // Bytes from the start of the stream to the end of the last record next() returned.
  uint64_t good_bytes() const { return good_; }
  Stop stop() const { return stop_; }

 private:
  std::istream& in_;
  uint64_t size_;
  uint64_t good_ = 0;
  Stop stop_ = Stop::Reading;
};

}  // namespace sinklab::train
