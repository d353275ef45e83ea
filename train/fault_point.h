// Fault injection for the durability tests: fault_point("name") kills the process with SIGKILL
// when the environment variable SINKLAB_FAULT_AT equals "name", at that exact point of a write
// sequence (a crash there is otherwise a matter of timing); SINKLAB_FAULT_AT="name:SIGTERM"
// raises SIGTERM there instead (a stop signal that arrives at that point, which the trainer's
// handler turns into a clean stop). Unset, it costs one getenv per call at points that are not
// on a hot path. Points: checkpoint-durable (the newest checkpoint and its `latest` pointer are
// on disk, old ones not yet pruned), final-checkpoints-written (every final evaluation record
// and the end-of-run checkpoints are written). An environment variable, not a config key: it
// changes nothing a run computes, only where a test stops it, and a config saved with it would
// stop every resume of that run.
#pragma once

namespace sinklab::train {

void fault_point(const char* name);

}  // namespace sinklab::train
