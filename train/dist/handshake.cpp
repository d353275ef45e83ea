#include "train/dist/handshake.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstring>

#include "train/dist/socket.h"

namespace sinklab::train {

namespace {

constexpr uint64_t kJoinMagic = 0x6e696f6a6b6e6973ULL;  // "sinkjoin" in little-endian bytes

struct JoinMessage {
  uint64_t magic;
  int32_t rank;
  int32_t reserved;
  uint64_t token;
};

void fnv1a(uint64_t& h, const void* data, size_t n) {
  const auto* p = static_cast<const unsigned char*>(data);
  for (size_t i = 0; i < n; ++i) {
    h ^= p[i];
    h *= 0x100000001b3ULL;
  }
}

}  // namespace

std::string launcher_job_id(const std::function<const char*(const char*)>& get) {
  auto value = [&](const char* name) {
    const char* v = get(name);
    return v != nullptr ? std::string(v) : std::string();
  };
  if (!value("SINKLAB_JOB_TOKEN").empty()) return "sinklab:" + value("SINKLAB_JOB_TOKEN");
  if (!value("TORCHELASTIC_RUN_ID").empty()) return "torchrun:" + value("TORCHELASTIC_RUN_ID");
  if (!value("SLURM_JOB_ID").empty())
    return "slurm:" + value("SLURM_JOB_ID") + "." + value("SLURM_STEP_ID");
  if (!value("OMPI_MCA_orte_ess_jobid").empty()) return "mpi:" + value("OMPI_MCA_orte_ess_jobid");
  if (!value("PMIX_NAMESPACE").empty()) return "pmix:" + value("PMIX_NAMESPACE");
  return "";
}

uint64_t job_token(const std::string& resolved_config, const LaunchEnv& env) {
  uint64_t h = 0xcbf29ce484222325ULL;
  for (const std::string& part : {resolved_config, env.job_id, env.master_addr}) {
    const uint64_t n = part.size();
    fnv1a(h, &n, sizeof n);
    fnv1a(h, part.data(), part.size());
  }
  const int32_t numbers[2] = {env.id_port, env.world_size};
  fnv1a(h, numbers, sizeof numbers);
  return h;
}

bool send_join(int fd, int rank, uint64_t token) {
  const JoinMessage m{kJoinMagic, rank, 0, token};
  return send_all(fd, &m, sizeof m);
}

int receive_join(int fd, uint64_t token, int world_size, std::string& why) {
  set_timeouts(fd, kHandshakeTimeoutS);
  JoinMessage m{};
  if (!recv_all(fd, &m, sizeof m)) {
    why = "sent no join message within " + std::to_string(kHandshakeTimeoutS) + " s";
    return -1;
  }
  if (m.magic != kJoinMagic) {
    why = "does not speak sinklab's join protocol";
    return -1;
  }
  if (m.token != token) {
    why = "joined with another job's token (another config, launcher job or port)";
    return -1;
  }
  if (m.rank <= 0 || m.rank >= world_size) {
    why = "joined as rank " + std::to_string(m.rank) + " of a world of " +
          std::to_string(world_size);
    return -1;
  }
  return m.rank;
}

std::string peer_address(int fd) {
  sockaddr_storage addr{};
  socklen_t len = sizeof addr;
  if (getpeername(fd, reinterpret_cast<sockaddr*>(&addr), &len) != 0) return "unknown peer";
  char host[INET6_ADDRSTRLEN] = {0};
  int port = 0;
  if (addr.ss_family == AF_INET) {
    const auto* a = reinterpret_cast<const sockaddr_in*>(&addr);
    inet_ntop(AF_INET, &a->sin_addr, host, sizeof host);
    port = ntohs(a->sin_port);
  } else if (addr.ss_family == AF_INET6) {
    const auto* a = reinterpret_cast<const sockaddr_in6*>(&addr);
    inet_ntop(AF_INET6, &a->sin6_addr, host, sizeof host);
    port = ntohs(a->sin6_port);
  } else {
    return "unknown peer";
  }
  return std::string(host) + ":" + std::to_string(port);
}

}  // namespace sinklab::train
