#include "train/data/batch_slice.h"

#include <algorithm>
#include <string>

#include "core/error.h"

namespace sinklab::train {

BatchSlice batch_slice(uint64_t round_start, int rank, int world_size, int64_t per_rank) {
  SINKLAB_CHECK(rank >= 0 && rank < world_size && per_rank > 0, ValueError,
                "batch_slice: rank " << rank << " of " << world_size << " with " << per_rank
                                     << " windows per rank",
                "rank must lie in [0, world size) and the per-rank batch be positive");
  return {round_start + static_cast<uint64_t>(rank) * static_cast<uint64_t>(per_rank),
          static_cast<uint64_t>(per_rank)};
}

int64_t accumulation_steps(int64_t tokens_per_step, int64_t batch_size, int64_t seq_len,
                           int world_size) {
  const int64_t round = batch_size * seq_len * world_size;  // tokens of one round, all ranks
  if (tokens_per_step == 0) return 1;
  SINKLAB_CHECK(tokens_per_step % round == 0, ConfigError,
                "train.tokens_per_step = " << tokens_per_step << " is not a multiple of "
                                           << "batch_size x block_size x world size = "
                                           << batch_size << " x " << seq_len << " x "
                                           << world_size << " = " << round,
                "use " + std::to_string(std::max<int64_t>(1, tokens_per_step / round) * round) +
                    " or " + std::to_string((tokens_per_step / round + 1) * round) +
                    ", or change train.batch_size: the global batch must split evenly");
  return tokens_per_step / round;
}

}  // namespace sinklab::train
