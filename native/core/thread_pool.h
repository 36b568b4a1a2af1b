// A fixed pool of worker threads for the CPU backend's loops and the data preparation.
// parallel_for splits [0, n) into one contiguous chunk per thread (the caller's thread takes the
// first), so results are deterministic for a given thread count when each chunk writes its own
// outputs.
#pragma once
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <mutex>
#include <thread>
#include <vector>

namespace ncf {

class ThreadPool {
 public:
  explicit ThreadPool(int threads);
  ~ThreadPool();
  ThreadPool(const ThreadPool&) = delete;
  ThreadPool& operator=(const ThreadPool&) = delete;

  int size() const { return int(workers_.size()) + 1; }
  // Runs fn(begin, end, chunk_index) over `chunks` contiguous chunks of [0, n) (default: one per
  // thread) and waits. Chunks smaller than min_chunk are merged; nested calls run serially.
  void parallel_for(int64_t n, const std::function<void(int64_t, int64_t, int)>& fn, int64_t min_chunk = 1);
  // Runs fn(t) for t in [0, size()) on every thread and waits.
  void run_on_all(const std::function<void(int)>& fn);

  // Threads to use when the user did not say: the CPUs this process may run on.
  static int default_threads();

 private:
  void worker_loop(int index);
  std::vector<std::thread> workers_;
  std::mutex mu_;
  std::condition_variable start_cv_, done_cv_;
  const std::function<void(int)>* job_ = nullptr;
  uint64_t generation_ = 0;
  int pending_ = 0;
  bool stop_ = false;
  bool busy_ = false;
};

}  // namespace ncf
