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
  bool distributed() const { return world_size > 1; }
};

// Reads the launcher's variables through `get` (std::getenv in production, a map in tests).
// Throws ConfigError naming the variable and its value when one is malformed or inconsistent
// (rank outside [0, world), a negative local rank, a port outside 1..65535).
LaunchEnv parse_launch_env(const std::function<const char*(const char*)>& get);
LaunchEnv launch_env_from_process();

// The windows a rank draws for one micro-batch round: every rank takes its own `per_rank`
// consecutive windows of the round's world_size * per_rank, so the rounds of W ranks are the
// micro-batches of one rank, in order.
struct BatchSlice {
  uint64_t first;  // index of the rank's first window in the loader's stream
  uint64_t count;  // windows (= per_rank)
};
BatchSlice batch_slice(uint64_t round_start, int rank, int world_size, int64_t per_rank);

// Micro-batches per optimizer step on each rank: tokens_per_step (0: one batch per rank) split
// over world_size ranks of batch_size x seq_len tokens. Throws ConfigError naming
// train.tokens_per_step when it does not divide evenly, with the nearest values that do.
int64_t accumulation_steps(int64_t tokens_per_step, int64_t batch_size, int64_t seq_len,
                           int world_size);

}  // namespace sinklab::train
