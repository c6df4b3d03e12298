"""Shared by the bench/*.sh timing harnesses (they put bench/ on PYTHONPATH)."""
import statistics


def q(xs, p):
    """The p-quantile of xs, interpolated linearly between the two nearest ranks."""
    xs = sorted(xs)
    pos = p * (len(xs) - 1)
    lo = int(pos)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (pos - lo)


def table(samples, names, width, unit="(ms, wall, spawn to exit)"):
    """Prints min, median, p90 and mean of each named series, one row per name."""
    print(f"  {unit:<{width}} {'min':>7} {'median':>7} {'p90':>7} {'mean':>7}")
    for n in names:
        xs = samples[n]
        print(f"  {n:<{width}} {min(xs):7.2f} {q(xs, .5):7.2f} {q(xs, .9):7.2f} "
              f"{statistics.fmean(xs):7.2f}")
