#!/usr/bin/python3
"""A stand-in bwrap that records what it is handed (bench_record in bench/common.sh).

bench_record copies this file to WORK/rec/bwrap and passes that path to `agentbox run --bwrap`.
agentbox starts bwrap with an empty environment, so the recorder finds its instructions beside
itself: `real-bwrap` holds the path of the real bwrap (for `--version`), and `out` holds two
lines, the prefix of the files to write and the data fds to read. It writes PREFIX.argv (the
argv, NUL-terminated), PREFIX.open (the fds >= 3 that are open) and PREFIX.fdN (the bytes on
data fd N).
"""
import os
import sys

here = os.path.dirname(os.path.abspath(__file__))
if sys.argv[1:] == ["--version"]:
    bwrap = open(os.path.join(here, "real-bwrap")).read().strip()
    os.execv(bwrap, [bwrap, "--version"])
out, fds = open(os.path.join(here, "out")).read().split("\n")[:2]
open_fds = []
for n in os.listdir("/proc/self/fd"):
    try:
        if int(n) >= 3:
            os.fstat(int(n))
            open_fds.append(int(n))
    except OSError:
        pass  # the fd listdir itself used
open(out + ".open", "w").write(" ".join(map(str, sorted(open_fds))))
open(out + ".argv", "wb").write(b"".join(os.fsencode(a) + b"\0" for a in sys.argv[1:]))
for fd in map(int, fds.split()):
    with open(fd, "rb", closefd=False) as f, open(f"{out}.fd{fd}", "wb") as dst:
        dst.write(f.read())
