// The first message on every connection to rank 0 (the NCCL id exchange in train/dist/bootstrap,
// the CPU collectives in train/dist/tcp_collective): a magic number, the sender's rank and the
// job token. Rank 0 reads it within a short handshake timeout and serves only ranks of its own
// job: a silent client, a stranger speaking another protocol or a forged join with another
// token is dropped and named (its address) on stderr, instead of blocking rank 0 or taking a
// rank's place.
//
// The job token is a hash of what every rank of one job shares: the resolved config and the
// launcher's job identity (SINKLAB_JOB_TOKEN when set, else torchrun's TORCHELASTIC_RUN_ID,
// Slurm's SLURM_JOB_ID.SLURM_STEP_ID or Open MPI's OMPI_MCA_orte_ess_jobid / PMIX_NAMESPACE),
// and the rendezvous address and port.
#pragma once
#include <cstdint>
#include <functional>
#include <string>

#include "train/dist/launcher.h"

namespace sinklab::train {

// Seconds rank 0 waits for a connected client's join message.
constexpr double kHandshakeTimeoutS = 5.0;

// The launcher's identity of this job run through `get` (std::getenv in production): "" when
// no launcher variable names one.
std::string launcher_job_id(const std::function<const char*(const char*)>& get);

// FNV-1a 64 over the resolved config, the launcher's job id, the rendezvous address, port and
// world size: equal on every rank of one job, different for another job or config.
uint64_t job_token(const std::string& resolved_config, const LaunchEnv& env);

// A rank's join message on a connected socket: false when the send fails.
bool send_join(int fd, int rank, uint64_t token);

// Rank 0: the rank a connected client joins as, read within kHandshakeTimeoutS (the socket's
// receive timeout is changed), or -1 with the reason in `why` (silent, closed, not sinklab's
// protocol, another job's token, a rank outside [1, world_size)).
int receive_join(int fd, uint64_t token, int world_size, std::string& why);

// "ip:port" of a connected socket's peer ("unknown peer" when it cannot be read).
std::string peer_address(int fd);

}  // namespace sinklab::train
