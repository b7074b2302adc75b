"""Peak memory of the test suite: the pytest process and everything it starts, together.

Run:  python benchmarks/bench_suite_memory.py [PYTEST ARGS...]

Runs ``python -m pytest -q`` (plus any arguments) from the repository root and samples,
every 0.5 s, the resident memory of the pytest process and all its children (notebook
kernels, command-line subprocesses) summed; prints that peak, the processes at that
moment, and the tests after which the pytest process itself grew most (a small plugin
records its resident memory after each test). Issue 13's bar: under 4 GB on the
project machine (2 cores). Needs psutil (installed with the test extra, through ipykernel).
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]

PLUGIN = textwrap.dedent('''
    import os

    import psutil
    _proc, _rows, _last = psutil.Process(os.getpid()), [], [0.0]

    def pytest_runtest_logfinish(nodeid, location):
        rss = _proc.memory_info().rss / 2**20
        _rows.append((rss - _last[0], rss, nodeid))
        _last[0] = rss

    def pytest_sessionfinish(session, exitstatus):
        with open(os.environ["BMDQCT_MEMTRACE"], "w") as f:
            for delta, rss, nodeid in _rows:
                f.write(f"{delta:.0f}\\t{rss:.0f}\\t{nodeid}\\n")
''')


def main(argv: list[str]) -> int:
    with tempfile.TemporaryDirectory() as tmp:
        (Path(tmp) / "bmdqct_memtrace.py").write_text(PLUGIN)
        trace = Path(tmp) / "trace.tsv"
        env = {**os.environ, "PYTHONPATH": tmp, "BMDQCT_MEMTRACE": str(trace)}
        started = time.perf_counter()
        run = subprocess.Popen([sys.executable, "-m", "pytest", "-q", "-p", "bmdqct_memtrace", *argv],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        root = psutil.Process(run.pid)
        peak, at_peak = 0.0, []
        while run.poll() is None:
            try:
                procs = [root, *root.children(recursive=True)]
                sizes = [(p.memory_info().rss / 2**20, " ".join(p.cmdline()[1:4])) for p in procs]
            except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                sizes = []
            total = sum(s for s, _ in sizes)
            if total > peak:
                peak, at_peak = total, sizes
            time.sleep(0.5)
        tail = run.stdout.read().strip().splitlines()[-1:] if run.stdout else []
        print(f"pytest: {' '.join(tail)} ({time.perf_counter() - started:.0f} s, exit {run.returncode})")
        print(f"peak resident memory of pytest and its children together: {peak / 1024:.2f} GB")
        for size, command in sorted(at_peak, reverse=True):
            print(f"  {size / 1024:5.2f} GB  {command}")
        if trace.is_file():
            rows = [line.split("\t") for line in trace.read_text().splitlines()]
            print(f"pytest process alone, highest after a test: {max(float(r[1]) for r in rows) / 1024:.2f} GB; "
                  "largest growth after one test:")
            for delta, rss, nodeid in sorted(rows, key=lambda r: -float(r[0]))[:8]:
                print(f"  +{float(delta) / 1024:5.2f} GB (to {float(rss) / 1024:.2f})  {nodeid}")
        return run.returncode


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
