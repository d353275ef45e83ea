// Hands a small blob (the NCCL unique id) from rank 0 to every other rank before any GPU
// communicator exists: over TCP (rank 0 listens on LaunchEnv::id_port at any address; the others
// connect to master_addr:id_port, retrying until the timeout) or through a file on a shared file
// system (rank 0 writes it atomically; the others poll for it). See train/dist/launcher.h.
#pragma once
#include <string>
#include <vector>

#include "train/dist/launcher.h"
#include "train/dist/socket.h"

namespace sinklab::train {

// Rank 0 passes the blob and gets it back; other ranks pass "" and get rank 0's blob. Throws
// IOError naming the address, port or file, and the rank, when nothing arrives within
// timeout_s seconds (a rank that died, a wrong MASTER_ADDR, a port in use).
// With `keep`, the TCP connections stay open and are handed over (the rank watch's,
// train/dist/rank_watch.h): on rank 0 the connection to rank r at index r, on another rank one
// connection to rank 0; nothing with SINKLAB_ID_FILE or one process.
std::string share_from_rank0(const LaunchEnv& env, const std::string& blob, double timeout_s = 300,
                             std::vector<Socket>* keep = nullptr);

}  // namespace sinklab::train
