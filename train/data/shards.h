// Token shard files in the llm.c layout: a 256 x int32 header (magic 20240520, version,
// token count, ...), then the tokens as uint16 (version 1) or uint32 (version 2, our extension
// for vocabularies > 65536). Reads nanoGPT-style headerless uint16 .bin files too.
#pragma once
#include <cstdint>
#include <string>
#include <vector>

namespace sinklab::train {

constexpr int32_t kShardMagic = 20240520;

// Writes atomically (temporary name, then rename). Picks uint16 when every id < 65536.
void write_shard(const std::string& path, const std::vector<int32_t>& tokens);

// Reads a shard; a file without the magic is read as a raw nanoGPT uint16 stream only when
// allow_raw is true. Throws IOError naming the file on a wrong magic/version, a token count that
// does not match the file size, or a missing file.
std::vector<int32_t> read_shard(const std::string& path, bool allow_raw = true);

// a before b with runs of digits compared as numbers (train_999999 before train_1000000), the
// rest byte by byte.
bool natural_less(const std::string& a, const std::string& b);

// Files in `dir` matching a glob-like `pattern` (only '*' wildcards), in natural_less order of
// their names (numbered shards in their numbers' order past six digits too).
std::vector<std::string> list_files(const std::string& dir, const std::string& pattern);

}  // namespace sinklab::train
