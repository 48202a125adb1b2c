"""`--profile`: py-spy samples a contestant's server while its endpoints are measured.

py-spy attaches to the running uvicorn process (root, or `kernel.yama.ptrace_scope` at
0), samples it without pausing it (`--nonblocking`) and writes collapsed stacks, one
line per distinct stack with its sample count, which flamegraph.pl and speedscope read.
It leaves idle samples out, so a recording that spans the other contestants' slices
holds only the seconds this server was busy. `summarize` turns one recording into the
report's tables: where the samples ended (self time by package) and the functions that
held the most samples (inclusive).
"""

import contextlib
import os
import signal
import subprocess
import sys
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

__all__ = ["Profile", "py_spy", "recording", "render_profile", "summarize"]

RATE = 250  # samples per second; py-spy's default of 100 gives too few for one endpoint
TOP = 15


def py_spy() -> Path:
    """The py-spy next to the running Python (the benchmark's venv), installed on first use:
    only `--profile` needs it."""
    found = Path(sys.executable).parent / "py-spy"
    if not found.exists():
        subprocess.run(
            [sys.executable, "-m", "pip", "install", "--quiet", "--disable-pip-version-check",
             "py-spy"],
            stdout=subprocess.DEVNULL,
            check=True,
        )  # fmt: skip
    return found


@contextlib.contextmanager
def recording(pid: int, output: Path, *, cpu: int) -> Iterator[None]:
    """Sample process `pid` while the block runs; py-spy runs on core `cpu`."""
    executable = py_spy()
    command = [
        "taskset", "-c", str(cpu), str(executable), "record", "--nonblocking", "--nolineno",
        "--format", "raw", "--rate", str(RATE), "--output", str(output), "--pid", str(pid),
    ]  # fmt: skip
    process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        yield
    finally:
        # py-spy writes its output when interrupted, as on Ctrl-C.
        os.kill(process.pid, signal.SIGINT)
        try:
            _, errors = process.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            _, errors = process.communicate()
        if not output.exists():
            raise RuntimeError(f"py-spy wrote no profile: {errors.decode(errors='replace')}")


@dataclass(frozen=True)
class Profile:
    samples: int
    # (package or app module, share of samples whose innermost frame is in it)
    self_by_area: list[tuple[str, float]]
    # (function, share of samples with it anywhere on the stack), below the roots
    inclusive: list[tuple[str, float]]
    # (function, share of samples in which it is the innermost frame)
    self_by_function: list[tuple[str, float]]


def _area(frame: str) -> str:
    """`function (path)` -> where it belongs: the app's module, or the package.

    py-spy shortens each path to where it starts below sys.path: `sqlalchemy/orm/session.py`,
    `app/observability.py`, `uuid.py`.
    """
    path = frame[frame.rfind("(") + 1 : -1]
    if path.startswith("app/"):
        return path
    return path.split("/", 1)[0].removesuffix(".py")


def _function(frame: str) -> str:
    """`function (path)` with only the last two parts of the path."""
    name, _, path = frame.partition(" (")
    return f"{name} ({'/'.join(path.rstrip(')').split('/')[-2:])})"


def summarize(path: Path) -> Profile:
    """The tables of one py-spy recording in collapsed-stack form."""
    by_area: Counter[str] = Counter()
    by_leaf: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in path.read_text(errors="replace").splitlines():
        stack, _, count = line.rpartition(" ")
        if not stack or not count.isdigit():
            continue
        samples = int(count)
        frames = stack.split(";")
        # py-spy puts the thread first ("process 1234:..." or "thread (0x...)") in some modes.
        frames = [f for f in frames if " (" in f]
        if not frames:
            continue
        total += samples
        by_area[_area(frames[-1])] += samples
        by_leaf[_function(frames[-1])] += samples
        for function in {_function(f) for f in frames}:
            inclusive[function] += samples
    if not total:
        return Profile(0, [], [], [])

    def shares(counter: Counter[str], limit: int, below: float = 1.01) -> list[tuple[str, float]]:
        ranked = [(key, n / total) for key, n in counter.most_common()]
        return [(key, share) for key, share in ranked if share < below][:limit]

    # The event loop, the server and the coroutine chain down to the route sit under
    # nearly every sample; they say nothing about where the time goes.
    return Profile(
        total, shares(by_area, TOP), shares(inclusive, TOP, below=0.9), shares(by_leaf, TOP)
    )


def render_profile(title: str, profile: Profile, raw: Path) -> list[str]:
    """One recording as Markdown: its three tables side by side, as lists."""
    if not profile.samples:
        return [f"### {title}", "", f"py-spy recorded no samples (`{raw.name}`).", ""]

    def listed(rows: list[tuple[str, float]]) -> list[str]:
        return [f"| {share:5.1%} | `{key}` |" for key, share in rows]

    return [
        f"### {title}",
        "",
        f"{profile.samples:,} samples at {RATE} Hz; collapsed stacks in `{raw.name}`.",
        "",
        "| self | where the innermost frame was |",
        "|--:|---|",
        *listed(profile.self_by_area),
        "",
        "| self | function |",
        "|--:|---|",
        *listed(profile.self_by_function),
        "",
        "| inclusive | function (below 90%, the loop and the coroutine chain) |",
        "|--:|---|",
        *listed(profile.inclusive),
        "",
    ]
