// The emulator's kernel execution: a grid runs block after block (in reverse order every other
// grid); a block's threads are fibers
// on one host thread, each run until it finishes or waits at a barrier. The scheduler releases
// what CUDA would: a warp whose 32 lanes all wait at a shuffle (each lane gets its source lane's
// value), or the whole block when every thread has finished or waits at __syncthreads. Lanes of
// one warp split between a shuffle and __syncthreads deadlock on a GPU too, and are reported.
// A thread's cp.async copies wait in its fiber until it calls async_copies_wait (or finishes).
// The racecheck build is told who runs and what each barrier releases (emu_race.h).
// On x86-64 fibers switch with a few instructions (callee-saved registers and the stack
// pointer); elsewhere with ucontext, whose swapcontext also makes a system call per switch.
#include <sys/mman.h>
#include <ucontext.h>

#include <atomic>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <stdexcept>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "cuda_emu.h"
#include "emu_race.h"

namespace emu {

thread_local Coords g_coords;

namespace {

constexpr size_t kStackBytes = 128 << 10;
constexpr unsigned kMaxThreadsPerBlock = 1024;
constexpr size_t kSharedAlign = 128;  // dynamic shared memory's alignment (a GPU gives at least this)

enum class State { Ready, AtBlockBarrier, AtWarpBarrier, Done };

#if defined(__x86_64__)
// switch_stack(save, next): pushes the callee-saved registers, stores the stack pointer in
// *save, loads next and pops the registers saved there, returning into the other fiber.
extern "C" void emu_switch_stack(void** save, void* next);
asm(R"(
  .text
  .p2align 4
  .type emu_switch_stack, @function
emu_switch_stack:
  pushq %rbp
  pushq %rbx
  pushq %r12
  pushq %r13
  pushq %r14
  pushq %r15
  movq %rsp, (%rdi)
  movq %rsi, %rsp
  popq %r15
  popq %r14
  popq %r13
  popq %r12
  popq %rbx
  popq %rbp
  ret
  .size emu_switch_stack, .-emu_switch_stack
)");

struct Context {
  void* sp = nullptr;
};
void fiber_main();
[[noreturn]] void fiber_start() {
  fiber_main();
  std::abort();  // fiber_main never returns: it switches away for good
}
// A fresh stack that "returns" into fiber_start with the ABI's alignment (rsp = 8 mod 16).
void make_context(Context* c, char* stack, size_t bytes) {
  auto* top = reinterpret_cast<uintptr_t*>((reinterpret_cast<uintptr_t>(stack + bytes)) & ~uintptr_t(15));
  *--top = 0;                                              // fiber_start's return address (none)
  *--top = reinterpret_cast<uintptr_t>(&fiber_start);      // where the first switch returns to
  for (int r = 0; r < 6; ++r) *--top = 0;                  // rbp rbx r12 r13 r14 r15
  c->sp = top;
}
void switch_context(Context* from, Context* to) { emu_switch_stack(&from->sp, to->sp); }
#else
struct Context {
  ucontext_t uc;
};
void fiber_main();
void make_context(Context* c, char* stack, size_t bytes) {
  getcontext(&c->uc);
  c->uc.uc_stack.ss_sp = stack;
  c->uc.uc_stack.ss_size = bytes;
  c->uc.uc_link = nullptr;
  makecontext(&c->uc, fiber_main, 0);
}
void switch_context(Context* from, Context* to) { swapcontext(&from->uc, &to->uc); }
#endif

// A cp.async copy issued and not yet waited for (and the racecheck's barrier interval then).
struct PendingCopy {
  void* dst;
  const void* src;
  uint32_t issued;
};

struct Fiber {
  Context context;
  State state = State::Ready;
  uint64_t shuffle_value = 0, shuffle_result = 0;
  int shuffle_source = 0;
  std::vector<PendingCopy> copies;
};

// One per host thread: the fibers of the running block and their stacks (kept for reuse).
struct Scheduler {
  std::vector<Fiber> fibers;
  std::vector<char*> stacks;
  Context main_context;
  int current = -1;  // index of the running fiber, -1 outside kernels
  const std::function<void()>* body = nullptr;
  std::vector<unsigned char> shared;
  ~Scheduler() {
    for (char* s : stacks) munmap(s, kStackBytes);
  }
  char* stack(size_t i) {
    while (stacks.size() <= i) {
      void* p = mmap(nullptr, kStackBytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
      if (p == MAP_FAILED) fatal("cannot map a fiber stack");
      stacks.push_back(static_cast<char*>(p));
    }
    return stacks[i];
  }
};

thread_local Scheduler t_sched;
thread_local cudaError_t t_last_error = cudaSuccess;
// Launches so far in the process (not per host thread: the addon runs ops on whichever worker
// thread is free, and a per-thread count made the warp order below, and with it the order of
// float atomics, depend on which thread ran an op).
std::atomic<uint64_t> g_launches{0};
std::atomic<uint64_t> g_grids{0};  // grids so far in the process (for the block order)

// Lands the running fiber's cp.async copies.
void land_copies(Fiber& f) {
  for (const PendingCopy& c : f.copies) {
    std::memcpy(c.dst, c.src, 16);
    race::async_commit(c.dst, 16, c.issued);
  }
  f.copies.clear();
}

void fiber_main() {
  Scheduler& s = t_sched;
  (*s.body)();
  land_copies(s.fibers[size_t(s.current)]);  // a thread may finish without waiting for them
  s.fibers[size_t(s.current)].state = State::Done;
  switch_context(&s.fibers[size_t(s.current)].context, &s.main_context);
}

// Switches from the running fiber back to the scheduler until it is released.
void wait(State st) {
  Scheduler& s = t_sched;
  if (s.current < 0) fatal("__syncthreads or a shuffle called outside a kernel");
  Fiber& f = s.fibers[size_t(s.current)];
  f.state = st;
  switch_context(&f.context, &s.main_context);
}

uint3 unflatten(unsigned i, dim3 d) { return uint3{i % d.x, (i / d.x) % d.y, i / (d.x * d.y)}; }

void run_block(Scheduler& s, unsigned n, const LaunchConfig& c) {
  s.fibers.assign(n, Fiber{});
  race::block_begin(c.name, c.site, g_coords.block, n, dynamic_shared_memory(), s.shared.size() - kSharedAlign);
  for (unsigned i = 0; i < n; ++i) {
    make_context(&s.fibers[i].context, s.stack(i), kStackBytes);
  }
  const unsigned warps = (n + 31) / 32;
  // Odd launches take the warps in reverse order, so a dependency between warps that lacks a
  // __syncthreads breaks one way or the other.
  const bool reverse = (g_launches.fetch_add(1) & 1) != 0;
  for (;;) {
    // Each warp runs as far as it can (to __syncthreads or its end) before the next starts:
    // on a GPU warps drift apart just as freely, and this makes missing barriers visible.
    for (unsigned wi = 0; wi < warps; ++wi) {
      const unsigned w = reverse ? warps - 1 - wi : wi;
      const unsigned l0 = w * 32, l1 = std::min(n, l0 + 32);
      for (;;) {
        for (unsigned i = l0; i < l1; ++i) {
          Fiber& f = s.fibers[i];
          if (f.state != State::Ready) continue;
          s.current = int(i);
          g_coords.thread = unflatten(i, g_coords.block_dim);
          race::set_thread(int(i));
          switch_context(&s.main_context, &f.context);
          race::set_thread(-1);
          s.current = -1;
        }
        unsigned waiting = 0, done = 0;
        for (unsigned i = l0; i < l1; ++i) {
          waiting += s.fibers[i].state == State::AtWarpBarrier;
          done += s.fibers[i].state == State::Done;
        }
        if (waiting == 0) break;  // the warp waits at __syncthreads or has finished
        if (waiting + done != l1 - l0) fatal("deadlock: lanes of a warp wait at a shuffle and at __syncthreads");
        if (done) fatal("a warp shuffle with a full mask ran after some lanes of the warp had exited");
        for (unsigned i = l0; i < l1; ++i) {
          Fiber& f = s.fibers[i];
          const unsigned src = l0 + unsigned(f.shuffle_source);
          f.shuffle_result = src < l1 ? s.fibers[src].shuffle_value : f.shuffle_value;
        }
        for (unsigned i = l0; i < l1; ++i) s.fibers[i].state = State::Ready;
        race::warp_released(w);
      }
    }
    // Every thread has finished or waits at __syncthreads: release the barrier.
    bool any_waiting = false;
    for (unsigned i = 0; i < n; ++i)
      if (s.fibers[i].state == State::AtBlockBarrier) {
        s.fibers[i].state = State::Ready;
        any_waiting = true;
      }
    if (!any_waiting) return;
    race::block_released();
  }
}

}  // namespace

void fatal(const char* what) {
  if (t_sched.current >= 0) {
    // Inside a fiber an exception cannot unwind to the caller: stop, as a GPU fault would.
    std::fprintf(stderr, "CUDA emulator: %s\n", what);
    std::abort();
  }
  throw std::runtime_error(std::string("CUDA emulator: ") + what);
}

void set_last_error(cudaError_t e) {
  if (t_last_error == cudaSuccess) t_last_error = e;
}

cudaError_t take_last_error() {
  const cudaError_t e = t_last_error;
  t_last_error = cudaSuccess;
  return e;
}

void* dynamic_shared_memory() {
  const uintptr_t p = reinterpret_cast<uintptr_t>(t_sched.shared.data());
  return reinterpret_cast<void*>((p + kSharedAlign - 1) & ~uintptr_t(kSharedAlign - 1));
}

void block_barrier() { wait(State::AtBlockBarrier); }

void async_copy16(void* shared, const void* global) {
  Scheduler& s = t_sched;
  if (s.current < 0) fatal("cp.async called outside a kernel");
  // A 16-byte cp.async needs both addresses 16-byte aligned (a GPU faults otherwise).
  if ((reinterpret_cast<uintptr_t>(shared) | reinterpret_cast<uintptr_t>(global)) % 16 != 0)
    fatal("cp.async of 16 bytes with an address that is not 16-byte aligned");
  race::async_issue(shared, global, 16);
  s.fibers[size_t(s.current)].copies.push_back(PendingCopy{shared, global, race::interval()});
}

void async_copies_wait() {
  Scheduler& s = t_sched;
  if (s.current < 0) fatal("cp.async.wait_all called outside a kernel");
  land_copies(s.fibers[size_t(s.current)]);
}

uint64_t warp_exchange(uint64_t mine, int src_lane) {
  Scheduler& s = t_sched;
  if (s.current < 0) fatal("a warp shuffle called outside a kernel");
  Fiber& f = s.fibers[size_t(s.current)];
  f.shuffle_value = mine;
  f.shuffle_source = src_lane & 31;
  wait(State::AtWarpBarrier);
  return s.fibers[size_t(s.current)].shuffle_result;
}

cudaError_t launch_error(const LaunchConfig& c) {
  const uint64_t threads = uint64_t(c.block.x) * c.block.y * c.block.z;
  const bool bad = threads == 0 || threads > kMaxThreadsPerBlock || c.block.z > 64 || c.grid.x == 0 || c.grid.y == 0 ||
                   c.grid.z == 0 || c.grid.x > 2147483647u || c.grid.y > 65535 || c.grid.z > 65535;
  if (bad) return cudaErrorInvalidConfiguration;
  if (c.shared_bytes > c.shared_limit) return cudaErrorInvalidValue;
  return cudaSuccess;
}

namespace {
// NCF_EMU_SLOW_KERNEL=name:ms[,name:ms...]: each launch of a kernel whose name starts with `name`
// takes ms milliseconds more (for tests of what times kernels, such as --autotune's choice).
void slow_down(const char* kernel) {
  static const std::vector<std::pair<std::string, int>> slow = [] {
    std::vector<std::pair<std::string, int>> v;
    const char* e = std::getenv("NCF_EMU_SLOW_KERNEL");
    for (std::string rest = e ? e : ""; !rest.empty();) {
      const size_t comma = rest.find(','), colon = rest.rfind(':', comma);
      if (colon != std::string::npos && colon > 0) v.emplace_back(rest.substr(0, colon), std::atoi(rest.c_str() + colon + 1));
      rest = comma == std::string::npos ? std::string() : rest.substr(comma + 1);
    }
    return v;
  }();
  for (const auto& [name, ms] : slow)
    if (std::strncmp(kernel, name.c_str(), name.size()) == 0) std::this_thread::sleep_for(std::chrono::milliseconds(ms));
}
}  // namespace

void run_grid(const LaunchConfig& c, const std::function<void()>& body) {
  slow_down(c.name);
  const uint64_t threads = uint64_t(c.block.x) * c.block.y * c.block.z;
  Scheduler& s = t_sched;
  if (s.current >= 0) fatal("a kernel launched from inside a kernel");
  const DeviceScope device;
  s.body = &body;
  s.shared.assign(c.shared_bytes + kSharedAlign, 0xA5);  // not zeroed, as on the GPU
  g_coords.block_dim = c.block;
  g_coords.grid_dim = c.grid;
  // Odd grids take their blocks in reverse order: blocks of a grid run in any order on a GPU, so
  // a result that depends on which of two blocks writes last breaks one way or the other.
  const bool reverse = (g_grids.fetch_add(1) & 1) != 0;
  race::grid_begin();
  const uint64_t blocks = uint64_t(c.grid.x) * c.grid.y * c.grid.z;
  for (uint64_t b = 0; b < blocks; ++b) {
    const uint64_t i = reverse ? blocks - 1 - b : b;
    g_coords.block = uint3{unsigned(i % c.grid.x), unsigned(i / c.grid.x % c.grid.y), unsigned(i / (uint64_t(c.grid.x) * c.grid.y))};
    run_block(s, unsigned(threads), c);
  }
  s.body = nullptr;
  race::grid_end();
}

}  // namespace emu
