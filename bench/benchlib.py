"""Shared by the bench/*.py timing harnesses (Python puts a script's own folder first on
sys.path, so they import it as they are)."""
import fcntl
import os
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


# /dev/null far above the fds the children inherit, so a dup2 in place() never lands on it.
_NULL = fcntl.fcntl(os.open("/dev/null", os.O_RDONLY), fcntl.F_DUPFD, 100)


def place(fd, src):
    """Moves src to fd."""
    if src != fd:
        os.dup2(src, fd)
        os.close(src)


def preload(data):
    """What agentbox does before spawning bwrap, for data {fd: bytes}: /dev/null for a mask, a
    pre-filled pipe for bytes (a seccomp program). Called before the clock starts, since bwrap
    consumes them."""
    for fd, bytes_ in data.items():
        if not bytes_:
            os.dup2(_NULL, fd)
            continue
        assert len(bytes_) <= 65536, "must fit in a pipe"
        r, w = os.pipe()
        os.write(w, bytes_)
        os.close(w)
        place(fd, r)
