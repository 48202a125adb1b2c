"""A py-spy profile of one contestant under load on one endpoint, for when a target is missed."""

import subprocess
import sys
from collections import Counter
from pathlib import Path

from .contestants import Contestant
from .load import measure
from .server import request, running

__all__ = ["profile"]

TOP = 25
# The code the benchmark compares; the server and the framework around it are
# the same for every contestant.
SESSION_CODE = ("app/db/", "fastapi_async_sqlalchemy/", "sqlalchemy/", "asyncpg/", "apps/")


def _summary(raw: Path) -> list[str]:
    """From py-spy's collapsed stacks: the frames with the most self time, then the
    session code's frames in the most samples (inclusive)."""
    own: Counter[str] = Counter()
    inclusive: Counter[str] = Counter()
    total = 0
    for line in raw.read_text().splitlines():
        stack, _, text = line.rpartition(" ")
        count = int(text)
        frames = stack.split(";")
        total += count
        own[frames[-1]] += count
        for frame in set(frames):
            if any(part in frame for part in SESSION_CODE):
                inclusive[frame] += count
    lines = [f"{total} samples; self time:"]
    lines += [f"{count / total:6.1%}  {frame}" for frame, count in own.most_common(TOP)]
    lines.append("session code, inclusive:")
    lines += [f"{count / total:6.1%}  {frame}" for frame, count in inclusive.most_common(TOP)]
    return lines


def profile(
    contestant: Contestant,
    endpoint: str,
    *,
    seconds: int,
    cores: tuple[int, int],
    database_url: str,
    output: Path,
) -> None:
    """Load `endpoint` for `seconds` while py-spy samples the server; write its collapsed
    stacks under `output` (flamegraph.pl and speedscope read them) and print the busiest frames."""
    server_cpu, wrk_cpu = cores
    route = contestant.routes[endpoint]
    output.mkdir(parents=True, exist_ok=True)
    raw = output / f"{contestant.key}-{endpoint}.txt"
    spy = Path(sys.executable).parent / "py-spy"
    with running(contestant, cpu=server_cpu, database_url=database_url) as server:
        request(server.port, route)
        # Warm up first, so the profile holds the steady state only.
        measure(server, route, warmup=1, seconds=1, cpu=wrk_cpu)
        recorder = subprocess.Popen(
            [spy, "record", "--pid", str(server.pid), "--duration", str(seconds),
             "--nonblocking", "--format", "raw", "--output", str(raw)],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        sample = measure(server, route, warmup=1, seconds=seconds, cpu=wrk_cpu)
        recorder.wait(timeout=60)
    print(f"{contestant.title}, {endpoint}: {sample.rps:,.0f} req/s while profiled")
    print(f"collapsed stacks: {raw}")
    print("\n".join(_summary(raw)))
