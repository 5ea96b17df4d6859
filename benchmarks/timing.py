"""Wall-clock timer shared by every benchmark: warm-up, then the median of repeated runs.

Framework-free: the caller passes `sync` (torch.cuda.synchronize on a GPU, a no-op on CPU;
for TF the timed function itself returns only once its results are materialised).
"""
import statistics
import time


class Budget:
    """How long to time one measurement.

    warmup:      calls before timing (the first call of a compiled function is excluded here)...
    warmup_time: ...or fewer once this many seconds have passed (never fewer than 2; None: no cap).
    min_reps:    at least this many timed calls...
    min_time:    ...and keep going until this many seconds have been spent timing,
    max_reps:    but never more than this many calls.
    So a function of microseconds gets max_reps calls and one of a second gets min_reps.
    """

    def __init__(self, warmup=2, min_reps=5, max_reps=50, min_time=1.0, warmup_time=None):
        self.warmup, self.min_reps, self.max_reps, self.min_time = warmup, min_reps, max_reps, min_time
        self.warmup_time = warmup_time

    def as_dict(self):
        return dict(warmup=self.warmup, warmup_time_s=self.warmup_time, min_reps=self.min_reps,
                    max_reps=self.max_reps, min_time_s=self.min_time)


# 50 calls after 2 warm-up calls (the budget until 2026-12) left a quarter of the medians of
# microsecond rows with an interquartile range over 25% of the median; 1000 calls do not cost
# more than the 1 s that slower rows take anyway.
FULL = Budget(warmup=10, warmup_time=0.5, min_reps=5, max_reps=1000, min_time=1.0)
QUICK = Budget(warmup=1, min_reps=3, max_reps=10, min_time=0.05)


def measure(fn, budget, sync=None):
    """Time `fn()`; returns {'median_ms', 'q1_ms', 'q3_ms', 'reps'}.

    Each call is timed on its own (time.perf_counter around fn + sync), so one slow call
    (another process, a page fault) moves the median very little.
    """
    sync = sync or (lambda: None)
    start = time.perf_counter()
    for i in range(budget.warmup):
        if i >= 2 and budget.warmup_time is not None and time.perf_counter() - start > budget.warmup_time:
            break
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
