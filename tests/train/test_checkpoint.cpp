// Checkpoints: bit-exact round trip of values, AdamW moments and state; corrupt, truncated and
// mismatched files are refused clearly; resume finds the newest good file; retention.
#include <hdf5.h>
#include <unistd.h>

#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <set>
#include <sstream>

#include "train/io/checkpoint.h"
#include "train/config.h"
#include "train/optimizer.h"
#include "train/parameters.h"
#include "tests/helpers.h"

using namespace sinklab;
using sinklab::test::contains;
using namespace sinklab::train;
namespace fs = std::filesystem;

// libhdf5 1.10 itself leaks ~1 KB when it rejects an object header whose checksum fails (the
// metadata-corruption case below); our identifiers are all closed (checked with
// H5Fget_obj_count). Tell LeakSanitizer, when the tests are built with it; a no-op otherwise.
extern "C" const char* __lsan_default_suppressions() { return "leak:libhdf5\n"; }

namespace {

fs::path fresh_ckpt_dir(const std::string& name) {
  fs::path dir = fs::temp_directory_path() /
                 ("sinklab_test_ckpt_" + name + "_" + std::to_string(::getpid()));
  fs::remove_all(dir);
  fs::create_directories(dir);
  return dir;
}

std::vector<ParamSpec> small_specs(int64_t hidden = 12) {
  std::vector<ParamSpec> specs(3);
  specs[0].name = "model.embed_tokens.weight";
  specs[0].shape = {256, 64};  // large enough that raw data dominates the file, as in real runs
  specs[0].init = Init::Normal;
  specs[0].decay = true;
  specs[0].embedding = true;
  specs[1].name = "model.layers.0.mlp.up_proj.weight";
  specs[1].shape = {hidden, 64};
  specs[1].init = Init::Normal;
  specs[1].decay = true;
  specs[2].name = "model.norm.weight";
  specs[2].shape = {64};
  specs[2].init = Init::Ones;
  return specs;
}

// Two AdamW steps with non-uniform, non-zero gradients.
void train_two_steps(ParameterSet& params, AdamW& opt) {
  for (int s = 0; s < 2; ++s) {
    Tensor g = params.flat_grads();
    float* p = g.data<float>();
    for (int64_t i = 0; i < g.numel(); ++i)
      p[i] = static_cast<float>(0.01 * std::sin(0.37 * static_cast<double>(i) + s) + 0.003);
    opt.step(params, 1e-2);
  }
}

TrainState sample_state() {
  TrainState s;
  s.step = 2;
  s.train_cursor = 0x123456789abcull;
  s.seed = 0xfeedfacecafebeefull;  // above INT64_MAX: unsigned round trip
  s.nonfinite_in_a_row = 1;
  s.world_size = 4;
  s.config_yaml = "run: {name: ckpt}\nmodel: {n_layer: 1}\n";
  s.variant = "headwise_rmsnorm";
  return s;
}

bool same_bytes(const Tensor& a, const Tensor& b) {
  return a.numel() == b.numel() && a.dtype() == b.dtype() &&
         std::memcmp(a.raw_data(), b.raw_data(), a.numel() * dtype_size(a.dtype())) == 0;
}

void require_same_state(const TrainState& a, const TrainState& b) {
  REQUIRE(a.step == b.step);
  REQUIRE(a.train_cursor == b.train_cursor);
  REQUIRE(a.seed == b.seed);
  REQUIRE(a.nonfinite_in_a_row == b.nonfinite_in_a_row);
  REQUIRE(a.world_size == b.world_size);
  REQUIRE(a.config_yaml == b.config_yaml);
  REQUIRE(a.variant == b.variant);
  REQUIRE(a.gemm_choices == b.gemm_choices);
}

// A trained set + optimizer saved to path.
struct Saved {
  ParameterSet params{small_specs(), 7, DType::F32, Device::cpu()};
  AdamW opt{params, OptimSection{}};
  TrainState state = sample_state();
};

void save_trained(const std::string& path, Saved& s) {
  train_two_steps(s.params, s.opt);
  save_checkpoint(path, s.params, s.opt, s.state);
}

void flip_byte(const fs::path& file, std::uintmax_t offset) {
  std::fstream f(file, std::ios::in | std::ios::out | std::ios::binary);
  REQUIRE(f.good());
  f.seekg(static_cast<std::streamoff>(offset));
  char c = 0;
  f.read(&c, 1);
  c = static_cast<char>(c ^ 0x5a);
  f.seekp(static_cast<std::streamoff>(offset));
  f.write(&c, 1);
}

// The file offset of a dataset's object header (HDF5 metadata, checksummed by HDF5).
haddr_t header_offset(const fs::path& file, const std::string& dataset) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  H5O_info_t info;  // HDF5 1.10 API
  const herr_t status =
      H5Oget_info_by_name2(f, dataset.c_str(), &info, H5O_INFO_BASIC, H5P_DEFAULT);
  H5Fclose(f);
  REQUIRE(status >= 0);
  return info.addr;
}

// The file offset of a dataset's raw bytes.
haddr_t raw_offset(const fs::path& file, const std::string& dataset) {
  hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
  REQUIRE(f >= 0);
  hid_t ds = H5Dopen2(f, dataset.c_str(), H5P_DEFAULT);
  REQUIRE(ds >= 0);
  const haddr_t off = H5Dget_offset(ds);
  H5Dclose(ds);
  H5Fclose(f);
  REQUIRE(off != HADDR_UNDEF);
  return off;
}

}  // namespace

TEST_CASE("checkpoint round trip is bit-exact", "[checkpoint]") {
  const fs::path dir = fresh_ckpt_dir("roundtrip");
  const std::string path = checkpoint_path(dir.string(), 2);
  REQUIRE(fs::path(path).filename() == "step_00000002.h5");
  Saved s;
  s.state.config_yaml += std::string(200000, 'x');  // larger than an HDF5 compact attribute
  save_trained(path, s);
  REQUIRE(fs::exists(path));
  for (const auto& entry : fs::directory_iterator(dir))  // no .tmp left
    REQUIRE(entry.path().extension() != ".tmp");
  REQUIRE(s.opt.steps_taken() == 2);

  ParameterSet fresh(small_specs(), 99, DType::F32, Device::cpu());
  AdamW fresh_opt(fresh, OptimSection{});
  REQUIRE_FALSE(same_bytes(fresh.flat_values(), s.params.flat_values()));
  const TrainState loaded = load_checkpoint(path, fresh, fresh_opt);

  REQUIRE(same_bytes(fresh.flat_values(), s.params.flat_values()));
  REQUIRE(same_bytes(fresh_opt.m(), s.opt.m()));
  REQUIRE(same_bytes(fresh_opt.v(), s.opt.v()));
  REQUIRE(fresh_opt.steps_taken() == 2);
  require_same_state(loaded, s.state);
  require_same_state(read_checkpoint_state(path), s.state);

  // The loaded pair continues exactly like the original.
  train_two_steps(s.params, s.opt);
  train_two_steps(fresh, fresh_opt);
  REQUIRE(same_bytes(fresh.flat_values(), s.params.flat_values()));

  // Overwriting an existing checkpoint works and leaves no .tmp.
  save_checkpoint(path, s.params, s.opt, s.state);
  REQUIRE_FALSE(fs::exists(path + ".tmp"));
  REQUIRE(read_checkpoint_state(path).step == s.state.step);
  REQUIRE(read_checkpoint_state(path).gemm_choices.empty());  // none chosen: no dataset

  // run.gemm_search's choices travel with the state, under the checksum.
  s.state.gemm_choices = "sinklab gemm choices 1\nlibrary cublasLt 1 on a card\nshape 1 2 3 4 "
                         "0 0 0 1 0 1 algo " + std::string(128, 'a') + "\n";
  save_checkpoint(path, s.params, s.opt, s.state);
  require_same_state(read_checkpoint_state(path), s.state);
  fs::remove_all(dir);
}

TEST_CASE("checkpoint params read alone in file order", "[checkpoint]") {
  const fs::path dir = fresh_ckpt_dir("params");
  const std::string path = checkpoint_path(dir.string(), 5);
  Saved s;
  save_trained(path, s);
  const auto tensors = read_checkpoint_params(path);
  REQUIRE(tensors.size() == s.params.params().size());
  for (size_t i = 0; i < tensors.size(); ++i) {
    const Param& p = s.params.params()[i];
    REQUIRE(tensors[i].first == p.spec.name);
    REQUIRE(tensors[i].second.shape() == p.spec.shape);
    REQUIRE(tensors[i].second.dtype() == DType::F32);
    REQUIRE(same_bytes(tensors[i].second, p.value));
  }
  fs::remove_all(dir);
}

TEST_CASE("checkpoint state and params from one read", "[checkpoint]") {
  const fs::path dir = fresh_ckpt_dir("weights");
  const std::string path = checkpoint_path(dir.string(), 5);
  Saved s;
  save_trained(path, s);
  const CheckpointWeights weights = read_checkpoint_weights(path);
  require_same_state(weights.state, s.state);
  const std::vector<Param>& saved = s.params.params();  // the values written, in file order
  REQUIRE(weights.params.size() == saved.size());
  for (size_t i = 0; i < saved.size(); ++i) {
    REQUIRE(weights.params[i].first == saved[i].spec.name);
    REQUIRE(same_bytes(weights.params[i].second, saved[i].value));
  }
  fs::remove_all(dir);
}

TEST_CASE("corrupt and truncated checkpoints are refused with IOError", "[checkpoint]") {
  const fs::path dir = fresh_ckpt_dir("corrupt");
  const std::string good = checkpoint_path(dir.string(), 1);
  Saved s;
  save_trained(good, s);
  const auto size = fs::file_size(good);

  auto refused = [&](const fs::path& bad) {
    ParameterSet fresh(small_specs(), 99, DType::F32, Device::cpu());
    AdamW fresh_opt(fresh, OptimSection{});
    const std::vector<double> before = fresh.flat_values().to_doubles();
    const std::string msg = test::caught<IOError>([&] { load_checkpoint(bad.string(), fresh, fresh_opt); }).what();
    INFO(msg);
    REQUIRE(contains(msg, bad.string()));
    REQUIRE(fresh.flat_values().to_doubles() == before);  // nothing loaded
    REQUIRE(fresh_opt.steps_taken() == 0);
    REQUIRE_THROWS_AS(read_checkpoint_state(bad.string()), IOError);
    REQUIRE_THROWS_AS(read_checkpoint_params(bad.string()), IOError);
    REQUIRE_THROWS_AS(read_checkpoint_weights(bad.string()), IOError);
    return msg;
  };

  SECTION("a flipped byte in the middle of the file") {
    const fs::path bad = dir / "middle.h5";
    fs::copy_file(good, bad);
    flip_byte(bad, size / 2);
    refused(bad);
  }
  SECTION("a flipped byte in a dataset's object header (HDF5 metadata)") {
    const fs::path bad = dir / "header.h5";
    fs::copy_file(good, bad);
    flip_byte(bad, header_offset(bad, "/params/model.norm.weight") + 6);
    refused(bad);
  }
  SECTION("a flipped byte inside a moment's data: checksum mismatch") {
    const fs::path bad = dir / "moment.h5";
    fs::copy_file(good, bad);
    flip_byte(bad, raw_offset(bad, "/adam_v/model.layers.0.mlp.up_proj.weight") + 13);
    const std::string msg = refused(bad);
    REQUIRE(contains(msg, "checksum mismatch: the file is corrupt or truncated"));
  }
  SECTION("run.gemm_search's choices: format version 2 (1 without them); removed: refused") {
    auto version_of = [](const fs::path& file) {
      const hid_t f = H5Fopen(file.c_str(), H5F_ACC_RDONLY, H5P_DEFAULT);
      REQUIRE(f >= 0);
      int64_t v = -1;
      const hid_t a = H5Aopen(f, "format_version", H5P_DEFAULT);
      H5Aread(a, H5T_NATIVE_INT64, &v);
      H5Aclose(a);
      H5Fclose(f);
      return v;
    };
    REQUIRE(version_of(good) == 1);  // what builds before the choices read
    const fs::path bad = dir / "choices.h5";
    s.state.gemm_choices = "sinklab gemm choices 1\nlibrary x\nshape 1 2 3 4 0 0 0 1 0 1 algo " +
                           std::string(128, '0') + "\n";
    save_checkpoint(bad.string(), s.params, s.opt, s.state);
    REQUIRE(version_of(bad) == 2);
    REQUIRE(read_checkpoint_state(bad.string()).gemm_choices == s.state.gemm_choices);
    const hid_t f = H5Fopen(bad.c_str(), H5F_ACC_RDWR, H5P_DEFAULT);
    REQUIRE(f >= 0);
    REQUIRE(H5Ldelete(f, "gemm_choices", H5P_DEFAULT) >= 0);
    H5Fclose(f);
    const std::string msg = refused(bad);
    REQUIRE(contains(msg, "'/gemm_choices' is missing"));
  }
  SECTION("a truncated file") {
    const fs::path bad = dir / "truncated.h5";
    fs::copy_file(good, bad);
    fs::resize_file(bad, size / 2);
    refused(bad);
  }
  SECTION("an empty file") {
    const fs::path bad = dir / "empty.h5";
    std::ofstream(bad).close();
    refused(bad);
  }
  SECTION("a file that is not HDF5") {
    const fs::path bad = dir / "text.h5";
    std::ofstream(bad) << "this is not a checkpoint\n";
    refused(bad);
  }
  SECTION("a missing file") {
    REQUIRE_THROWS_AS(read_checkpoint_state((dir / "nope.h5").string()), IOError);
  }
  // Every HDF5 identifier is closed again, on the error paths too.
  REQUIRE(H5Fget_obj_count(H5F_OBJ_ALL, H5F_OBJ_ALL) == 0);
  fs::remove_all(dir);
}

TEST_CASE("checkpoint shape mismatch is a ConfigError naming the parameter", "[checkpoint]") {
  const fs::path dir = fresh_ckpt_dir("shape");
  const std::string path = checkpoint_path(dir.string(), 3);
  Saved s;
  save_trained(path, s);

  {
    ParameterSet other(small_specs(16), 1, DType::F32, Device::cpu());
    AdamW other_opt(other, OptimSection{});
    const std::vector<double> before = other.flat_values().to_doubles();
    const std::string msg =
        test::caught<ConfigError>([&] { load_checkpoint(path, other, other_opt); }).what();
    INFO(msg);
    REQUIRE(contains(msg, "model.layers.0.mlp.up_proj.weight"));
    REQUIRE(contains(msg, "(12, 64)"));  // the checkpoint's
    REQUIRE(contains(msg, "(16, 64)"));  // the config's
    REQUIRE(contains(msg, "model section"));
    REQUIRE(other.flat_values().to_doubles() == before);
  }
  {  // a parameter the checkpoint lacks
    std::vector<ParamSpec> specs = small_specs();
    specs.push_back(specs[2]);
    specs.back().name = "model.layers.0.attn_out_norm.weight";
    ParameterSet other(specs, 1, DType::F32, Device::cpu());
    AdamW other_opt(other, OptimSection{});
    const std::string msg =
        test::caught<ConfigError>([&] { load_checkpoint(path, other, other_opt); }).what();
    REQUIRE(contains(msg, "model.layers.0.attn_out_norm.weight"));
  }
  {  // a parameter the config lacks
    std::vector<ParamSpec> specs = small_specs();
    specs.pop_back();
    ParameterSet other(specs, 1, DType::F32, Device::cpu());
    AdamW other_opt(other, OptimSection{});
    const std::string msg =
        test::caught<ConfigError>([&] { load_checkpoint(path, other, other_opt); }).what();
    REQUIRE(contains(msg, "model.norm.weight"));
  }
  fs::remove_all(dir);
}

TEST_CASE("find_latest_good_checkpoint skips bad files", "[checkpoint]") {
  const fs::path dir = fresh_ckpt_dir("latest");
  std::ostringstream log;
  REQUIRE(find_latest_good_checkpoint(dir.string(), log).empty());
  REQUIRE(find_latest_good_checkpoint((dir / "missing").string(), log).empty());

  Saved s;
  train_two_steps(s.params, s.opt);
  for (int64_t step : {10, 20, 30}) {
    s.state.step = step;
    save_checkpoint(checkpoint_path(dir.string(), step), s.params, s.opt, s.state);
    write_latest_pointer(dir.string(), fs::path(checkpoint_path(dir.string(), step)).filename());
  }
  REQUIRE_FALSE(fs::exists(dir / "latest.tmp"));
  {
    std::ifstream in(dir / "latest");
    std::string line;
    std::getline(in, line);
    REQUIRE(line == "step_00000030.h5");
  }
  std::ostringstream clean_log;
  REQUIRE(find_latest_good_checkpoint(dir.string(), clean_log) ==
          checkpoint_path(dir.string(), 30));
  REQUIRE(clean_log.str().empty());

  SECTION("corrupted newest file") {
    const std::string newest = checkpoint_path(dir.string(), 30);
    flip_byte(newest, raw_offset(newest, "/params/model.embed_tokens.weight") + 5);
    std::ostringstream warn;
    REQUIRE(find_latest_good_checkpoint(dir.string(), warn) == checkpoint_path(dir.string(), 20));
    INFO(warn.str());
    REQUIRE(contains(warn.str(), "warning"));
    REQUIRE(contains(warn.str(), "step_00000030.h5"));
    // With the state its read gave: the one a resume takes without reading the file again.
    std::ostringstream again;
    const std::optional<GoodCheckpoint> found = latest_good_checkpoint(dir.string(), again);
    REQUIRE(found);
    REQUIRE(found->path == checkpoint_path(dir.string(), 20));
    REQUIRE(found->state.step == read_checkpoint_state(found->path).step);
    REQUIRE(found->state.step == 20);
  }
  SECTION("dangling latest pointer") {
    write_latest_pointer(dir.string(), "step_00000040.h5");
    std::ostringstream warn;
    REQUIRE(find_latest_good_checkpoint(dir.string(), warn) == checkpoint_path(dir.string(), 30));
    REQUIRE(contains(warn.str(), "step_00000040.h5"));
  }
  SECTION("dangling pointer and corrupt newest (truncated)") {
    write_latest_pointer(dir.string(), "step_00000040.h5");
    const std::string newest = checkpoint_path(dir.string(), 30);
    fs::resize_file(newest, fs::file_size(newest) / 3);
    std::ostringstream warn;
    REQUIRE(find_latest_good_checkpoint(dir.string(), warn) == checkpoint_path(dir.string(), 20));
    REQUIRE(contains(warn.str(), "step_00000030.h5"));
  }
  SECTION("no pointer") {
    fs::remove(dir / "latest");
    std::ostringstream warn;
    REQUIRE(find_latest_good_checkpoint(dir.string(), warn) == checkpoint_path(dir.string(), 30));
  }
  SECTION("everything bad") {
    for (int64_t step : {10, 20, 30}) fs::resize_file(checkpoint_path(dir.string(), step), 100);
    std::ostringstream warn;
    REQUIRE(find_latest_good_checkpoint(dir.string(), warn).empty());
    REQUIRE(contains(warn.str(), "step_00000010.h5"));
  }
  fs::remove_all(dir);
}

TEST_CASE("prune_checkpoints keeps the newest and every keep_every-th", "[checkpoint]") {
  const fs::path dir = fresh_ckpt_dir("prune");
  auto touch = [&](const std::string& name) { std::ofstream(dir / name) << "x"; };
  for (int64_t step = 100; step <= 1000; step += 100)
    touch(fs::path(checkpoint_path(dir.string(), step)).filename().string());
  touch("step_00001100.h5.tmp");
  touch("latest.tmp");
  touch("notes.txt");
  auto remaining = [&] {
    std::set<std::string> names;
    for (const auto& e : fs::directory_iterator(dir)) names.insert(e.path().filename().string());
    return names;
  };

  SECTION("keep_last 3, keep_every 500") {
    write_latest_pointer(dir.string(), "step_00001000.h5");
    prune_checkpoints(dir.string(), 3, 500);
    REQUIRE(remaining() == std::set<std::string>{"step_00000500.h5", "step_00000800.h5",
                                                 "step_00000900.h5", "step_00001000.h5",
                                                 "latest", "notes.txt"});
    prune_checkpoints(dir.string(), 3, 500);  // idempotent
    REQUIRE(remaining().size() == 6);
  }
  SECTION("keep_last 2, keep_every 0; the pointer's target is kept") {
    write_latest_pointer(dir.string(), "step_00000300.h5");
    prune_checkpoints(dir.string(), 2, 0);
    REQUIRE(remaining() == std::set<std::string>{"step_00000300.h5", "step_00000900.h5",
                                                 "step_00001000.h5", "latest", "notes.txt"});
  }
  SECTION("keep_last 0 keeps every checkpoint, still removes strays") {
    prune_checkpoints(dir.string(), 0, 0);
    REQUIRE(remaining().size() == 11);
    REQUIRE_FALSE(fs::exists(dir / "latest.tmp"));
    REQUIRE_FALSE(fs::exists(dir / "step_00001100.h5.tmp"));
  }
  fs::remove_all(dir);
}
