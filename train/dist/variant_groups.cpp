#include "train/dist/variant_groups.h"

#include "core/error.h"

namespace sinklab::train {

VariantGroups place_variants(const LaunchEnv& world, int variants, VariantPlacement placement) {
  VariantGroups out;
  out.group_env = world;
  out.group_size = world.world_size;
  if (placement == VariantPlacement::Together || variants <= 1) return out;
  SINKLAB_CHECK(world.world_size % variants == 0, ConfigError,
                "run.variant_placement is split but the world size " << world.world_size
                    << " is not a multiple of the " << variants << " variants",
                "launch a multiple of " + std::to_string(variants) +
                    " ranks (one group of equal size per variant), select fewer variants with "
                    "--variant, or set run.variant_placement: together");
  out.split = true;
  out.groups = variants;
  out.group_size = world.world_size / variants;
  out.group = world.rank / out.group_size;
  LaunchEnv& g = out.group_env;
  g.rank = world.rank % out.group_size;
  g.world_size = out.group_size;
  g.variant_group = true;
  g.first_rank = out.leader_of(out.group);
  const int port = world.id_port + 1 + out.group;
  SINKLAB_CHECK(port <= 65535, ConfigError,
                "run.variant_placement split: group " << out.group + 1 << " would meet at port "
                                                      << port << ", outside 1..65535",
                "set SINKLAB_ID_PORT (else MASTER_PORT + 1) to a port at least " +
                    std::to_string(variants) + " below 65535");
  g.id_port = port;
  if (!world.id_file.empty()) g.id_file = world.id_file + ".group" + std::to_string(out.group);
  return out;
}

std::string describe_group(const VariantGroups& groups) {
  const int first = groups.leader_of(groups.group), last = first + groups.group_size - 1;
  std::string where = first == last ? "rank " + std::to_string(first)
                                    : "ranks " + std::to_string(first) + "-" + std::to_string(last);
  return where + " (group " + std::to_string(groups.group + 1) + " of " +
         std::to_string(groups.groups) + ")";
}

}  // namespace sinklab::train
