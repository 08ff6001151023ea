// The scheduler of the CPU execution layer (gmk/emu/runtime.h): runs a CUDA grid on the host,
// one block at a time, the block's threads as cooperative fibers (ucontext) on the calling OS
// thread.
//
// A fiber runs until it reaches a barrier (__syncthreads, or either half of a warp shuffle) or
// returns. The last thread to arrive at a barrier moves every waiter back to the run queue; each
// round of the scheduler resumes the queued threads in an order drawn from the schedule seed
// (seed 0: thread order), so the interleaving between barriers changes with the seed. Blocks
// run in a seeded order too (atomics between blocks then add up in different orders).
//
// Why fibers and not one OS thread per CUDA thread: a block of 256 threads would be 256 OS
// threads, and every barrier a futex wake-up of all of them; the fibers' barrier is a context
// switch per thread (tools/bench: csrc/emu/bench_fibers.cpp measures it). The scheduler also
// decides the interleaving itself, which is what makes schedules reproducible from a seed.
//
// Under AddressSanitizer the switches are annotated (__sanitizer_start/finish_switch_fiber) so
// that ASan knows which stack is live; every fiber stack has a PROT_NONE guard page below it.
#include "gmk/emu/runtime.h"

#include <sys/mman.h>
#include <ucontext.h>
#include <unistd.h>

#include <algorithm>
#include <mutex>
#include <new>
#include <random>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#define GMK_EMU_ASAN 1
#include <sanitizer/asan_interface.h>
#include <sanitizer/common_interface_defs.h>
#endif

namespace gmk {
namespace emu {

thread_local ThreadState* g_thread = nullptr;
thread_local uint3 g_block_idx{0, 0, 0};
thread_local dim3 g_block_dim{1, 1, 1};
thread_local dim3 g_grid_dim{1, 1, 1};

Config& config() {
  static Config c;
  return c;
}

namespace {

constexpr size_t kStackBytes = 256 * 1024;  // usable bytes per fiber stack
constexpr unsigned kMaxThreads = 1024;
constexpr size_t kMaxDynamicShared = 48 * 1024;  // without cudaFuncSetAttribute, as on sm_80/90

enum class Wait { kRun, kBlock, kWarp, kDone };

struct Fiber {
  ThreadState st;
  ucontext_t ctx;
  char* stack = nullptr;  // lowest usable address
  Wait wait = Wait::kRun;
  uint64_t deposit = 0;
};

struct Block {
  unsigned n = 0;
  std::vector<Fiber> fibers;
  std::vector<int> ready, next;
  unsigned block_waiting = 0;
  std::vector<unsigned> warp_waiting, warp_done;
  unsigned done = 0;
  int current = -1;
  const char* error = nullptr;
  void (*body)(void*) = nullptr;
  void* ctx = nullptr;
  void* smem = nullptr;
  ucontext_t sched;
#if defined(GMK_EMU_ASAN)
  const void* sched_bottom = nullptr;
  size_t sched_size = 0;
#endif
};

std::mutex g_launch_mutex;  // one grid at a time (the static __shared__ arrays are process-wide)
Block* g_blk = nullptr;
std::mt19937_64 g_rng{0};
cudaError_t g_last_error = cudaSuccess;

std::vector<char*>& stack_pool() {
  static std::vector<char*> pool;
  return pool;
}

char* fiber_stack(unsigned i) {
  auto& pool = stack_pool();
  const size_t page = static_cast<size_t>(sysconf(_SC_PAGESIZE));
  while (pool.size() <= i) {
    void* m = mmap(nullptr, kStackBytes + page, PROT_READ | PROT_WRITE,
                   MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
    if (m == MAP_FAILED) throw std::bad_alloc();
    mprotect(m, page, PROT_NONE);  // a stack overflow faults instead of corrupting a neighbour
    pool.push_back(static_cast<char*>(m) + page);
  }
  return pool[i];
}

void fail(Block& b, const char* msg) {
  if (b.error == nullptr) b.error = msg;
}

void yield_to_scheduler() {
  Block& b = *g_blk;
  Fiber& f = b.fibers[b.current];
#if defined(GMK_EMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, b.sched_bottom, b.sched_size);
  swapcontext(&f.ctx, &b.sched);
  __sanitizer_finish_switch_fiber(fake, &b.sched_bottom, &b.sched_size);
#else
  swapcontext(&f.ctx, &b.sched);
#endif
}

void fiber_entry(int i) {
  Block& b = *g_blk;
#if defined(GMK_EMU_ASAN)
  __sanitizer_finish_switch_fiber(nullptr, &b.sched_bottom, &b.sched_size);
#endif
  b.body(b.ctx);
  Fiber& f = b.fibers[i];
  f.wait = Wait::kDone;
  ++b.done;
  const unsigned w = static_cast<unsigned>(i) / 32;
  ++b.warp_done[w];
  if (b.warp_waiting[w] > 0) fail(b, "emulation: a thread exited while lanes of its warp wait in a shuffle");
  if (b.block_waiting > 0) fail(b, "emulation: a thread exited while others wait at __syncthreads");
#if defined(GMK_EMU_ASAN)
  __sanitizer_start_switch_fiber(nullptr, b.sched_bottom, b.sched_size);  // this fiber ends
#endif
  setcontext(&b.sched);
}

void resume(Block& b, int i) {
  Fiber& f = b.fibers[i];
  b.current = i;
  g_thread = &f.st;
  f.wait = Wait::kRun;
#if defined(GMK_EMU_ASAN)
  void* fake = nullptr;
  __sanitizer_start_switch_fiber(&fake, f.stack, kStackBytes);
  swapcontext(&b.sched, &f.ctx);
  __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#else
  swapcontext(&b.sched, &f.ctx);
#endif
  g_thread = nullptr;
}

// Runs block `bi` to completion (or to an error); returns the error or null.
const char* run_block(Block& b, unsigned bi, size_t smem_bytes) {
  g_block_idx = uint3{bi, 0, 0};
  b.done = 0;
  b.block_waiting = 0;
  std::fill(b.warp_waiting.begin(), b.warp_waiting.end(), 0u);
  std::fill(b.warp_done.begin(), b.warp_done.end(), 0u);
  b.error = nullptr;
  b.smem = ::operator new(smem_bytes, std::align_val_t{16});
  b.ready.clear();
  for (unsigned i = 0; i < b.n; ++i) {
    Fiber& f = b.fibers[i];
    f.st.idx = uint3{i, 0, 0};
    f.wait = Wait::kRun;
    f.stack = fiber_stack(i);
#if defined(GMK_EMU_ASAN)
    __asan_unpoison_memory_region(f.stack, kStackBytes);  // frames of an abandoned fiber
#endif
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = f.stack;
    f.ctx.uc_stack.ss_size = kStackBytes;
    f.ctx.uc_link = nullptr;
    makecontext(&f.ctx, reinterpret_cast<void (*)()>(&fiber_entry), 1, static_cast<int>(i));
    b.ready.push_back(static_cast<int>(i));
  }
  const bool shuffle = config().schedule_seed != 0;
  while (!b.ready.empty() && b.error == nullptr) {
    if (shuffle) std::shuffle(b.ready.begin(), b.ready.end(), g_rng);
    b.next.clear();
    for (const int i : b.ready) {
      resume(b, i);
      if (b.error) break;
    }
    std::swap(b.ready, b.next);
  }
  if (b.error == nullptr && b.done != b.n)
    fail(b, "emulation: deadlock (threads wait on a barrier the others never reach)");
  ::operator delete(b.smem, std::align_val_t{16});
  b.smem = nullptr;
  return b.error;
}

void release_block_barrier(Block& b) {
  for (unsigned i = 0; i < b.n; ++i)
    if (b.fibers[i].wait == Wait::kBlock) b.next.push_back(static_cast<int>(i));
  b.block_waiting = 0;
}

void warp_barrier() {
  Block& b = *g_blk;
  const unsigned i = static_cast<unsigned>(b.current);
  const unsigned w = i / 32, base = w * 32, lanes = std::min(32u, b.n - base);
  b.fibers[i].wait = Wait::kWarp;
  if (b.warp_done[w] > 0) fail(b, "emulation: a shuffle of a warp whose lanes have exited");
  if (++b.warp_waiting[w] == lanes) {
    for (unsigned k = base; k < base + lanes; ++k) b.next.push_back(static_cast<int>(k));
    b.warp_waiting[w] = 0;
  }
  yield_to_scheduler();
}

}  // namespace

void syncthreads() {
  Block& b = *g_blk;
  b.fibers[b.current].wait = Wait::kBlock;
  if (b.done > 0) fail(b, "emulation: __syncthreads after some threads of the block exited");
  if (++b.block_waiting == b.n) release_block_barrier(b);
  yield_to_scheduler();
}

uint64_t warp_exchange(uint64_t mine, int src_lane) {
  Block& b = *g_blk;
  const unsigned i = static_cast<unsigned>(b.current);
  const unsigned base = (i / 32) * 32, lanes = std::min(32u, b.n - base);
  b.fibers[i].deposit = mine;
  warp_barrier();  // every lane has deposited
  const uint64_t got = (src_lane >= 0 && static_cast<unsigned>(src_lane) < lanes)
                           ? b.fibers[base + static_cast<unsigned>(src_lane)].deposit
                           : mine;
  warp_barrier();  // every lane has read before any deposits again
  return got;
}

void* dynamic_shared_raw() { return g_blk->smem; }

const char* run_grid(unsigned grid, unsigned block, size_t smem_bytes, void (*body)(void*),
                     void* ctx) {
  std::lock_guard<std::mutex> lock(g_launch_mutex);
  if (grid == 0 || block == 0 || block > kMaxThreads) {
    g_last_error = cudaErrorInvalidConfiguration;
    return cudaGetErrorString(cudaGetLastError());
  }
  if (smem_bytes > kMaxDynamicShared) {
    g_last_error = cudaErrorInvalidValue;
    return cudaGetErrorString(cudaGetLastError());
  }
  Block b;
  b.n = block;
  b.fibers.resize(block);
  b.warp_waiting.assign((block + 31) / 32, 0u);
  b.warp_done.assign((block + 31) / 32, 0u);
  b.body = body;
  b.ctx = ctx;
  g_blk = &b;
  g_grid_dim = dim3{grid, 1, 1};
  g_block_dim = dim3{block, 1, 1};
  std::vector<unsigned> order(grid);
  for (unsigned k = 0; k < grid; ++k) order[k] = k;
  if (config().schedule_seed != 0) std::shuffle(order.begin(), order.end(), g_rng);
  const char* err = nullptr;
  for (const unsigned bi : order) {
    err = run_block(b, bi, smem_bytes);
    if (err) break;
  }
  g_blk = nullptr;
  return err;
}

void reseed(uint64_t seed) { g_rng.seed(seed); }

}  // namespace emu
}  // namespace gmk

cudaError_t cudaGetLastError() {
  const cudaError_t e = gmk::emu::g_last_error;
  gmk::emu::g_last_error = cudaSuccess;
  return e;
}

const char* cudaGetErrorString(cudaError_t e) {
  switch (e) {
    case cudaSuccess: return "no error";
    case cudaErrorInvalidValue: return "invalid argument";
    case cudaErrorInvalidConfiguration: return "invalid configuration argument";
    case cudaErrorLaunchFailure: return "unspecified launch failure";
  }
  return "unknown error";
}

cudaError_t cudaGetDevice(int* dev) {
  *dev = 0;
  return cudaSuccess;
}

cudaError_t cudaDeviceGetAttribute(int* value, cudaDeviceAttr attr, int /*dev*/) {
  if (attr != cudaDevAttrMultiProcessorCount) return cudaErrorInvalidValue;
  *value = gmk::emu::config().sm_count;
  return cudaSuccess;
}
