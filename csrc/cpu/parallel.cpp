// The thread pool behind parallel_tasks (see fusetrain/parallel.h for what it promises).
//
// One job at a time: the submitting thread publishes (fn, ctx, ntasks) and bumps a generation
// counter; workers notice it (spinning, or woken from a futex), claim tasks with an atomic
// counter, and the submitter claims tasks too. The submitter returns once every task is done and
// no worker is still inside the job, so the job's stack-held context stays valid for exactly as
// long as anyone can read it.
//
// Waiting: a worker that finds no job spins for spin_us() (default 50 us) and then sleeps on its
// own futex word; the submitter wakes only the sleeping workers the job can use. A training step
// issues kernels a few microseconds apart, so workers stay awake through a step, and a pause of a
// tenth of a millisecond puts them to sleep.
#include "fusetrain/parallel.h"

#include <pthread.h>
#include <sched.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <exception>
#include <fstream>
#include <mutex>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "fusetrain/common.h"

#if defined(__linux__)
#include <linux/futex.h>
#include <sys/syscall.h>
#include <unistd.h>
#endif

#if defined(__x86_64__) || defined(__i386__)
#include <immintrin.h>
#define FT_PAUSE() _mm_pause()
#elif defined(__aarch64__)
#define FT_PAUSE() asm volatile("yield" ::: "memory")
#else
#define FT_PAUSE() ((void)0)
#endif

namespace fusetrain {
namespace {

// ---------------------------------------------------------------- waiting primitives

void futex_wait(std::atomic<uint32_t>* word, uint32_t expected) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAIT_PRIVATE, expected, nullptr, nullptr, 0);
#else
  while (word->load(std::memory_order_acquire) == expected) std::this_thread::sleep_for(std::chrono::microseconds(50));
#endif
}

void futex_wake(std::atomic<uint32_t>* word) {
#if defined(__linux__)
  syscall(SYS_futex, reinterpret_cast<uint32_t*>(word), FUTEX_WAKE_PRIVATE, INT_MAX, nullptr, nullptr, 0);
#else
  (void)word;
#endif
}

using Clock = std::chrono::steady_clock;

// Spins until done() or `us` microseconds have passed; true when done() came true.
template <class Done>
bool spin_until(Done&& done, int us) {
  if (done()) return true;
  if (us <= 0) return false;
  const auto deadline = Clock::now() + std::chrono::microseconds(us);
  for (;;) {
    for (int i = 0; i < 64; ++i) {
      FT_PAUSE();
      if (done()) return true;
    }
    if (Clock::now() >= deadline) return false;
  }
}

// ---------------------------------------------------------------- thread-count sources

int parse_positive(const char* s) {
  if (!s) return 0;
  while (*s == ' ') ++s;
  char* end = nullptr;
  const long v = std::strtol(s, &end, 10);
  if (end == s || v < 1) return 0;
  return v > 4096 ? 4096 : int(v);
}

int affinity_cpus() {
#if defined(__linux__)
  cpu_set_t set;
  CPU_ZERO(&set);
  if (sched_getaffinity(0, sizeof(set), &set) == 0) {
    const int n = CPU_COUNT(&set);
    if (n > 0) return n;
  }
#endif
  const unsigned hw = std::thread::hardware_concurrency();
  return hw > 0 ? int(hw) : 1;
}

// CPUs the cgroup quota allows (rounded up), or 0 when there is no quota.
int cgroup_cpus() {
#if defined(__linux__)
  int best = 0;
  auto consider = [&](double quota, double period) {
    if (quota > 0 && period > 0) {
      const int n = std::max(1, int(std::ceil(quota / period)));
      best = best == 0 ? n : std::min(best, n);
    }
  };
  // cgroup v2: "0::/path" in /proc/self/cgroup; cpu.max holds "max 100000" or "200000 100000",
  // at every level from the process's cgroup up to the (namespace) root.
  std::ifstream self("/proc/self/cgroup");
  std::string line;
  while (std::getline(self, line)) {
    if (line.rfind("0::", 0) != 0) continue;
    std::string path = line.substr(3);
    for (;;) {
      std::ifstream f("/sys/fs/cgroup" + (path == "/" ? std::string() : path) + "/cpu.max");
      std::string q;
      double period = 0;
      if (f >> q >> period && q != "max") consider(std::atof(q.c_str()), period);
      if (path.empty() || path == "/") break;
      const size_t cut = path.find_last_of('/');
      path = cut == 0 || cut == std::string::npos ? "/" : path.substr(0, cut);
    }
  }
  // cgroup v1
  for (const char* dir : {"/sys/fs/cgroup/cpu", "/sys/fs/cgroup/cpu,cpuacct"}) {
    std::ifstream fq(std::string(dir) + "/cpu.cfs_quota_us"), fp(std::string(dir) + "/cpu.cfs_period_us");
    double quota = 0, period = 0;
    if (fq >> quota && fp >> period) consider(quota, period);
  }
  return best;
#else
  return 0;
#endif
}

// ---------------------------------------------------------------- the pool

// A worker's sleeping place: its own futex word, so a job wakes only the workers it can use.
struct alignas(64) Sleeper {
  std::atomic<uint32_t> word{0};
  std::atomic<bool> asleep{false};
};

struct alignas(64) Pool {
  // The job, written by the submitter before `gen` is bumped (release) and read by workers after
  // they see the new `gen` (acquire).
  detail::TaskFn fn = nullptr;
  void* ctx = nullptr;
  int64_t ntasks = 0;
  int team = 1;
  alignas(64) std::atomic<int64_t> next{0};   // next task to claim
  alignas(64) std::atomic<int64_t> done{0};   // tasks finished
  alignas(64) std::atomic<uint32_t> gen{0};   // odd: a job is open; even: none
  alignas(64) std::atomic<int> inside{0};     // workers currently inside the open job
  alignas(64) std::atomic<bool> busy{false};  // a submitter owns the pool
  std::atomic<bool> failed{false};
  std::exception_ptr error;        // first exception a task threw (guarded by `failed`)
  std::mutex grow;                 // guards `sleepers` growth
  std::vector<Sleeper*> sleepers;  // one per worker; never freed (workers outlive us)
  std::atomic<int> nworkers{0};
};

std::atomic<Pool*> g_pool{nullptr};
std::atomic<int> g_threads{0};  // 0: not decided yet
std::atomic<int> g_spin_us{50};
std::once_flag g_atfork_once;
thread_local bool t_in_task = false;

void run_claimed(Pool* p, int worker) {
  const int64_t n = p->ntasks;
  for (;;) {
    const int64_t t = p->next.fetch_add(1, std::memory_order_relaxed);
    if (t >= n) break;
    if (!p->failed.load(std::memory_order_relaxed)) {
      try {
        p->fn(p->ctx, t, worker);
      } catch (...) {
        bool expected = false;
        if (p->failed.compare_exchange_strong(expected, true)) p->error = std::current_exception();
      }
    }
    p->done.fetch_add(1, std::memory_order_release);
  }
}

void worker_main(Pool* p, int index, Sleeper* s) {
  t_in_task = true;  // a kernel called from a task runs inline
  uint32_t seen = p->gen.load(std::memory_order_acquire);
  for (;;) {
    uint32_t g = seen;
    const bool woke = spin_until([&] { return (g = p->gen.load(std::memory_order_acquire)) != seen; }, spin_us());
    if (!woke) {
      const uint32_t w = s->word.load(std::memory_order_acquire);
      s->asleep.store(true, std::memory_order_seq_cst);
      // Re-check after announcing the sleep: a submitter that bumped gen before it saw `asleep`
      // is caught here; one that saw it will bump `word` and wake us.
      if (p->gen.load(std::memory_order_seq_cst) == seen) futex_wait(&s->word, w);
      s->asleep.store(false, std::memory_order_relaxed);
      continue;
    }
    seen = g;
    if (!(g & 1u)) continue;  // a job closed before we saw it open
    p->inside.fetch_add(1, std::memory_order_seq_cst);
    // The job may have closed (and the submitter returned) between reading gen and entering.
    if (p->gen.load(std::memory_order_seq_cst) == g && index < p->team) run_claimed(p, index);
    p->inside.fetch_sub(1, std::memory_order_release);
  }
}

void on_fork_child() {
  // The child has only the thread that forked: the parent's workers do not exist here. Forget
  // the pool (its memory is leaked on purpose: it may be mid-job) and build a new one on demand.
  g_pool.store(nullptr, std::memory_order_relaxed);
  t_in_task = false;
}

Pool* pool() {
  Pool* p = g_pool.load(std::memory_order_acquire);
  if (p) return p;
  std::call_once(g_atfork_once, [] { pthread_atfork(nullptr, nullptr, on_fork_child); });
  Pool* fresh = new Pool();
  Pool* expected = nullptr;
  if (!g_pool.compare_exchange_strong(expected, fresh, std::memory_order_acq_rel)) {
    delete fresh;
    return expected;
  }
  return fresh;
}

// Called by the submitter that owns the pool (busy == true): makes sure workers 1..team-1 exist.
// Returns how many threads the job can actually have (thread creation can fail).
int ensure_workers(Pool* p, int team) {
  if (p->nworkers.load(std::memory_order_acquire) >= team - 1) return team;
  std::lock_guard<std::mutex> lock(p->grow);
  while (p->nworkers.load(std::memory_order_relaxed) < team - 1) {
    const int index = p->nworkers.load(std::memory_order_relaxed) + 1;
    Sleeper* s = new Sleeper();
    try {
      std::thread(worker_main, p, index, s).detach();
    } catch (const std::system_error&) {
      delete s;
      break;
    }
    p->sleepers.push_back(s);
    p->nworkers.store(index, std::memory_order_release);
  }
  return std::min(team, p->nworkers.load(std::memory_order_relaxed) + 1);
}

}  // namespace

int default_num_threads() {
  const int env = parse_positive(std::getenv("OMP_NUM_THREADS"));
  if (env > 0) return env;
  int n = affinity_cpus();
  const int quota = cgroup_cpus();
  if (quota > 0) n = std::min(n, quota);
  return std::max(1, n);
}

int num_threads() {
  int n = g_threads.load(std::memory_order_relaxed);
  if (n > 0) return n;
  n = default_num_threads();
  int expected = 0;
  g_threads.compare_exchange_strong(expected, n, std::memory_order_relaxed);
  return g_threads.load(std::memory_order_relaxed);
}

void set_num_threads(int n) {
  check(n >= 1, "num_threads must be >= 1, got " + std::to_string(n));
  g_threads.store(std::min(n, 4096), std::memory_order_relaxed);
}

int spin_us() { return g_spin_us.load(std::memory_order_relaxed); }

void set_spin_us(int us) {
  check(us >= 0 && us <= 1000000, "spin time must be in [0, 1000000] microseconds, got " + std::to_string(us));
  g_spin_us.store(us, std::memory_order_relaxed);
}

int threads_for(int64_t work) { return work > kParallelGrain ? num_threads() : 1; }

int reduction_parts(int64_t units) {
  const int64_t parts = std::max<int64_t>(8, num_threads());
  return int(std::max<int64_t>(1, std::min(units, parts)));
}

namespace detail {

void run_tasks(int64_t ntasks, int team, TaskFn fn, void* ctx) {
  team = int(std::min<int64_t>(std::min(team, num_threads()), ntasks));
  Pool* p = team > 1 && !t_in_task ? pool() : nullptr;
  bool owner = false;
  if (p) owner = !p->busy.load(std::memory_order_relaxed) && !p->busy.exchange(true, std::memory_order_acquire);
  if (!owner) {  // nested, single-threaded, or another thread holds the pool: run here, in order
    for (int64_t t = 0; t < ntasks; ++t) fn(ctx, t, 0);
    return;
  }
  team = ensure_workers(p, team);
  p->fn = fn;
  p->ctx = ctx;
  p->ntasks = ntasks;
  p->team = team;
  p->failed.store(false, std::memory_order_relaxed);
  p->error = nullptr;
  p->next.store(0, std::memory_order_relaxed);
  p->done.store(0, std::memory_order_relaxed);
  const uint32_t g = p->gen.load(std::memory_order_relaxed) + 1;  // odd: open
  p->gen.store(g, std::memory_order_seq_cst);
  for (int i = 1; i < team; ++i) {
    Sleeper* s = p->sleepers[size_t(i - 1)];
    if (s->asleep.load(std::memory_order_seq_cst)) {
      s->word.fetch_add(1, std::memory_order_release);
      futex_wake(&s->word);
    }
  }
  t_in_task = true;
  run_claimed(p, 0);
  t_in_task = false;
  // Tasks claimed by workers may still be running; a worker descheduled mid-task is waited for,
  // yielding the core so it can finish.
  auto all_done = [&] { return p->done.load(std::memory_order_acquire) >= ntasks; };
  while (!spin_until(all_done, 20)) sched_yield();
  p->gen.store(g + 1, std::memory_order_seq_cst);  // even: closed, no worker enters any more
  auto nobody_inside = [&] { return p->inside.load(std::memory_order_seq_cst) == 0; };
  while (!spin_until(nobody_inside, 20)) sched_yield();
  std::exception_ptr error = p->failed.load(std::memory_order_acquire) ? p->error : nullptr;
  p->error = nullptr;
  p->busy.store(false, std::memory_order_release);
  if (error) std::rethrow_exception(error);
}

}  // namespace detail
}  // namespace fusetrain

namespace fusetrain {

namespace {
constexpr int kScratchSlots = 8;
constexpr int64_t kScratchCap = int64_t(64) << 20;  // floats kept per slot (256 MB)
struct ThreadScratch {
  std::unique_ptr<float[]> buf[kScratchSlots];
  int64_t size[kScratchSlots] = {};
};
thread_local ThreadScratch t_scratch;
}  // namespace

ScratchBuf thread_scratch(int slot, int64_t n) {
  check(slot >= 0 && slot < kScratchSlots, "scratch slot out of range");
  n = n > 0 ? n : 1;
  if (n > kScratchCap) {
    ScratchBuf b{nullptr, std::unique_ptr<float[]>(new float[size_t(n)])};
    b.ptr = b.own.get();
    return b;
  }
  if (t_scratch.size[slot] < n) {
    t_scratch.buf[slot].reset();  // free first: the old and new buffers need not coexist
    t_scratch.buf[slot].reset(new float[size_t(n)]);
    t_scratch.size[slot] = n;
  }
  return ScratchBuf{t_scratch.buf[slot].get(), nullptr};
}

}  // namespace fusetrain
