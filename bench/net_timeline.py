"""The launch timeline of bench/net.sh: from `perf script` output of the sched fork, exec and
exit tracepoints, follows each agentbox launch's process tree and prints the medians of its
steps, filtered against plain.

Arguments: AGENTBOX SCHED_TXT.
"""
import re, statistics, sys

agentbox = sys.argv[1]
ev = []
for line in open(sys.argv[2]):
    m = re.match(r"\s*(.+?)\s+(\d+)\s+\[\d+\]\s+([\d.]+): sched:(\w+): (.*)", line)
    if m:
        comm, pid, t, kind, rest = m.groups()
        ev.append((float(t) * 1e3, kind, int(pid), comm, rest))
INNER = "/run/agentbox/agentbox"  # agentbox inside: the relay (filtered only), the shim
launches = []
for i, (t, kind, pid, comm, rest) in enumerate(ev):
    if kind != "sched_process_exec" or f"filename={agentbox} " not in rest + " ":
        continue
    tree, marks, inner = {pid}, {"start": t}, 0
    for t2, k2, p2, c2, r2 in ev[i + 1:]:
        if p2 not in tree:
            continue
        if k2 == "sched_process_fork":
            tree.add(int(re.search(r"child_pid=(\d+)", r2).group(1)))
            if c2 == "bwrap":
                marks.setdefault("bwrap forks", t2)
        elif k2 == "sched_process_exec":
            name = re.search(r"filename=(\S+)", r2).group(1)
            inner += name == INNER
            marks.setdefault(name, t2)
        elif k2 == "sched_process_exit" and c2 == "true":
            marks["true exits"] = t2
        elif k2 == "sched_process_exit" and p2 == pid and "group_dead=true" in r2:
            marks["end"] = t2
            break
    launches.append((inner, marks))
# A filtered launch execs agentbox inside once more than a plain one (the relay before the shim).
most = max((n for n, _ in launches), default=0)
runs = {"filtered": [m for n, m in launches if n == most],
        "plain": [m for n, m in launches if n < most]}
steps = [
    ("agentbox, until it starts bwrap", "start", "/usr/bin/bwrap"),
    ("bwrap, until its namespaced child", "/usr/bin/bwrap", "bwrap forks"),
    ("bwrap's setup, until the command", "bwrap forks", "/usr/bin/true"),
    ("  of which bwrap, until agentbox inside", "bwrap forks", INNER),
    ("  of which agentbox inside, to the command", INNER, "/usr/bin/true"),
    ("the command (true)", "/usr/bin/true", "true exits"),
    ("from its exit until agentbox's", "true exits", "end"),
    ("total", "start", "end"),
]
print(f"    {'step (medians, ms)':<42} {'--net filtered':>14} {'plain':>8} {'added':>8}")
for label, a, b in steps:
    med = {}
    for kind, ms in runs.items():
        xs = [m[b] - m[a] for m in ms if a in m and b in m]
        med[kind] = statistics.median(xs) if xs else None
    f, p = med["filtered"], med["plain"]
    fmt = lambda x: f"{x:8.2f}" if x is not None else f"{'':>8}"
    added = fmt(f - p) if f is not None and p is not None else fmt(None)
    print(f"    {label:<42} {fmt(f):>14} {fmt(p)} {added}")
print(f"    ({len(runs['filtered'])} filtered and {len(runs['plain'])} plain launches found)")
