// TensorBoard events files: CRC-32C on its standard vectors, TFRecord framing and its reader
// (torn and damaged records), the Event/Summary protobuf bytes against the wire-format spec,
// the tags of a step record, and the events file of a variant: fresh start, resume cut-back
// over a torn tail, a file that is not ours. scripts/interop_tensorboard.py and
// tests/tensorboard_test.sh read the files with protobuf and TensorBoard themselves.
#include <bit>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string>
#include <vector>

#include "core/error.h"
#include "tests/catch.h"
#include "tests/helpers.h"
#include "tests/train/train_test_util.h"
#include "train/io/crc32c.h"
#include "train/io/tensorboard_log.h"
#include "train/io/tf_event.h"
#include "train/io/tf_record.h"

using namespace sinklab;
using namespace sinklab::train;
namespace fs = std::filesystem;

namespace {

std::string bytes(std::initializer_list<int> list) {
  std::string out;
  for (int b : list) out += static_cast<char>(b);
  return out;
}

std::string read_all(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), {});
}

void append_bytes(const std::string& path, const std::string& data) {
  std::ofstream(path, std::ios::binary | std::ios::app) << data;
}

// All records of `blob` and where the reader stopped.
std::pair<std::vector<std::string>, RecordReader> read_records(const std::string& blob,
                                                               std::istringstream& in) {
  in.str(blob);
  RecordReader reader(in, blob.size());
  std::vector<std::string> out;
  for (std::string data; reader.next(data);) out.push_back(data);
  return {out, reader};
}

// A step record with every per-step number set and, when `layers` > 0, sink metrics of that
// many layers with two heads.
StepRecord record_at(int64_t step, size_t layers) {
  StepRecord r;
  r.step = step;
  r.loss = 4.0 - 0.1 * static_cast<double>(step);
  r.lr = 1e-3;
  r.grad_norm = 0.5;
  r.tokens_per_s = 1000;
  r.step_ms = 2;
  r.mfu = std::numeric_limits<double>::quiet_NaN();  // a CPU: left out
  r.memory_mib = 64;
  r.memory_peak_mib = 96;
  r.val_loss = r.val_loss_se = std::numeric_limits<double>::quiet_NaN();
  r.has_sink = layers > 0;
  r.sink.sink_rate = 25;
  r.sink.sink_onset = -1;
  r.sink.dim_disparity_mean = r.sink.dim_disparity_normed_mean = 3;
  r.sink.effective_rank_output_mean = std::numeric_limits<double>::quiet_NaN();
  for (size_t l = 0; l < layers; ++l) {
    LayerMetrics m;
    m.sink_mass = {0.25 + static_cast<double>(l), 0.75};
    m.alpha0 = {0.5, std::numeric_limits<double>::quiet_NaN()};
    m.var_pos = {1, 2, 3};
    m.var_pos_normed = {1, 1, 1};
    m.massive_top[0] = 9;
    m.massive_top[1] = 8;
    m.massive_top[2] = 7;
    m.dim_disparity = 2.5;
    m.effective_rank = std::numeric_limits<double>::quiet_NaN();
    r.sink.layers.push_back(m);
  }
  return r;
}

float value_of(const std::vector<ScalarValue>& values, const std::string& tag) {
  for (const ScalarValue& v : values)
    if (v.tag == tag) return v.value;
  FAIL("no tag " << tag);
  return 0;
}

bool has_tag(const std::vector<ScalarValue>& values, const std::string& tag) {
  for (const ScalarValue& v : values)
    if (v.tag == tag) return true;
  return false;
}

// Writes steps [from, to) through a TensorBoardLog of `dir` (keep_before_step as given).
std::string log_steps(const fs::path& dir, int64_t keep_before_step, int64_t from, int64_t to) {
  TensorBoardLog log(dir.string(), keep_before_step);
  for (int64_t s = from; s < to; ++s) log.write(record_at(s, 1));
  log.flush();
  return log.path();
}

}  // namespace

TEST_CASE("crc32c: the check value and the RFC 3720 (iSCSI) test vectors", "[tensorboard]") {
  REQUIRE(crc32c("123456789") == 0xE3069283u);
  REQUIRE(crc32c("") == 0u);
  // RFC 3720 appendix B.4.
  REQUIRE(crc32c(std::string(32, '\0')) == 0x8A9136AAu);
  REQUIRE(crc32c(std::string(32, '\xff')) == 0x62A8AB43u);
  std::string up, down;
  for (int i = 0; i < 32; ++i) {
    up += static_cast<char>(i);
    down += static_cast<char>(31 - i);
  }
  REQUIRE(crc32c(up) == 0x46DD794Eu);
  REQUIRE(crc32c(down) == 0x113FDB5Cu);
  const std::string read_pdu = bytes({0x01, 0xc0, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
                                      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
                                      0x14, 0x00, 0x00, 0x00, 0x00, 0x00, 0x04, 0x00,  //
                                      0x00, 0x00, 0x00, 0x14, 0x00, 0x00, 0x00, 0x18,  //
                                      0x28, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00,  //
                                      0x02, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0x00});
  REQUIRE(crc32c(read_pdu) == 0xD9963A56u);
}

TEST_CASE("crc32c: TFRecord's mask rotates right by 15 and adds 0xa282ead8", "[tensorboard]") {
  REQUIRE(mask_crc32c(0) == 0xA282EAD8u);
  REQUIRE(mask_crc32c(1) == 0xA284EAD8u);       // bit 0 rotates to bit 17
  REQUIRE(mask_crc32c(0x8000) == 0xA282EAD9u);  // bit 15 rotates to bit 0
  // 0xE3069283: >> 15 = 0x0001C60D, << 17 = 0x25060000, or 0x2507C60D, + 0xa282ead8 (mod 2^32).
  REQUIRE(mask_crc32c(0xE3069283u) == 0xC78AB0E5u);
  REQUIRE(mask_crc32c(0xFFFFFFFFu) == 0xA282EAD7u);  // wraps around 2^32
}

TEST_CASE("tf_record: framing is length, its masked CRC, data, the data's masked CRC",
          "[tensorboard]") {
  // Empty data: 8 zero bytes; CRC-32C of them 0x8C28B28A masks to 0x07980329; of "" 0 masks
  // to 0xa282ead8. All little-endian.
  REQUIRE(frame_record("") == bytes({0, 0, 0, 0, 0, 0, 0, 0, 0x29, 0x03, 0x98, 0x07,  //
                                     0xd8, 0xea, 0x82, 0xa2}));
  REQUIRE(crc32c(std::string(8, '\0')) == 0x8C28B28Au);
  for (size_t n : {1u, 127u, 128u, 300u, 70000u}) {
    INFO(n);
    const std::string data(n, 'x');
    const std::string framed = frame_record(data);
    REQUIRE(framed.size() == n + kRecordOverhead);
    std::string length;
    for (int i = 0; i < 8; ++i) length += static_cast<char>((n >> (8 * i)) & 0xFF);
    REQUIRE(framed.substr(0, 8) == length);
    const uint32_t length_crc = mask_crc32c(crc32c(length)), data_crc = mask_crc32c(crc32c(data));
    REQUIRE(framed.substr(8, 4) == bytes({static_cast<int>(length_crc & 0xFF),
                                          static_cast<int>((length_crc >> 8) & 0xFF),
                                          static_cast<int>((length_crc >> 16) & 0xFF),
                                          static_cast<int>(length_crc >> 24)}));
    REQUIRE(framed.substr(12, n) == data);
    REQUIRE(framed.substr(12 + n) == bytes({static_cast<int>(data_crc & 0xFF),
                                            static_cast<int>((data_crc >> 8) & 0xFF),
                                            static_cast<int>((data_crc >> 16) & 0xFF),
                                            static_cast<int>(data_crc >> 24)}));
  }
}

TEST_CASE("tf_record: the reader returns whole records and stops at a torn or damaged one",
          "[tensorboard]") {
  const std::vector<std::string> data = {"first", "", std::string(300, 'z')};
  std::string blob;
  for (const std::string& d : data) blob += frame_record(d);
  const uint64_t second_end = 2 * kRecordOverhead + 5;
  std::istringstream in;
  {
    auto [records, reader] = read_records(blob, in);
    REQUIRE(records == data);
    REQUIRE(reader.stop() == RecordReader::Stop::End);
    REQUIRE(reader.good_bytes() == blob.size());
  }
  // Cut inside the third record's header, data and data CRC: the first two stay.
  for (size_t cut : {1u, 11u, 12u, 200u, 315u}) {
    INFO("cut " << cut << " bytes into the third record");
    auto [records, reader] = read_records(blob.substr(0, second_end + cut), in);
    REQUIRE(records == std::vector<std::string>(data.begin(), data.begin() + 2));
    REQUIRE(reader.stop() == RecordReader::Stop::Torn);
    REQUIRE(reader.good_bytes() == second_end);
  }
  // A flipped bit in the second record's length, and in its... first record's data.
  for (uint64_t at : {kRecordOverhead + 5, uint64_t{14}}) {
    INFO("bit flipped at byte " << at);
    std::string bad = blob;
    bad[at] = static_cast<char>(bad[at] ^ 0x04);
    auto [records, reader] = read_records(bad, in);
    REQUIRE(reader.stop() == RecordReader::Stop::Corrupt);
    REQUIRE(records.size() == (at == 14 ? 0u : 1u));
    REQUIRE(reader.good_bytes() == (at == 14 ? 0u : kRecordOverhead + 5));
  }
  // A length with a good CRC that claims more than the file holds: torn, nothing allocated.
  std::string huge;
  for (int i = 0; i < 8; ++i) huge += static_cast<char>(i == 7 ? 0x40 : 0);  // 2^62
  const uint32_t crc = mask_crc32c(crc32c(huge));
  for (int i = 0; i < 4; ++i) huge += static_cast<char>((crc >> (8 * i)) & 0xFF);
  auto [records, reader] = read_records(huge + "tail", in);
  REQUIRE(records.empty());
  REQUIRE(reader.stop() == RecordReader::Stop::Torn);
}

TEST_CASE("tf_event: an Event with a scalar is the protobuf wire format, byte for byte",
          "[tensorboard]") {
  Event e;
  e.wall_time = 1.5;
  e.step = 3;
  e.scalars = {{"loss", 2.0f}};
  const std::string expected = bytes({
      0x09,                                            // field 1 (wall_time), wire type 1
      0x00, 0x00, 0x00, 0x00, 0x00, 0x00, 0xf8, 0x3f,  // 1.5 as a little-endian double
      0x10, 0x03,                                      // field 2 (step), varint 3
      0x2a, 0x0d,                                      // field 5 (summary), 13 bytes
      0x0a, 0x0b,                                      //   field 1 (value), 11 bytes
      0x0a, 0x04, 'l', 'o', 's', 's',                  //     field 1 (tag), 4 bytes
      0x15, 0x00, 0x00, 0x00, 0x40,                    //     field 2 (simple_value), 2.0f
  });
  REQUIRE(encode_event(e) == expected);

  Event header;  // the first record of a file: step 0 and the summary are left out
  header.wall_time = 2.0;
  header.file_version = kEventFileVersion;
  REQUIRE(encode_event(header) ==
          bytes({0x09, 0, 0, 0, 0, 0, 0, 0, 0x40,  // 2.0
                 0x1a, 0x0d}) + "brain.Event:2");  // field 3 (file_version), 13 bytes

  Event zero;  // multi-byte varints; a zero simple_value is still written (a oneof member)
  zero.step = 300;
  zero.scalars = {{"x", 0.0f}, {"y", -1.0f}};
  REQUIRE(encode_event(zero) == bytes({0x10, 0xac, 0x02,  // 300 = 0b10'0101100
                                       0x2a, 0x14,        // 20 bytes: two values of 10
                                       0x0a, 0x08, 0x0a, 0x01, 'x', 0x15, 0, 0, 0, 0,
                                       0x0a, 0x08, 0x0a, 0x01, 'y', 0x15, 0, 0, 0x80, 0xbf}));
  Event negative;  // int64 -1: ten bytes
  negative.step = -1;
  REQUIRE(encode_event(negative) ==
          bytes({0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01}));
  Event long_tag;  // a 200-byte tag: its length takes two bytes (0xc8 0x01)
  long_tag.scalars = {{std::string(200, 't'), 1.0f}};
  const std::string encoded = encode_event(long_tag);
  // summary 211 bytes (0xd3 0x01), value 208 (0xd0 0x01): tag 1 + 2 + 200, simple_value 5.
  REQUIRE(encoded.substr(0, 7) == bytes({0x2a, 0xd3, 0x01, 0x0a, 0xd0, 0x01, 0x0a}));
  REQUIRE(encoded.substr(7, 2) == bytes({0xc8, 0x01}));
  REQUIRE(encoded.size() == 3 + 3 + 3 + 200 + 5);
}

TEST_CASE("tf_event: decoding gives the fields back and skips what it does not know",
          "[tensorboard]") {
  for (const Event& e : {Event{1.5, 3, "", {{"loss", 2.0f}, {"val/val_loss", -0.0f}}},
                         Event{1.7e9, 0, kEventFileVersion, {}},
                         Event{0, int64_t{3} << 40, "", {{std::string(200, 't'), 3e38f}}}}) {
    const Event back = decode_event(encode_event(e));
    REQUIRE(back.wall_time == e.wall_time);
    REQUIRE(back.step == e.step);
    REQUIRE(back.file_version == e.file_version);
    REQUIRE(back.scalars.size() == e.scalars.size());
    for (size_t i = 0; i < e.scalars.size(); ++i) {
      REQUIRE(back.scalars[i].tag == e.scalars[i].tag);
      REQUIRE(std::bit_cast<uint32_t>(back.scalars[i].value) ==
              std::bit_cast<uint32_t>(e.scalars[i].value));
    }
  }
  // Unknown fields of each wire type, a value with plugin metadata (field 9), and a value
  // without simple_value (an image, field 4): skipped.
  const std::string value = bytes({0x0a, 0x01, 'a', 0x4a, 0x02, 0x0a, 0x00, 0x15, 0, 0, 0x80, 0x3f});
  const std::string image = bytes({0x0a, 0x01, 'i', 0x22, 0x00});
  const std::string summary = bytes({0x0a, static_cast<int>(value.size())}) + value +
                              bytes({0x0a, static_cast<int>(image.size())}) + image;
  const std::string event = bytes({0x78, 0x05,                          // field 15, varint
                                   0x10, 0x07,                          // step 7
                                   0x61, 1, 2, 3, 4, 5, 6, 7, 8,        // field 12, fixed64
                                   0x6d, 1, 2, 3, 4,                    // field 13, fixed32
                                   0x2a, static_cast<int>(summary.size())}) +
                            summary;
  const Event back = decode_event(event);
  REQUIRE(back.step == 7);
  REQUIRE(back.scalars.size() == 1);
  REQUIRE(back.scalars[0].tag == "a");
  REQUIRE(back.scalars[0].value == 1.0f);
  // Malformed bytes are an IOError that says where.
  for (const std::string& bad : {bytes({0x10}), bytes({0x10, 0x80}), bytes({0x2a, 0x05, 0x0a}),
                                 bytes({0x09, 0, 0}), bytes({0x0b}), bytes({0x00, 0x00}),
                                 bytes({0x10, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff,
                                        0xff, 0xff, 0x01})}) {
    INFO("bytes of " << bad.size());
    const std::string message = test::error_message<IOError>([&] { decode_event(bad); });
    REQUIRE(test::contains(message, "malformed"));
    REQUIRE(test::contains(message, "protobuf at byte"));
  }
}

TEST_CASE("tensorboard: a step record's tags, by metrics.jsonl name", "[tensorboard]") {
  SECTION("per-step numbers in their sections; NaN left out") {
    const std::vector<ScalarValue> v = tensorboard_scalars(record_at(5, 0));
    std::vector<std::string> tags;
    for (const ScalarValue& s : v) tags.push_back(s.tag);
    REQUIRE(tags == std::vector<std::string>{"train/loss", "train/lr", "train/grad_norm",
                                             "train/tokens_per_s", "train/step_ms",
                                             "train/memory_mib", "train/skipped",
                                             "train/memory_peak_mib"});
    REQUIRE(value_of(v, "train/loss") == static_cast<float>(4.0 - 0.5));
    REQUIRE(value_of(v, "train/skipped") == 0.0f);
  }
  SECTION("per-layer numbers; head means, the largest of the top 3, no position profiles") {
    StepRecord r = record_at(2, 2);
    r.val_loss = 3.25;
    const std::vector<ScalarValue> v = tensorboard_scalars(r);
    REQUIRE(value_of(v, "val/val_loss") == 3.25f);
    REQUIRE_FALSE(has_tag(v, "val/val_loss_se"));
    REQUIRE(value_of(v, "sinks/sink_rate") == 25.0f);
    REQUIRE(value_of(v, "sinks/sink_onset") == -1.0f);
    REQUIRE(value_of(v, "sinks/dim_disparity_normed_mean") == 3.0f);
    REQUIRE_FALSE(has_tag(v, "sinks/effective_rank_output_mean"));
    REQUIRE(value_of(v, "dim_disparity/layer_00") == 2.5f);
    REQUIRE(value_of(v, "dim_disparity/layer_01") == 2.5f);
    REQUIRE_FALSE(has_tag(v, "effective_rank/layer_00"));
    REQUIRE(value_of(v, "sink_mass/layer_00") == 0.5f);  // (0.25 + 0.75) / 2
    REQUIRE(value_of(v, "sink_mass/layer_01") == 1.0f);  // (1.25 + 0.75) / 2
    REQUIRE(value_of(v, "alpha0/layer_01") == 0.5f);     // the finite head only
    REQUIRE(value_of(v, "massive_top/layer_00") == 9.0f);
    REQUIRE_FALSE(has_tag(v, "var_pos/layer_00"));
    REQUIRE_FALSE(has_tag(v, "var_pos_normed/layer_00"));
    REQUIRE_FALSE(has_tag(v, "sink_mass/layer_02"));
  }
  SECTION("the layer index is padded to the widest: three digits past 100 layers") {
    const std::vector<ScalarValue> v = tensorboard_scalars(record_at(0, 101));
    REQUIRE(has_tag(v, "sink_score/layer_000"));
    REQUIRE(has_tag(v, "sink_score/layer_100"));
    REQUIRE_FALSE(has_tag(v, "sink_score/layer_00"));
  }
  REQUIRE(events_file_name(1700000000, "gpu-7") == "events.out.tfevents.1700000000.gpu-7.sinklab");
}

TEST_CASE("tensorboard: a fresh log replaces earlier files, a resume cuts back over a torn tail",
          "[tensorboard]") {
  test::TempDir dir;
  const std::string foreign = dir.write("events.out.tfevents.1.other", "not ours");
  dir.write("events.out.tfevents.1.old.sinklab", "an earlier run's");
  const std::string path = log_steps(dir.path, -1, 0, 10);
  REQUIRE(fs::exists(foreign));  // only sinklab's own files are replaced
  REQUIRE(sinklab_events_files(dir.path.string()) == std::vector<std::string>{path});
  std::vector<Event> events = test::events_in(dir.path);
  REQUIRE(test::event_steps(events) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8, 9});
  REQUIRE(events[4].scalars[0].tag == "train/loss");
  REQUIRE(events[4].scalars[0].value == static_cast<float>(4.0 - 0.3));
  const std::string before = read_all(path);

  // A crash tore the last record: the resume at step 6 keeps steps 0-5 byte for byte.
  append_bytes(path, before.substr(0, 20));
  REQUIRE(log_steps(dir.path, 6, 6, 9) == path);
  events = test::events_in(dir.path);
  REQUIRE(test::event_steps(events) == std::vector<int64_t>{0, 1, 2, 3, 4, 5, 6, 7, 8});
  const std::string after = read_all(path);
  uint64_t kept = 0;
  {
    std::istringstream in(before);
    RecordReader reader(in, before.size());
    for (std::string data; reader.next(data) && (kept == 0 || decode_event(data).step < 6);)
      kept = reader.good_bytes();
  }
  REQUIRE(after.substr(0, kept) == before.substr(0, kept));
  REQUIRE(events[7].wall_time >= events[6].wall_time);

  // Cut back to step 0: the file_version record alone; to a later step than any: all kept.
  REQUIRE(cut_back_events_file(path, 100) == after.size());
  REQUIRE(cut_back_events_file(path, 0) == kRecordOverhead + encode_event(events[0]).size());
  REQUIRE(test::event_steps(test::events_in(dir.path)).empty());
}

TEST_CASE("tensorboard: a file that does not start with file_version is started over; one with "
          "a bad record is refused by name", "[tensorboard]") {
  test::TempDir dir;
  Event first;
  first.step = 1;
  first.scalars = {{"train/loss", 1.0f}};
  const std::string path = dir.write("events.out.tfevents.5.h.sinklab", frame_record(encode_event(first)));
  REQUIRE(cut_back_events_file(path, 10) == 0);
  REQUIRE(fs::file_size(path) == 0);
  log_steps(dir.path, 10, 10, 12);
  REQUIRE(test::event_steps(test::events_in(dir.path)) == std::vector<int64_t>{10, 11});

  Event header;
  header.file_version = kEventFileVersion;
  dir.write("events.out.tfevents.5.h.sinklab",
            frame_record(encode_event(header)) + frame_record(bytes({0x10})));  // good CRCs
  const std::string message =
      test::error_message<IOError>([&] { cut_back_events_file(path, 10); });
  REQUIRE(test::contains(message, path));
  REQUIRE(test::contains(message, "has good CRCs but malformed Event"));
}
