// Where this process sits in a data-parallel job: rank, world size and local rank, as a launcher
// hands them over in the environment. One process per GPU; the same code path serves one node
// and many.
//
//   torchrun (and torch.distributed.launch): RANK, WORLD_SIZE, LOCAL_RANK, MASTER_ADDR,
//     MASTER_PORT.
//   Open MPI (mpirun): OMPI_COMM_WORLD_RANK, OMPI_COMM_WORLD_SIZE, OMPI_COMM_WORLD_LOCAL_RANK.
//   Slurm (srun): SLURM_PROCID, SLURM_NTASKS, SLURM_LOCALID.
//   Nothing set: a single process (rank 0 of 1).
// torchrun's variables win over Open MPI's, which win over Slurm's (torchrun inside an srun
// allocation sets both).
//
// The NCCL unique id travels from rank 0 to the others over TCP, at MASTER_ADDR (default
// 127.0.0.1) and port SINKLAB_ID_PORT (default MASTER_PORT + 1, or 29501): never MASTER_PORT
// itself, which torchrun's rendezvous agent owns. SINKLAB_ID_FILE=<path on a shared file
// system> replaces TCP: rank 0 writes the id there (atomically) and the others poll for it.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

namespace sinklab::train {

struct LaunchEnv {
  int rank = 0;
  int world_size = 1;
  int local_rank = 0;            // selects the GPU: cuda:<local_rank>
  std::string launcher = "none"; // none | torchrun | mpirun | slurm
  std::string master_addr = "127.0.0.1";
  int id_port = 29501;           // TCP port of the unique-id exchange (see above)
  std::string id_file;           // shared-file exchange instead of TCP, when set
  std::string job_id;            // the launcher's identity of this job (train/dist/handshake.h)
  uint64_t job_token = 0;        // what every rank's join carries: job_token() of the run
  bool variant_group = false;    // the job is one variant's group of a larger world
                                 // (run.variant_placement split, variant_groups.h)
  int first_rank = 0;            // the world rank of this job's rank 0 (0 unless a group)
  bool distributed() const { return world_size > 1; }
};

// How messages name rank r of env's job: "rank 5", its world rank, and "rank 5 (rank 1 of its
// variant's group)" when the job is a group of a larger world.
std::string rank_name(const LaunchEnv& env, int r);

// Reads the launcher's variables through `get` (std::getenv in production, a map in tests).
// Throws ConfigError naming the variable and its value when one is malformed or inconsistent
// (rank outside [0, world), a negative local rank, a port outside 1..65535).
LaunchEnv parse_launch_env(const std::function<const char*(const char*)>& get);
LaunchEnv launch_env_from_process();

}  // namespace sinklab::train
