// SINKLAB_CPU_CLONES before a function: GCC builds it twice, for AVX2 and for the baseline
// x86-64 (SSE2) the project targets, and the loader picks one by the CPU (target_clones). For
// the few hot loops that vectorise (GEMM rows, exp rows); no FMA in the AVX2 clone, so both give
// the same values. Elsewhere (clang, other CPUs) it is nothing.
#pragma once

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define SINKLAB_CPU_CLONES __attribute__((target_clones("avx2", "default")))
#else
#define SINKLAB_CPU_CLONES
#endif
