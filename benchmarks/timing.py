"""Wall-clock timer shared by every benchmark: warm-up, then the median of repeated runs.

Framework-free: the caller passes `sync` (torch.cuda.synchronize on a GPU, a no-op on CPU;
for TF the timed function itself returns only once its results are materialised).
"""
import statistics
import time


class Budget:
    """How long to time one measurement.

    warmup:    calls before timing (the first call of a compiled function is excluded here).
    min_reps:  at least this many timed calls...
    min_time:  ...and keep going until this many seconds have been spent timing,
    max_reps:  but never more than this many calls.
    """

    def __init__(self, warmup=2, min_reps=5, max_reps=50, min_time=1.0):
        self.warmup, self.min_reps, self.max_reps, self.min_time = warmup, min_reps, max_reps, min_time

    def as_dict(self):
        return dict(warmup=self.warmup, min_reps=self.min_reps, max_reps=self.max_reps, min_time_s=self.min_time)


FULL = Budget(warmup=2, min_reps=5, max_reps=50, min_time=1.0)
QUICK = Budget(warmup=1, min_reps=3, max_reps=10, min_time=0.05)


def measure(fn, budget, sync=None):
    """Time `fn()`; returns {'median_ms', 'q1_ms', 'q3_ms', 'reps'}.

    Each call is timed on its own (time.perf_counter around fn + sync), so one slow call
    (another process, a page fault) moves the median very little.
    """
    sync = sync or (lambda: None)
    for _ in range(budget.warmup):
        fn()
    sync()
    times = []
    start = time.perf_counter()
    while len(times) < budget.max_reps and (len(times) < budget.min_reps or time.perf_counter() - start < budget.min_time):
        t0 = time.perf_counter()
        fn()
        sync()
        times.append(time.perf_counter() - t0)
    times.sort()
    q = statistics.quantiles(times, n=4) if len(times) >= 2 else [times[0]] * 3
    return dict(median_ms=statistics.median(times) * 1e3, q1_ms=q[0] * 1e3, q3_ms=q[2] * 1e3, reps=len(times))
