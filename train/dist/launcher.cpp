#include "train/dist/launcher.h"
#include "train/dist/handshake.h"

#include <cerrno>
#include <algorithm>
#include <cstdlib>
#include <string>

#include "core/error.h"

namespace sinklab::train {

namespace {

// The integer value of variable `name`, or `fallback` when it is not set. Throws ConfigError
// naming the variable when the text is not a whole number.
int64_t integer_var(const std::function<const char*(const char*)>& get, const char* name,
                    int64_t fallback) {
  const char* text = get(name);
  if (text == nullptr || *text == '\0') return fallback;
  errno = 0;
  char* end = nullptr;
  const long long v = std::strtoll(text, &end, 10);
  SINKLAB_CHECK(errno == 0 && end != text && *end == '\0', ConfigError,
                "environment variable " << name << "='" << text << "' is not a whole number",
                "the launcher sets it; unset it or fix the launch command");
  return v;
}

bool is_set(const std::function<const char*(const char*)>& get, const char* name) {
  const char* v = get(name);
  return v != nullptr && *v != '\0';
}

}  // namespace

LaunchEnv parse_launch_env(const std::function<const char*(const char*)>& get) {
  LaunchEnv env;
  struct Names {
    const char *launcher, *rank, *size, *local;
  };
  const Names candidates[] = {
      {"torchrun", "RANK", "WORLD_SIZE", "LOCAL_RANK"},
      {"mpirun", "OMPI_COMM_WORLD_RANK", "OMPI_COMM_WORLD_SIZE", "OMPI_COMM_WORLD_LOCAL_RANK"},
      {"slurm", "SLURM_PROCID", "SLURM_NTASKS", "SLURM_LOCALID"},
  };
  for (const Names& n : candidates) {
    if (!is_set(get, n.rank) && !is_set(get, n.size)) continue;
    SINKLAB_CHECK(is_set(get, n.rank) && is_set(get, n.size), ConfigError,
                  n.launcher << " launch: " << (is_set(get, n.rank) ? n.size : n.rank)
                             << " is not set but " << (is_set(get, n.rank) ? n.rank : n.size)
                             << " is",
                  "set both (the launcher normally does), or neither for a single process");
    env.launcher = n.launcher;
    env.rank = static_cast<int>(integer_var(get, n.rank, 0));
    env.world_size = static_cast<int>(integer_var(get, n.size, 1));
    env.local_rank = static_cast<int>(integer_var(get, n.local, env.rank));
    SINKLAB_CHECK(env.world_size >= 1, ConfigError,
                  n.size << "=" << env.world_size << " (" << n.launcher << "): must be >= 1",
                  "check the launch command's process count");
    SINKLAB_CHECK(env.rank >= 0 && env.rank < env.world_size, ConfigError,
                  n.rank << "=" << env.rank << " is outside [0, " << n.size << "="
                         << env.world_size << ") (" << n.launcher << ")",
                  "check the launch command: ranks count from 0 to world size - 1");
    SINKLAB_CHECK(env.local_rank >= 0, ConfigError,
                  n.local << "=" << env.local_rank << " is negative (" << n.launcher << ")",
                  "the local rank selects the GPU: cuda:<local rank>");
    break;
  }
  if (const char* addr = get("MASTER_ADDR"); addr != nullptr && *addr != '\0')
    env.master_addr = addr;
  const int64_t master_port = integer_var(get, "MASTER_PORT", 29500);
  const int64_t port = integer_var(get, "SINKLAB_ID_PORT", master_port + 1);
  SINKLAB_CHECK(port >= 1 && port <= 65535, ConfigError,
                "the unique-id port " << port << " (SINKLAB_ID_PORT, else MASTER_PORT + 1) is "
                                      << "outside 1..65535",
                "set SINKLAB_ID_PORT to a free TCP port on the rank-0 host");
  env.id_port = static_cast<int>(port);
  if (const char* file = get("SINKLAB_ID_FILE"); file != nullptr) env.id_file = file;
  env.job_id = launcher_job_id(get);
  return env;
}

std::string rank_name(const LaunchEnv& env, int r) {
  std::string name = "rank " + std::to_string(env.first_rank + r);
  if (env.variant_group) name += " (rank " + std::to_string(r) + " of its variant's group)";
  return name;
}

LaunchEnv launch_env_from_process() {
  return parse_launch_env([](const char* name) { return std::getenv(name); });
}

}  // namespace sinklab::train
