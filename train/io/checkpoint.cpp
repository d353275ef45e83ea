#include "train/io/checkpoint.h"

#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <bit>
#include <cstdio>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <map>
#include <set>

#include "core/error.h"
#include "train/io/atomic_file.h"
#include "train/io/hdf5.h"

namespace sinklab::train {

namespace fs = std::filesystem;

namespace {

constexpr const char* kMagic = "sinklab-checkpoint";
constexpr const char* kChecksumAlgorithm = "fnv1a64-words";
constexpr const char* kHintCorrupt =
    "the file is damaged (disk full, interrupted copy?): delete it or resume from an earlier "
    "checkpoint (--resume auto skips bad files)";

// ---------------------------------------------------------------------------------------------
// Checksum: FNV-1a 64 over little-endian 64-bit words (the tail zero-padded), then the total
// byte length. Each step (h ^ w) * odd prime is a bijection of h, so any change confined to one
// word always changes the result. One multiply per 8 bytes keeps it fast for large models.
static_assert(std::endian::native == std::endian::little,
              "checkpoint checksum assumes a little-endian host");

class Hasher {
 public:
  void bytes(const void* data, size_t n) {
    const auto* b = static_cast<const unsigned char*>(data);
    length_ += n;
    while (pending_bytes_ != 0 && n != 0) push_byte(*b++), --n;
    for (; n >= 8; b += 8, n -= 8) {
      uint64_t w;
      std::memcpy(&w, b, 8);
      word(w);
    }
    while (n != 0) push_byte(*b++), --n;
  }
  void i64(int64_t v) { bytes(&v, sizeof v); }
  void u64(uint64_t v) { bytes(&v, sizeof v); }
  void str(const std::string& s) {
    u64(s.size());
    bytes(s.data(), s.size());
  }
  uint64_t finish() {
    if (pending_bytes_ != 0) word(pending_);
    word(length_);
    pending_ = 0;
    pending_bytes_ = 0;
    return h_;
  }

 private:
  void word(uint64_t w) {
    h_ ^= w;
    h_ *= 1099511628211ull;
  }
  void push_byte(unsigned char c) {
    pending_ |= static_cast<uint64_t>(c) << (8 * pending_bytes_);
    if (++pending_bytes_ == 8) {
      word(pending_);
      pending_ = 0;
      pending_bytes_ = 0;
    }
  }
  uint64_t h_ = 14695981039346656037ull;
  uint64_t length_ = 0;
  uint64_t pending_ = 0;
  int pending_bytes_ = 0;
};

// ---------------------------------------------------------------------------------------------
// HDF5 helpers.

[[noreturn]] void fail_corrupt(const std::string& file, const std::string& what) {
  SINKLAB_FAIL(IOError, "checkpoint " << file << ": " << what, kHintCorrupt);
}

void write_check(herr_t status, const std::string& file, const std::string& what) {
  h5::check(status, "cannot write checkpoint ", file, what,
            "check disk space and the folder's permissions");
}

h5::Handle file_access_props() {
  h5::Handle fapl(H5Pcreate(H5P_FILE_ACCESS), H5Pclose);
  // Format 1.8 or later: superblock, object headers and indexes carry checksums, so damaged
  // metadata is reported by HDF5 rather than misread.
  H5Pset_libver_bounds(fapl.get(), H5F_LIBVER_V18, H5F_LIBVER_LATEST);
  H5Pset_fclose_degree(fapl.get(), H5F_CLOSE_STRONG);
#if H5_VERSION_GE(1, 10, 7)
  H5Pset_file_locking(fapl.get(), true, true);  // works on file systems without locking
#endif
  return fapl;
}

h5::Handle string_type(size_t length) {
  h5::Handle type(H5Tcopy(H5T_C_S1), H5Tclose);
  H5Tset_size(type.get(), std::max<size_t>(1, length));
  H5Tset_strpad(type.get(), H5T_STR_NULLPAD);
  return type;
}

void check_no_nul(const std::string& s, const char* what) {
  SINKLAB_CHECK(s.find('\0') == std::string::npos, ValueError,
                "checkpoint " << what << " contains a NUL byte", "strings must be plain text");
}

void write_string_attr(hid_t obj, const char* name, const std::string& value,
                       const std::string& file) {
  h5::Handle type = string_type(value.size());
  h5::Handle space = h5::space({});
  h5::Handle attr(H5Acreate2(obj, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT),
                H5Aclose);
  write_check(attr.get(), file, std::string("create attribute ") + name);
  std::vector<char> buf(std::max<size_t>(1, value.size()), '\0');
  std::memcpy(buf.data(), value.data(), value.size());
  write_check(H5Awrite(attr.get(), type.get(), buf.data()), file,
              std::string("write attribute ") + name);
}

template <class T>
void write_number_attr(hid_t obj, const char* name, T value, hid_t file_type, hid_t mem_type,
                       const std::string& file) {
  h5::Handle space = h5::space({});
  h5::Handle attr(H5Acreate2(obj, name, file_type, space.get(), H5P_DEFAULT, H5P_DEFAULT),
                H5Aclose);
  write_check(attr.get(), file, std::string("create attribute ") + name);
  write_check(H5Awrite(attr.get(), mem_type, &value), file,
              std::string("write attribute ") + name);
}

void write_i64_attr(hid_t obj, const char* name, int64_t v, const std::string& file) {
  write_number_attr(obj, name, v, H5T_STD_I64LE, H5T_NATIVE_INT64, file);
}
void write_u64_attr(hid_t obj, const char* name, uint64_t v, const std::string& file) {
  write_number_attr(obj, name, v, H5T_STD_U64LE, H5T_NATIVE_UINT64, file);
}

void write_string_dataset(hid_t loc, const char* name, const std::string& value,
                          const std::string& file) {
  h5::Handle type = string_type(value.size());
  h5::Handle space = h5::space({});
  h5::Handle ds(H5Dcreate2(loc, name, type.get(), space.get(), H5P_DEFAULT, H5P_DEFAULT,
                         H5P_DEFAULT),
              H5Dclose);
  write_check(ds.get(), file, std::string("create dataset ") + name);
  std::vector<char> buf(std::max<size_t>(1, value.size()), '\0');
  std::memcpy(buf.data(), value.data(), value.size());
  write_check(H5Dwrite(ds.get(), type.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data()), file,
              std::string("write dataset ") + name);
}

h5::Handle simple_space(const Shape& shape) {
  return h5::space(std::vector<hsize_t>(shape.begin(), shape.end()));
}

void write_f32_dataset(hid_t group, const std::string& name, const Shape& shape,
                       const float* data, const std::string& file) {
  h5::Handle space = simple_space(shape);
  h5::Handle ds(H5Dcreate2(group, name.c_str(), H5T_IEEE_F32LE, space.get(), H5P_DEFAULT,
                         H5P_DEFAULT, H5P_DEFAULT),
              H5Dclose);
  write_check(ds.get(), file, "create dataset " + name);
  if (numel_of(shape) == 0) return;
  write_check(H5Dwrite(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, data), file,
              "write dataset " + name);
}

// --- reading ---

std::string read_string(hid_t obj, bool is_attr, const std::string& what, const std::string& file) {
  h5::Handle type = is_attr ? h5::Handle(H5Aget_type(obj), H5Tclose)
                          : h5::Handle(H5Dget_type(obj), H5Tclose);
  if (!type.ok() || H5Tget_class(type.get()) != H5T_STRING || H5Tis_variable_str(type.get()) != 0)
    fail_corrupt(file, what + " is not a fixed-length string");
  const size_t size = H5Tget_size(type.get());
  if (size == 0 || size > (size_t{1} << 31)) fail_corrupt(file, what + " has a bad size");
  h5::Handle mem = string_type(size);
  std::vector<char> buf(size, '\0');
  const herr_t status = is_attr ? H5Aread(obj, mem.get(), buf.data())
                                : H5Dread(obj, mem.get(), H5S_ALL, H5S_ALL, H5P_DEFAULT, buf.data());
  if (status < 0) fail_corrupt(file, "cannot read " + what);
  return std::string(buf.data(), strnlen(buf.data(), size));
}

h5::Handle open_attr(hid_t obj, const char* name, const std::string& file) {
  if (H5Aexists(obj, name) <= 0) fail_corrupt(file, std::string("attribute '") + name + "' is missing");
  h5::Handle attr(H5Aopen(obj, name, H5P_DEFAULT), H5Aclose);
  if (!attr.ok()) fail_corrupt(file, std::string("cannot open attribute '") + name + "'");
  return attr;
}

std::string read_string_attr(hid_t obj, const char* name, const std::string& file) {
  h5::Handle attr = open_attr(obj, name, file);
  return read_string(attr.get(), true, std::string("attribute '") + name + "'", file);
}

template <class T>
T read_number_attr(hid_t obj, const char* name, hid_t mem_type, const std::string& file) {
  h5::Handle attr = open_attr(obj, name, file);
  h5::Handle space(H5Aget_space(attr.get()), H5Sclose);
  if (!space.ok() || H5Sget_simple_extent_npoints(space.get()) != 1)
    fail_corrupt(file, std::string("attribute '") + name + "' is not a scalar");
  T value{};
  if (H5Aread(attr.get(), mem_type, &value) < 0)
    fail_corrupt(file, std::string("cannot read attribute '") + name + "'");
  return value;
}

int64_t read_i64_attr(hid_t obj, const char* name, const std::string& file) {
  return read_number_attr<int64_t>(obj, name, H5T_NATIVE_INT64, file);
}
uint64_t read_u64_attr(hid_t obj, const char* name, const std::string& file) {
  return read_number_attr<uint64_t>(obj, name, H5T_NATIVE_UINT64, file);
}

h5::Handle open_group(hid_t file_id, const char* name, const std::string& file) {
  if (H5Lexists(file_id, name, H5P_DEFAULT) <= 0)
    fail_corrupt(file, std::string("group '/") + name + "' is missing");
  h5::Handle g(H5Gopen2(file_id, name, H5P_DEFAULT), H5Gclose);
  if (!g.ok()) fail_corrupt(file, std::string("cannot open group '/") + name + "'");
  return g;
}

// Reads one f32 dataset; `shape` is filled from the file.
Tensor read_f32_dataset(hid_t group, const std::string& group_name, const std::string& name,
                        const std::string& file) {
  const std::string what = "dataset '/" + group_name + "/" + name + "'";
  if (H5Lexists(group, name.c_str(), H5P_DEFAULT) <= 0) fail_corrupt(file, what + " is missing");
  h5::Handle ds(H5Dopen2(group, name.c_str(), H5P_DEFAULT), H5Dclose);
  if (!ds.ok()) fail_corrupt(file, "cannot open " + what);
  h5::Handle type(H5Dget_type(ds.get()), H5Tclose);
  if (!type.ok() || H5Tget_class(type.get()) != H5T_FLOAT || H5Tget_size(type.get()) != 4)
    fail_corrupt(file, what + " is not f32");
  h5::Handle space(H5Dget_space(ds.get()), H5Sclose);
  const int rank = space.ok() ? H5Sget_simple_extent_ndims(space.get()) : -1;
  if (rank < 0 || rank > 32) fail_corrupt(file, what + " has a bad rank");
  std::vector<hsize_t> dims(rank);
  if (rank > 0 && H5Sget_simple_extent_dims(space.get(), dims.data(), nullptr) < 0)
    fail_corrupt(file, what + " has unreadable dimensions");
  Shape shape(dims.begin(), dims.end());
  for (int64_t d : shape)
    if (d < 0) fail_corrupt(file, what + " has a negative dimension");
  const int64_t n = numel_of(shape);
  // Before allocating: the stored bytes must match the shape (guards against damaged headers).
  if (H5Dget_storage_size(ds.get()) != static_cast<hsize_t>(n) * 4)
    fail_corrupt(file, what + " holds " + std::to_string(H5Dget_storage_size(ds.get())) +
                           " bytes, its shape " + shape_str(shape) + " needs " +
                           std::to_string(n * 4));
  Tensor t = Tensor::empty(shape, DType::F32, Device::cpu());
  if (n > 0 &&
      H5Dread(ds.get(), H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, t.data<float>()) < 0)
    fail_corrupt(file, "cannot read " + what);
  return t;
}

struct Entry {
  std::string name;
  Tensor value, m, v;  // f32 CPU, the parameter's shape
};

struct Contents {
  TrainState state;
  int64_t adam_steps = 0;
  std::vector<Entry> entries;  // file order
};

// The format version a state is written in: 1 (what every build reads) unless it carries
// run.gemm_search's choices (2).
int64_t format_version_of(const TrainState& s) { return s.gemm_choices.empty() ? 1 : 2; }

void hash_state(Hasher& h, const TrainState& s, int64_t adam_steps, int64_t num_params) {
  h.i64(format_version_of(s));
  h.i64(s.step);
  h.u64(s.train_cursor);
  h.u64(s.seed);
  h.i64(s.nonfinite_in_a_row);
  h.i64(s.world_size);
  h.i64(adam_steps);
  h.i64(num_params);
  h.str(s.variant);
  h.str(s.config_yaml);
  if (format_version_of(s) >= 2) h.str(s.gemm_choices);
}

void hash_tensor_entry(Hasher& h, const std::string& name, const Shape& shape, const float* value,
                       const float* m, const float* v) {
  h.str(name);
  h.u64(shape.size());
  for (int64_t d : shape) h.i64(d);
  const size_t bytes = static_cast<size_t>(numel_of(shape)) * sizeof(float);
  h.bytes(value, bytes);
  h.bytes(m, bytes);
  h.bytes(v, bytes);
}

// Opens, validates (magic, version, structure, checksum) and reads everything.
Contents read_contents(const std::string& path) {
  h5::quiet();
  std::error_code ec;
  SINKLAB_CHECK(fs::is_regular_file(path, ec), IOError, "checkpoint " << path << " does not exist",
                "check the path (checkpoints live in <run>/<variant>/ckpt/)");
  const htri_t is_h5 = H5Fis_hdf5(path.c_str());
  SINKLAB_CHECK(is_h5 > 0, IOError,
                "checkpoint " << path << " is not an HDF5 file (or its header is damaged)",
                kHintCorrupt);
  h5::Handle fapl = file_access_props();
  h5::Handle file(H5Fopen(path.c_str(), H5F_ACC_RDONLY, fapl.get()), H5Fclose);
  SINKLAB_CHECK(file.ok(), IOError,
                "cannot open checkpoint " << path << ": HDF5 refuses it (truncated or corrupt)",
                kHintCorrupt);
  const hid_t f = file.get();

  const htri_t has_magic = H5Aexists(f, "magic");
  if (has_magic < 0) fail_corrupt(path, "cannot read the root group's attributes");
  if (has_magic == 0 || read_string_attr(f, "magic", path) != kMagic)
    SINKLAB_FAIL(IOError, path << " is an HDF5 file but not a sinklab checkpoint (no magic '"
                               << kMagic << "')",
                 "pass a step_XXXXXXXX.h5 file written by sinklab");
  const int64_t version = read_i64_attr(f, "format_version", path);
  SINKLAB_CHECK(version >= 1 && version <= kCheckpointFormatVersion, IOError,
                "checkpoint " << path << " has format version " << version
                              << ", this build reads version " << kCheckpointFormatVersion,
                "use the sinklab build that wrote it, or a newer one that converts it");
  const std::string algorithm = read_string_attr(f, "checksum_algorithm", path);
  SINKLAB_CHECK(algorithm == kChecksumAlgorithm, IOError,
                "checkpoint " << path << " uses checksum algorithm '" << algorithm
                              << "', expected '" << kChecksumAlgorithm << "'",
                kHintCorrupt);
  const uint64_t stored_checksum = read_u64_attr(f, "checksum", path);

  Contents c;
  TrainState& s = c.state;
  s.step = read_i64_attr(f, "step", path);
  s.train_cursor = read_u64_attr(f, "train_cursor", path);
  s.seed = read_u64_attr(f, "seed", path);
  s.nonfinite_in_a_row = read_i64_attr(f, "nonfinite_in_a_row", path);
  s.world_size = read_i64_attr(f, "world_size", path);
  c.adam_steps = read_i64_attr(f, "adam_steps", path);
  const int64_t num_params = read_i64_attr(f, "num_params", path);
  s.variant = read_string_attr(f, "variant", path);
  {
    if (H5Lexists(f, "config_yaml", H5P_DEFAULT) <= 0)
      fail_corrupt(path, "dataset '/config_yaml' is missing");
    h5::Handle ds(H5Dopen2(f, "config_yaml", H5P_DEFAULT), H5Dclose);
    if (!ds.ok()) fail_corrupt(path, "cannot open dataset '/config_yaml'");
    s.config_yaml = read_string(ds.get(), false, "dataset '/config_yaml'", path);
  }
  if (version >= 2) {  // run.gemm_search's choices
    if (H5Lexists(f, "gemm_choices", H5P_DEFAULT) <= 0)
      fail_corrupt(path, "dataset '/gemm_choices' is missing");
    h5::Handle ds(H5Dopen2(f, "gemm_choices", H5P_DEFAULT), H5Dclose);
    if (!ds.ok()) fail_corrupt(path, "cannot open dataset '/gemm_choices'");
    s.gemm_choices = read_string(ds.get(), false, "dataset '/gemm_choices'", path);
    if (s.gemm_choices.empty()) fail_corrupt(path, "dataset '/gemm_choices' is empty");
  }

  Hasher h;
  hash_state(h, s, c.adam_steps, num_params);

  h5::Handle g_params = open_group(f, "params", path);
  h5::Handle g_m = open_group(f, "adam_m", path);
  h5::Handle g_v = open_group(f, "adam_v", path);
  H5G_info_t info;
  if (H5Gget_info(g_params.get(), &info) < 0) fail_corrupt(path, "cannot list '/params'");
  if (static_cast<int64_t>(info.nlinks) != num_params)
    fail_corrupt(path, "'/params' holds " + std::to_string(info.nlinks) + " datasets, num_params says " +
                           std::to_string(num_params));
  for (hsize_t i = 0; i < info.nlinks; ++i) {
    const ssize_t len = H5Lget_name_by_idx(g_params.get(), ".", H5_INDEX_CRT_ORDER, H5_ITER_INC,
                                           i, nullptr, 0, H5P_DEFAULT);
    if (len < 0) fail_corrupt(path, "cannot read parameter name #" + std::to_string(i));
    std::vector<char> name_buf(static_cast<size_t>(len) + 1, '\0');
    H5Lget_name_by_idx(g_params.get(), ".", H5_INDEX_CRT_ORDER, H5_ITER_INC, i, name_buf.data(),
                       name_buf.size(), H5P_DEFAULT);
    Entry e;
    e.name.assign(name_buf.data(), static_cast<size_t>(len));
    e.value = read_f32_dataset(g_params.get(), "params", e.name, path);
    e.m = read_f32_dataset(g_m.get(), "adam_m", e.name, path);
    e.v = read_f32_dataset(g_v.get(), "adam_v", e.name, path);
    if (e.m.shape() != e.value.shape() || e.v.shape() != e.value.shape())
      fail_corrupt(path, "moments of '" + e.name + "' have shapes " + shape_str(e.m.shape()) +
                             " / " + shape_str(e.v.shape()) + ", the parameter " +
                             shape_str(e.value.shape()));
    hash_tensor_entry(h, e.name, e.value.shape(), e.value.data<float>(), e.m.data<float>(),
                      e.v.data<float>());
    c.entries.push_back(std::move(e));
  }
  SINKLAB_CHECK(h.finish() == stored_checksum, IOError,
                "checkpoint " << path
                              << ": checksum mismatch: the file is corrupt or truncated",
                kHintCorrupt);
  return c;
}

std::string parent_or_dot(const std::string& path) {
  fs::path parent = fs::path(path).parent_path();
  return parent.empty() ? std::string(".") : parent.string();
}

// step_XXXXXXXX.h5 -> step; -1 for other names.
int64_t step_of_file_name(const std::string& name) {
  const std::string prefix = "step_", suffix = ".h5";
  if (name.size() <= prefix.size() + suffix.size() || name.compare(0, prefix.size(), prefix) != 0 ||
      name.compare(name.size() - suffix.size(), suffix.size(), suffix) != 0)
    return -1;
  const std::string digits =
      name.substr(prefix.size(), name.size() - prefix.size() - suffix.size());
  if (digits.size() > 18 ||
      !std::all_of(digits.begin(), digits.end(), [](char ch) { return ch >= '0' && ch <= '9'; }))
    return -1;
  return std::stoll(digits);
}

// The file name held by <dir>/latest, "" when there is none.
std::string read_latest_pointer(const std::string& dir) {
  std::ifstream in(fs::path(dir) / "latest");
  if (!in) return "";
  std::string line;
  std::getline(in, line);
  while (!line.empty() && (line.back() == '\r' || line.back() == ' ' || line.back() == '\t'))
    line.pop_back();
  return line;
}

}  // namespace

// (step, path) of every step_*.h5 file in dir, newest first.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir) {
  std::vector<std::pair<int64_t, std::string>> out;
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return out;
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    if (!entry.is_regular_file(ec)) continue;
    const int64_t step = step_of_file_name(entry.path().filename().string());
    if (step >= 0) out.emplace_back(step, entry.path().string());
  }
  std::sort(out.begin(), out.end(), [](const auto& a, const auto& b) {
    return a.first != b.first ? a.first > b.first : a.second > b.second;
  });
  return out;
}

void save_checkpoint(const std::string& path, const ParameterSet& params, const AdamW& optimizer,
                     const TrainState& state) {
  h5::quiet();
  const int64_t n = params.numel();
  SINKLAB_CHECK(optimizer.m().numel() == n && optimizer.v().numel() == n, ValueError,
                "save_checkpoint " << path << ": optimizer moments hold " << optimizer.m().numel()
                                   << " elements, the parameters " << n,
                "construct the AdamW from the same ParameterSet");
  check_no_nul(state.variant, "variant name");
  check_no_nul(state.config_yaml, "config_yaml");
  check_no_nul(state.gemm_choices, "gemm_choices");
  for (const Param& p : params.params())
    SINKLAB_CHECK(!p.spec.name.empty() && p.spec.name.find('/') == std::string::npos &&
                      p.spec.name != "." && p.spec.name != "..",
                  ValueError, "save_checkpoint: parameter name '" << p.spec.name
                                  << "' cannot be an HDF5 dataset name",
                  "parameter names are dotted paths without '/'");

  // Host fp32 copies of the flat buffers (one transfer each on a device).
  auto host_f32 = [](const Tensor& t) {
    Tensor host = t.to_device(Device::cpu()).contiguous_or_self();
    return host.dtype() == DType::F32 ? host : host.to_dtype(DType::F32);
  };
  const Tensor values = host_f32(params.flat_values());
  const Tensor m = host_f32(optimizer.m());
  const Tensor v = host_f32(optimizer.v());
  const float* pv = values.data<float>();
  const float* pm = m.data<float>();
  const float* pvv = v.data<float>();

  std::error_code ec;
  const std::string dir = parent_or_dot(path);
  fs::create_directories(dir, ec);
  SINKLAB_CHECK(fs::is_directory(dir), IOError,
                "cannot create folder " << dir << " for checkpoint " << path,
                "check the run folder's permissions");
  AtomicFile atomic(path, "check the folder's permissions and disk space");
  const std::string& tmp = atomic.tmp_path();
  fs::remove(tmp, ec);

  {  // HDF5 writes the .tmp; on a throw, ~AtomicFile removes it
    h5::Handle fapl = file_access_props();
    h5::Handle file(H5Fcreate(tmp.c_str(), H5F_ACC_TRUNC, H5P_DEFAULT, fapl.get()), H5Fclose);
    SINKLAB_CHECK(file.ok(), IOError, "cannot create checkpoint file " << tmp,
                  "check the folder's permissions and disk space");
    const hid_t f = file.get();
    {
      h5::Handle gcpl(H5Pcreate(H5P_GROUP_CREATE), H5Pclose);
      H5Pset_link_creation_order(gcpl.get(), H5P_CRT_ORDER_TRACKED | H5P_CRT_ORDER_INDEXED);
      auto make_group = [&](const char* name) {
        h5::Handle g(H5Gcreate2(f, name, H5P_DEFAULT, gcpl.get(), H5P_DEFAULT), H5Gclose);
        write_check(g.get(), tmp, std::string("create group ") + name);
        return g;
      };
      h5::Handle g_params = make_group("params");
      h5::Handle g_m = make_group("adam_m");
      h5::Handle g_v = make_group("adam_v");

      const int64_t num_params = static_cast<int64_t>(params.params().size());
      Hasher h;
      hash_state(h, state, optimizer.steps_taken(), num_params);
      for (const Param& p : params.params()) {
        const int64_t off = p.offset;
        write_f32_dataset(g_params.get(), p.spec.name, p.spec.shape, pv + off, tmp);
        write_f32_dataset(g_m.get(), p.spec.name, p.spec.shape, pm + off, tmp);
        write_f32_dataset(g_v.get(), p.spec.name, p.spec.shape, pvv + off, tmp);
        hash_tensor_entry(h, p.spec.name, p.spec.shape, pv + off, pm + off, pvv + off);
      }
      write_string_dataset(f, "config_yaml", state.config_yaml, tmp);
      if (!state.gemm_choices.empty())
        write_string_dataset(f, "gemm_choices", state.gemm_choices, tmp);
      write_string_attr(f, "magic", kMagic, tmp);
      write_i64_attr(f, "format_version", format_version_of(state), tmp);
      write_string_attr(f, "checksum_algorithm", kChecksumAlgorithm, tmp);
      write_i64_attr(f, "step", state.step, tmp);
      write_u64_attr(f, "train_cursor", state.train_cursor, tmp);
      write_u64_attr(f, "seed", state.seed, tmp);
      write_i64_attr(f, "nonfinite_in_a_row", state.nonfinite_in_a_row, tmp);
      write_i64_attr(f, "world_size", state.world_size, tmp);
      write_i64_attr(f, "adam_steps", optimizer.steps_taken(), tmp);
      write_i64_attr(f, "num_params", num_params, tmp);
      write_string_attr(f, "variant", state.variant, tmp);
      write_u64_attr(f, "checksum", h.finish(), tmp);
      write_check(g_params.close() && g_m.close() && g_v.close() ? 0 : -1, tmp, "close groups");
    }
    write_check(H5Fflush(f, H5F_SCOPE_GLOBAL), tmp, "flush");
    write_check(file.close() ? 0 : -1, tmp, "close the file");
  }
  atomic.commit();  // fsync, rename over path, fsync the folder
}

TrainState load_checkpoint(const std::string& path, ParameterSet& params, AdamW& optimizer) {
  Contents c = read_contents(path);
  const std::string hint =
      "the config's model section must match the checkpoint's: resume with the config the run "
      "was started with (the checkpoint stores it as /config_yaml)";
  std::map<std::string, const Entry*> by_name;
  for (const Entry& e : c.entries) by_name[e.name] = &e;
  for (const Param& p : params.params()) {
    auto it = by_name.find(p.spec.name);
    SINKLAB_CHECK(it != by_name.end(), ConfigError,
                  "checkpoint " << path << " has no parameter '" << p.spec.name
                                << "' (the config's model has it with shape "
                                << shape_str(p.spec.shape) << ")",
                  hint);
    SINKLAB_CHECK(it->second->value.shape() == p.spec.shape, ConfigError,
                  "parameter '" << p.spec.name << "' has shape "
                                << shape_str(it->second->value.shape()) << " in checkpoint "
                                << path << " but " << shape_str(p.spec.shape)
                                << " in the config's model",
                  hint);
  }
  for (const Entry& e : c.entries)
    SINKLAB_CHECK(params.contains(e.name), ConfigError,
                  "checkpoint " << path << " has parameter '" << e.name << "' (shape "
                                << shape_str(e.value.shape())
                                << ") that the config's model does not have",
                  hint);
  const int64_t n = params.numel();
  SINKLAB_CHECK(optimizer.m().numel() == n && optimizer.v().numel() == n, ValueError,
                "load_checkpoint " << path << ": optimizer moments hold " << optimizer.m().numel()
                                   << " elements, the parameters " << n,
                "construct the AdamW from the same ParameterSet");

  // Assemble flat host buffers in the set's layout, then one copy into each flat buffer.
  Tensor values = Tensor::empty({n}, DType::F32, Device::cpu());
  Tensor m = Tensor::empty({n}, DType::F32, Device::cpu());
  Tensor v = Tensor::empty({n}, DType::F32, Device::cpu());
  for (const Param& p : params.params()) {
    const Entry& e = *by_name.at(p.spec.name);
    const size_t bytes = static_cast<size_t>(e.value.numel()) * sizeof(float);
    if (bytes == 0) continue;
    std::memcpy(values.data<float>() + p.offset, e.value.data<float>(), bytes);
    std::memcpy(m.data<float>() + p.offset, e.m.data<float>(), bytes);
    std::memcpy(v.data<float>() + p.offset, e.v.data<float>(), bytes);
  }
  auto copy_into = [](Tensor dst, const Tensor& src) {
    dst.copy_from(dst.dtype() == DType::F32 ? src : src.to_dtype(dst.dtype()));
  };
  copy_into(params.flat_values(), values);
  copy_into(optimizer.m(), m);
  copy_into(optimizer.v(), v);
  optimizer.set_steps_taken(c.adam_steps);
  return c.state;
}

TrainState read_checkpoint_state(const std::string& path) { return read_contents(path).state; }

std::vector<std::pair<std::string, Tensor>> read_checkpoint_params(const std::string& path) {
  return read_checkpoint_weights(path).params;
}

CheckpointWeights read_checkpoint_weights(const std::string& path) {
  Contents c = read_contents(path);
  CheckpointWeights out;
  out.state = std::move(c.state);
  out.params.reserve(c.entries.size());
  for (Entry& e : c.entries) out.params.emplace_back(std::move(e.name), std::move(e.value));
  return out;
}

std::string checkpoint_path(const std::string& dir, int64_t step) {
  SINKLAB_CHECK(step >= 0, ValueError, "checkpoint_path: negative step " << step,
                "steps count from 0");
  char name[40];
  std::snprintf(name, sizeof name, "step_%08lld.h5", static_cast<long long>(step));
  return (fs::path(dir) / name).string();
}

void write_latest_pointer(const std::string& dir, const std::string& file_name) {
  const std::string name = fs::path(file_name).filename().string();
  SINKLAB_CHECK(!name.empty() && name.find('\n') == std::string::npos, ValueError,
                "write_latest_pointer: bad file name '" << file_name << "'",
                "pass the checkpoint's file name, e.g. step_00000100.h5");
  std::error_code ec;
  fs::create_directories(dir, ec);
  write_file_atomic((fs::path(dir) / "latest").string(), name + "\n",
                    "check the folder's permissions and disk space");
}

std::optional<GoodCheckpoint> latest_good_checkpoint(const std::string& dir, std::ostream& log) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return std::nullopt;
  auto good = [&](const std::string& path) -> std::optional<GoodCheckpoint> {
    try {
      return GoodCheckpoint{path, read_checkpoint_state(path)};
    } catch (const sinklab::Error& e) {
      log << "warning: skipping checkpoint " << path << ": " << e.message() << '\n';
    } catch (const std::exception& e) {
      log << "warning: skipping checkpoint " << path << ": " << e.what() << '\n';
    }
    return std::nullopt;
  };
  std::string tried;
  const std::string pointed = read_latest_pointer(dir);
  if (!pointed.empty()) {
    const std::string path = (fs::path(dir) / fs::path(pointed).filename()).string();
    if (!fs::is_regular_file(path, ec)) {
      log << "warning: " << (fs::path(dir) / "latest").string() << " points to " << pointed
          << ", which does not exist; looking for older checkpoints\n";
    } else {
      if (auto found = good(path)) return found;
      tried = path;
    }
  }
  for (const auto& [step, path] : list_checkpoints(dir)) {
    if (path == tried) continue;
    if (auto found = good(path)) return found;
  }
  return std::nullopt;
}

std::string find_latest_good_checkpoint(const std::string& dir, std::ostream& log) {
  const std::optional<GoodCheckpoint> found = latest_good_checkpoint(dir, log);
  return found ? found->path : std::string();
}

bool holds_checkpoints(const std::string& dir) { return !list_checkpoints(dir).empty(); }

void prune_checkpoints(const std::string& dir, int64_t keep_last, int64_t keep_every) {
  std::error_code ec;
  if (!fs::is_directory(dir, ec)) return;
  const std::string pointed = read_latest_pointer(dir);
  const std::string pointed_name =
      pointed.empty() ? std::string() : fs::path(pointed).filename().string();
  const auto checkpoints = list_checkpoints(dir);  // newest first
  for (size_t i = 0; i < checkpoints.size(); ++i) {
    const auto& [step, path] = checkpoints[i];
    const bool keep = keep_last <= 0 || static_cast<int64_t>(i) < keep_last ||
                      (keep_every > 0 && step % keep_every == 0) ||
                      fs::path(path).filename().string() == pointed_name;
    if (keep) continue;
    fs::remove(path, ec);
    SINKLAB_CHECK(!ec, IOError, "cannot delete old checkpoint " << path << ": " << ec.message(),
                  "check the folder's permissions, or set checkpoint.keep_last to 0");
  }
  std::vector<fs::path> strays;  // left by interrupted saves
  for (const auto& entry : fs::directory_iterator(dir, ec)) {
    const std::string name = entry.path().filename().string();
    if (name.size() > 4 && name.compare(name.size() - 4, 4, ".tmp") == 0 &&
        entry.is_regular_file(ec))
      strays.push_back(entry.path());
  }
  for (const fs::path& stray : strays) fs::remove(stray, ec);  // best effort
}

}  // namespace sinklab::train
