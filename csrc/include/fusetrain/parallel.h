// fusetrain's one thread pool: every CPU kernel runs its parallel work through parallel_tasks /
// parallel_for below (no OpenMP runtime, no BLAS threads).
//
// Why a pool of our own (csrc/cpu/parallel.cpp has the details):
// - Work is cut into tasks that threads claim one by one, and the calling thread claims tasks too.
//   A worker that the OS has descheduled (another process needs the core) or that is still waking
//   up simply claims fewer tasks; nobody waits for it, so a busy machine slows a kernel down in
//   proportion to the CPU it gets instead of stalling every kernel on the slowest thread.
// - Idle workers spin only briefly (tens of microseconds, enough to catch the next kernel of a
//   training step) and then sleep on a futex: they never hold a core that another process needs.
// - The pool is rebuilt in a forked child, follows OMP_NUM_THREADS, the CPU affinity mask and a
//   cgroup CPU quota, and set_num_threads().
// - A kernel called while the pool is busy (a second Python thread) or from inside a task runs on
//   the calling thread alone.
#pragma once
#include <cstdint>
#include <type_traits>

namespace fusetrain {

// Threads a kernel may use, the calling thread included (>= 1).
int num_threads();
// Sets it (n >= 1); later kernels use at most n threads.
void set_num_threads(int n);
// What num_threads() starts as: OMP_NUM_THREADS when set (its first entry), else the CPUs this
// process may run on (affinity mask), lowered to the cgroup CPU quota when one is set.
int default_num_threads();
// How long idle workers spin before they sleep, in microseconds (0: sleep at once).
int spin_us();
void set_spin_us(int us);

// Threads worth using for `work` units of element work (1 below the parallel grain).
int threads_for(int64_t work);

namespace detail {
using TaskFn = void (*)(void* ctx, int64_t task, int worker);
// Runs fn(ctx, t, worker) for every t in [0, ntasks) on at most `team` threads; returns when all
// are done. Rethrows the first exception a task threw.
void run_tasks(int64_t ntasks, int team, TaskFn fn, void* ctx);
}  // namespace detail

// body(task, worker) once for each task in [0, ntasks), on at most `team` threads. `worker` is in
// [0, team) and no two tasks run at the same time with the same worker: index per-thread scratch
// with it. Which worker runs which task varies from call to call, so a reduction must combine
// per-TASK partials (in task order) to be deterministic.
template <class F>
void parallel_tasks(int64_t ntasks, int team, F&& body) {
  if (ntasks <= 0) return;
  if (team <= 1 || ntasks == 1) {
    for (int64_t t = 0; t < ntasks; ++t) body(t, 0);
    return;
  }
  using Fn = std::remove_reference_t<F>;
  detail::run_tasks(
      ntasks, team, [](void* ctx, int64_t t, int w) { (*static_cast<Fn*>(ctx))(t, w); },
      const_cast<void*>(static_cast<const void*>(&body)));
}

// body(lo, hi) over [0, units) cut into chunks (multiples of `align` units, about four per
// thread, so a thread that falls behind leaves its later chunks to the others), when `work` (the
// element work of all units) exceeds the parallel grain; else one call on the calling thread.
template <class F>
void parallel_chunks(int64_t units, int64_t work, F&& body, int64_t align = 1) {
  if (units <= 0) return;
  const int team = threads_for(work);
  if (team <= 1 || units <= align) {
    body(int64_t(0), units);
    return;
  }
  int64_t chunk = (units + 4 * team - 1) / (4 * team);
  chunk = (chunk + align - 1) / align * align;
  const int64_t tasks = (units + chunk - 1) / chunk;
  parallel_tasks(tasks, team, [&](int64_t t, int) {
    const int64_t lo = t * chunk;
    body(lo, lo + chunk < units ? lo + chunk : units);
  });
}

// parallel_chunks over n elements, chunks aligned to 16 floats (a cache line).
template <class F>
void parallel_for(int64_t n, F&& body) {
  parallel_chunks(n, n, static_cast<F&&>(body), 16);
}

// Number of fixed partials a deterministic reduction over `units` independent units should use:
// at least 8 (so the result does not change with the thread count on machines of up to 8
// threads), more on bigger machines, never more than the units.
int reduction_parts(int64_t units);

}  // namespace fusetrain
