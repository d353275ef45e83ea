// Where the variants of a side-by-side run go over the ranks of a data-parallel job
// (run.variant_placement).
//
//   together (the default): every rank trains every variant, each on its slice of the global
//     batch; the variants share one data-parallel group, the whole world.
//   split: the W ranks form V groups of W / V consecutive ranks, one per variant in config
//     order (after --variant filtering): ranks [g W/V, (g+1) W/V) train variant g only, data
//     parallel over their group. Each variant's device then holds one model, not V, and the V
//     variants train at once instead of one after the other.
//
// Each group is a data-parallel job of its own (its own NCCL communicator or TCP collective):
// group g exchanges its NCCL unique id (or meets for its CPU collectives) at port
// id_port + 1 + g, or through the file <SINKLAB_ID_FILE>.group<g>. The world still agrees, once
// per step, on whether to stop (a signal to any rank, a variant's run of non-finite steps), so
// that every variant stops, checkpoints and resumes at the same step; it meets at id_port.
// Every group draws the same global batches (each variant's loader has the run's seed), so the
// variants still see identical data, and a group of W / V ranks slices each batch as a
// data-parallel job of that size would.
#pragma once
#include <string>

#include "train/config.h"
#include "train/dist/launcher.h"

namespace sinklab::train {

struct VariantGroups {
  bool split = false;  // run.variant_placement split with more than one variant
  int groups = 1;      // V: one per variant when split
  int group = 0;       // this rank's group: the index of its variant among the selected ones
  int group_size = 1;  // W / V ranks per group (the whole world when together)
  LaunchEnv group_env; // the data-parallel job of this rank's group (the world when together)
  // The world rank of group g's first rank (it writes that variant's files).
  int leader_of(int g) const { return g * group_size; }
};

// The groups of `world` for `variants` selected variants under `placement`. Throws ConfigError
// naming run.variant_placement, the world size and the variant count when split cannot divide
// the ranks evenly, and naming the port when a group's port would pass 65535.
VariantGroups place_variants(const LaunchEnv& world, int variants, VariantPlacement placement);

// "ranks 2-3 (group 2 of 2)" or "rank 1 (group 2 of 2)": where a split variant trains.
std::string describe_group(const VariantGroups& groups);

}  // namespace sinklab::train
