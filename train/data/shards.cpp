// llm.c token shards: 256 x int32 header (magic, version, token count, zeros), then the tokens
// (uint16 for version 1, uint32 for version 2). Little-endian, like llm.c's files.
#include "train/data/shards.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cerrno>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <sstream>
#include <string_view>

#include "core/error.h"
#include "train/io/atomic_file.h"

namespace sinklab::train {

namespace fs = std::filesystem;

static_assert(std::endian::native == std::endian::little,
              "shard files are little-endian; add byte swapping for this host");

namespace {

constexpr int kHeaderInts = 256;
constexpr int64_t kHeaderBytes = kHeaderInts * 4;

// '*' matches any run of characters (including none); everything else matches itself.
bool glob_match(std::string_view pattern, std::string_view name) {
  size_t p = 0, n = 0, star = std::string_view::npos, mark = 0;
  while (n < name.size()) {
    if (p < pattern.size() && pattern[p] == '*') {
      star = p++;
      mark = n;
    } else if (p < pattern.size() && pattern[p] == name[n]) {
      ++p;
      ++n;
    } else if (star != std::string_view::npos) {
      p = star + 1;
      n = ++mark;
    } else {
      return false;
    }
  }
  while (p < pattern.size() && pattern[p] == '*') ++p;
  return p == pattern.size();
}

}  // namespace

void write_shard(const std::string& path, const std::vector<int32_t>& tokens) {
  SINKLAB_CHECK(tokens.size() <= static_cast<size_t>(std::numeric_limits<int32_t>::max()),
                ValueError,
                path << ": " << tokens.size() << " tokens do not fit one shard (at most 2^31-1)",
                "split the tokens over several shards (prepare.shard_tokens)");
  int32_t max_id = 0;
  for (size_t i = 0; i < tokens.size(); ++i) {
    SINKLAB_CHECK(tokens[i] >= 0, ValueError,
                  path << ": token " << i << " is negative (" << tokens[i] << ")",
                  "token ids must be in [0, vocab_size)");
    max_id = std::max(max_id, tokens[i]);
  }
  const int32_t version = max_id < 65536 ? 1 : 2;
  int32_t header[kHeaderInts] = {};
  header[0] = kShardMagic;
  header[1] = version;
  header[2] = static_cast<int32_t>(tokens.size());

  AtomicFile file(path);
  file.write(header, sizeof header);
  // Convert and write in blocks so a big shard needs no second full copy.
  constexpr size_t kBlock = 1 << 20;
  if (version == 1) {
    std::vector<uint16_t> buf;
    for (size_t i = 0; i < tokens.size(); i += kBlock) {
      const size_t n = std::min(kBlock, tokens.size() - i);
      buf.assign(tokens.begin() + i, tokens.begin() + i + n);
      file.write(buf.data(), n * sizeof(uint16_t));
    }
  } else {
    file.write(tokens.data(), tokens.size() * sizeof(int32_t));  // ids >= 0: same bits
  }
  file.commit();
}

std::vector<int32_t> read_shard(const std::string& path, bool allow_raw) {
  std::error_code ec;
  SINKLAB_CHECK(fs::is_regular_file(path, ec), IOError, path << ": shard file not found",
                "run `sinklab prepare <config>` to write the shards, or check data.dir");
  const uint64_t size = fs::file_size(path, ec);
  SINKLAB_CHECK(!ec, IOError, path << ": cannot get the file size (" << ec.message() << ")",
                "check permissions");
  std::ifstream in(path, std::ios::binary);
  SINKLAB_CHECK(in.good(), IOError, path << ": cannot open for reading", "check permissions");
  auto read_bytes = [&](void* dst, uint64_t bytes) {
    in.read(static_cast<char*>(dst), static_cast<std::streamsize>(bytes));
    SINKLAB_CHECK(static_cast<uint64_t>(in.gcount()) == bytes, IOError,
                  path << ": read " << in.gcount() << " of " << bytes
                       << " bytes (file changed while reading?)",
                  "re-run `sinklab prepare <config>`");
  };

  int32_t header[kHeaderInts] = {};
  const bool has_magic = size >= static_cast<uint64_t>(kHeaderBytes) &&
                         (read_bytes(header, kHeaderBytes), true) && header[0] == kShardMagic;
  if (!has_magic) {
    if (!allow_raw) {
      if (size < static_cast<uint64_t>(kHeaderBytes))
        SINKLAB_FAIL(IOError,
                     path << ": " << size << " bytes, too small for the 1024-byte shard header",
                     "the file is truncated or not a token shard; re-run `sinklab prepare`");
      SINKLAB_FAIL(
          IOError,
          path << ": not a token shard (magic " << header[0] << ", expected " << kShardMagic << ")",
          "the file is damaged or of another format; re-run `sinklab prepare` (headerless "
          "nanoGPT .bin files are read only where raw files are allowed)");
    }
    SINKLAB_CHECK(size % 2 == 0, IOError,
                  path << ": no shard header and an odd size (" << size
                       << " bytes), so not a raw uint16 token stream either",
                  "the file is truncated or not a token file");
    std::vector<uint16_t> raw(size / 2);
    in.clear();
    in.seekg(0);
    read_bytes(raw.data(), size);
    return std::vector<int32_t>(raw.begin(), raw.end());
  }

  const int32_t version = header[1];
  SINKLAB_CHECK(version == 1 || version == 2, IOError,
                path << ": shard version " << version
                     << " is not supported (1: uint16 tokens, 2: uint32 tokens)",
                "the file was written by a newer tool or is damaged; re-run `sinklab prepare`");
  const int64_t count = header[2];
  SINKLAB_CHECK(count >= 0, IOError, path << ": negative token count " << count << " in the header",
                "the file is damaged; re-run `sinklab prepare`");
  const uint64_t width = version == 1 ? 2 : 4;
  const uint64_t payload = size - kHeaderBytes;
  if (payload != static_cast<uint64_t>(count) * width) {
    std::ostringstream held;
    held << payload / width << " tokens";
    if (payload % width) held << " and " << payload % width << " stray bytes";
    SINKLAB_FAIL(IOError,
                 path << ": token count " << count << " in the header but the file holds "
                      << held.str()
                      << (payload < static_cast<uint64_t>(count) * width ? " (truncated?)"
                                                                         : " (trailing data?)"),
                 "the file is damaged or was not completely written; re-run `sinklab prepare`");
  }
  std::vector<int32_t> tokens(static_cast<size_t>(count));
  if (version == 1) {
    std::vector<uint16_t> buf(static_cast<size_t>(count));
    read_bytes(buf.data(), payload);
    std::copy(buf.begin(), buf.end(), tokens.begin());
  } else {
    read_bytes(tokens.data(), payload);
    for (size_t i = 0; i < tokens.size(); ++i)
      SINKLAB_CHECK(tokens[i] >= 0, IOError,
                    path << ": token " << i << " is " << static_cast<uint32_t>(tokens[i])
                         << ", beyond the int32 id range",
                    "the file is damaged; re-run `sinklab prepare`");
  }
  return tokens;
}

bool natural_less(const std::string& a, const std::string& b) {
  const auto digit = [](char c) { return c >= '0' && c <= '9'; };
  size_t i = 0, j = 0;
  while (i < a.size() && j < b.size()) {
    if (digit(a[i]) && digit(b[j])) {  // two numbers: fewer significant digits is smaller
      size_t i_end = i, j_end = j;
      while (i_end < a.size() && digit(a[i_end])) ++i_end;
      while (j_end < b.size() && digit(b[j_end])) ++j_end;
      size_t i_sig = i, j_sig = j;
      while (i_sig + 1 < i_end && a[i_sig] == '0') ++i_sig;
      while (j_sig + 1 < j_end && b[j_sig] == '0') ++j_sig;
      const std::string_view x(a.data() + i_sig, i_end - i_sig), y(b.data() + j_sig, j_end - j_sig);
      if (x.size() != y.size()) return x.size() < y.size();
      if (x != y) return x < y;
      if (i_end - i != j_end - j) return i_end - i < j_end - j;  // 007 before 0007: a fixed order
      i = i_end;
      j = j_end;
    } else {
      if (a[i] != b[j]) return a[i] < b[j];
      ++i;
      ++j;
    }
  }
  return a.size() - i < b.size() - j;
}

std::vector<std::string> list_files(const std::string& dir, const std::string& pattern) {
  std::vector<std::pair<std::string, std::string>> found;  // (name, path)
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return {};  // callers report "nothing matches"
  for (fs::directory_iterator it(dir, ec), end; !ec && it != end; it.increment(ec)) {
    const std::string name = it->path().filename().string();
    std::error_code type_ec;
    if (glob_match(pattern, name) && it->is_regular_file(type_ec))
      found.emplace_back(name, it->path().string());
  }
  SINKLAB_CHECK(!ec, IOError, dir << ": cannot list the folder (" << ec.message() << ")",
                "check permissions");
  // In name order, runs of digits compared as numbers: shard numbers past 999999 have more
  // digits (train_1000000.bin after train_999999.bin); other names as before.
  std::sort(found.begin(), found.end(),
            [](const auto& a, const auto& b) { return natural_less(a.first, b.first); });
  std::vector<std::string> paths;
  paths.reserve(found.size());
  for (auto& f : found) paths.push_back(std::move(f.second));
  return paths;
}

}  // namespace sinklab::train
