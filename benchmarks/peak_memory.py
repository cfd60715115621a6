"""The benchmarks' one memory meter: peak memory while a block runs, and what it was before it began.

On CUDA it reads the allocator's counters; on CPU it polls the process's resident set every 2 ms (so a
short spike between two polls can be missed). `base` is what the process held before (the loaded model and
the libraries), `peak` the highest seen, `added` the difference: what the block itself needed.
"""

from __future__ import annotations

import os
import threading
import time

# For a worker process whose CPU memory is compared: glibc then serves every block of 64 KiB or more with its
# own mapping and unmaps it when freed, so the resident set follows the live tensors, not what malloc keeps for
# reuse (which depends on what ran before and would make the first of two measured runs look cheaper).
MEASURED_WORKER_ENV = {"MALLOC_MMAP_THRESHOLD_": "65536"}


class PeakMemory:
    def __enter__(self):
        import torch

        self.cuda = torch.cuda.is_available()
        self.peak = 0
        if self.cuda:
            torch.cuda.reset_peak_memory_stats()
            self.base = torch.cuda.memory_allocated()
        else:
            self.base = self._rss()
            self.running = True
            self.thread = threading.Thread(target=self._poll, daemon=True)
            self.thread.start()
        return self

    @property
    def added(self) -> int:
        return self.peak - self.base

    @staticmethod
    def _rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    def _poll(self):
        while self.running:
            self.peak = max(self.peak, self._rss())
            time.sleep(0.002)

    def __exit__(self, *exc):
        import torch

        if self.cuda:
            self.peak = torch.cuda.max_memory_allocated()
        else:
            self.running = False
            self.thread.join()


def measure(run, repeats: int) -> dict:
    """`run()` once untimed (a warm-up: kernels chosen, memory-mapped weights read in), then `repeats` times:
    the best time in seconds, and the highest `peak` and `added` memory of the timed runs, in bytes."""
    import torch

    times, peak, added = [], 0, 0
    for attempt in range(repeats + 1):
        with torch.no_grad(), PeakMemory() as memory:
            start = time.perf_counter()
            run()
            if torch.cuda.is_available():
                torch.cuda.synchronize()
            seconds = time.perf_counter() - start
        if attempt:
            times.append(seconds)
            peak, added = max(peak, memory.peak), max(added, memory.added)
    return {"seconds": min(times), "peak": peak, "extra": added}
