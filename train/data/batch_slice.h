// How a data-parallel job splits the global batch: which windows of the loader's stream a rank
// draws for one micro-batch round, and how many micro-batches make one optimizer step.
#pragma once
#include <cstdint>

namespace sinklab::train {

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
