// Checkpoint files: parameters (fp32 master values), AdamW moments and the training state in one
// HDF5 file per step, written atomically and verified by a checksum on every read.
//
// Layout of <dir>/step_XXXXXXXX.h5 (format version 1, or 2 where it carries /gemm_choices: a
// build that reads only version 1 then says so instead of finding a checksum it cannot match):
//   /                root attributes: magic "sinklab-checkpoint", format_version, checksum
//                    (uint64), checksum_algorithm, step, train_cursor, seed, nonfinite_in_a_row,
//                    world_size, adam_steps, num_params, variant
//   /config_yaml     scalar string dataset: the resolved config
//   /gemm_choices    scalar string dataset, version 2 only (where run.gemm_search chose
//                    algorithms): the choices as ops/gemm_choices.h writes them (a resume
//                    takes them again)
//   /params/<name>   f32 dataset with the parameter's shape (datasets in parameter order)
//   /adam_m/<name>   AdamW first moment, same shape
//   /adam_v/<name>   AdamW second moment, same shape
// The checksum covers every state field, every parameter's name and shape, and every byte of the
// values and moments (see checkpoint.cpp for the exact order).
#pragma once
#include <cstdint>
#include <ostream>
#include <optional>
#include <string>
#include <utility>
#include <vector>

#include "core/tensor.h"
#include "train/optimizer.h"
#include "train/parameters.h"

namespace sinklab::train {

struct TrainState {
  int64_t step = 0;               // number of optimizer updates done (resume continues at this step)
  uint64_t train_cursor = 0;      // data loader cursor (DataLoader::cursor())
  uint64_t seed = 0;              // run seed (all RNG streams are pure functions of seed/stream/index)
  int64_t nonfinite_in_a_row = 0; // consecutive skipped updates
  int64_t world_size = 1;
  std::string config_yaml;        // the resolved config
  std::string variant;            // variant name
  std::string gemm_choices;       // run.gemm_search's algorithms (ops::gemm_choices), or ""
};

constexpr int64_t kCheckpointFormatVersion = 2;  // the newest this build reads and writes

// Writes <path> atomically: to <path>.tmp, H5Fflush + close + fsync, then rename (and fsync of
// the folder). Throws IOError naming the file when any step fails; the .tmp is then removed and
// an existing <path> is left untouched.
void save_checkpoint(const std::string& path, const ParameterSet& params, const AdamW& optimizer,
                     const TrainState& state);

// Verifies magic, format version and checksum (IOError naming the file), that the checkpoint's
// parameters are exactly those of `params` with the same shapes (ConfigError naming the
// parameter and both shapes), then copies values, moments and the AdamW step count in and
// returns the state. Nothing is modified unless every check passes.
TrainState load_checkpoint(const std::string& path, ParameterSet& params, AdamW& optimizer);

// Reads only the state (for `--resume auto` decisions and for export); the checksum is verified
// (which reads the whole file).
TrainState read_checkpoint_state(const std::string& path);

// The parameters alone as (name, f32 CPU tensor) pairs in file order, checksum verified.
std::vector<std::pair<std::string, Tensor>> read_checkpoint_params(const std::string& path);

// The state and the parameters of one read: read_checkpoint_state and read_checkpoint_params
// each read and verify the whole file, moments included (1.8 GB at 152M parameters), so a
// caller that needs both reads it once here.
struct CheckpointWeights {
  TrainState state;
  std::vector<std::pair<std::string, Tensor>> params;  // as read_checkpoint_params gives them
};
CheckpointWeights read_checkpoint_weights(const std::string& path);

// <dir>/step_XXXXXXXX.h5 (at least 8 digits, zero-padded).
std::string checkpoint_path(const std::string& dir, int64_t step);

// Replaces <dir>/latest (one line: the checkpoint's file name, without folder) atomically.
// A path is accepted too; only its file name is stored.
void write_latest_pointer(const std::string& dir, const std::string& file_name);

// The newest checkpoint in dir that reads cleanly (checksum OK), with the state that reading it
// gave (a resume needs it, and each read of the file is a whole one: 1.8 GB at 152M): tries the
// `latest` pointer first, then step_*.h5 files newest first. nullopt when there is none (or dir
// does not exist). Writes one "warning: ..." line to `log` per bad file skipped (and for a
// dangling pointer).
struct GoodCheckpoint {
  std::string path;  // <dir>/<file>
  TrainState state;
};
std::optional<GoodCheckpoint> latest_good_checkpoint(const std::string& dir, std::ostream& log);
// Its path alone; "" when there is none.
std::string find_latest_good_checkpoint(const std::string& dir, std::ostream& log);

// The checkpoint files (step_XXXXXXXX.h5) in dir as (step, path), newest first; none when dir
// does not exist.
std::vector<std::pair<int64_t, std::string>> list_checkpoints(const std::string& dir);

// Does dir hold a checkpoint file (step_XXXXXXXX.h5; a stray .tmp is none)?
bool holds_checkpoints(const std::string& dir);

// Retention: keeps the newest keep_last step_*.h5 files plus every one whose step is a multiple
// of keep_every (keep_every 0 = none), and the file `latest` points to; deletes the others and
// any stray *.tmp files. keep_last 0 disables count-based pruning (keeps every checkpoint).
void prune_checkpoints(const std::string& dir, int64_t keep_last, int64_t keep_every);

}  // namespace sinklab::train
