"""The benchmark's code compiles, its harness starts, its apps import, and its report
judges every target with pass or MISS.

`make bench` needs PostgreSQL and minutes, so nothing else runs it; these checks keep
it from rotting unseen between runs. The harness and the apps below need only the
baked service's dependencies, which the template's virtualenv has. The report is fed
made-up figures: what is checked is its verdicts' logic and that no target is left
out, never a speed.
"""

import os
import subprocess
import sys
from pathlib import Path

from benchmarks.harness.config import DATABASE_URL_VARIABLE
from benchmarks.harness.contestants import BASELINE, SERVICE, contestants
from benchmarks.harness.database import SCALE_USERS
from benchmarks.harness.load import Sample
from benchmarks.harness.memory import MemorySample
from benchmarks.harness.profile import summarize
from benchmarks.harness.report import LAYER_TARGETS, SERVICE_TARGETS, Results, Scale, render
from tests.variants import TEMPLATE

BENCHMARKS = TEMPLATE / "benchmarks"
# The apps that import without a bake or fastapi-async-sqlalchemy.
APPS = ["items", "baseline", "proxy_app", "raw_asyncpg"]


def _run(*arguments: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(BENCHMARKS), str(BENCHMARKS / "apps")]),
        # Read at import; nothing connects.
        DATABASE_URL_VARIABLE: "postgresql+asyncpg://nobody@127.0.0.1:1/none",
    }
    return subprocess.run(
        [sys.executable, *arguments],
        cwd=BENCHMARKS,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_every_benchmark_module_compiles() -> None:
    modules = [*BENCHMARKS.glob("apps/*.py"), *BENCHMARKS.glob("harness/*.py")]
    assert modules, f"no modules under {BENCHMARKS}/apps or harness"
    for path in [BENCHMARKS / "run.py", *modules]:
        compile(path.read_text(), str(path), "exec")


def test_the_harness_imports_and_lists_its_options() -> None:
    completed = _run("-m", "harness", "--help")
    assert completed.returncode == 0, completed.stderr
    assert "--quick" in completed.stdout


def test_the_apps_import() -> None:
    completed = _run("-c", "; ".join(f"import {app}" for app in APPS))
    assert completed.returncode == 0, completed.stderr


def _sample(rps: float) -> Sample:
    return Sample(
        requests=round(rps * 5), seconds=5.0, p50_ms=1.0, p99_ms=2.0, cpu_seconds=1.0, errors=0
    )


def _report(failures: dict[str, str], *, ratio: float) -> str:
    """The report of one made-up round: every contestant at `ratio` times the baseline."""
    everyone = contestants(Path("project"), "postgresql://nobody@127.0.0.1:1/none", rows=10)
    served = {
        c.key: {e: _sample(1000 if c.key == BASELINE else 1000 * ratio) for e in c.routes}
        for c in everyone
    }
    for failed in failures:
        key, _, endpoint = failed.partition(" ")
        served[key].pop(endpoint, None)
    memory: dict[str, MemorySample | str] = {
        f"{c.key} {form}": MemorySample(rows=10, seconds=1e-5, rss_before_mb=80, peak_mb=82)
        for c in everyone
        for form in c.exports
    }
    scale = Scale({n: {"list": _sample(500), "read": _sample(700)} for n in SCALE_USERS}, {})
    return render(Results(everyone, [served], failures, memory, ["A made-up run."], scale))


def test_the_report_judges_every_target_with_pass_or_miss() -> None:
    report = _report({}, ratio=1.2)

    verdicts = [line for line in report.splitlines() if line.startswith("- [")]
    # Every req/s target, the scale target, two per export format, the layer's export.
    assert len(verdicts) == len(SERVICE_TARGETS) + len(LAYER_TARGETS) + 1 + 4 + 1
    assert all(line.startswith(("- [pass] ", "- [MISS] ")) for line in verdicts)
    assert "This run's noise floor" in report
    service = [line for line in verdicts if line.startswith("- [") and "baked service" in line]
    # 1.2x the baseline reaches every ratio but the fast read's 1.5x.
    assert [line.startswith("- [MISS]") for line in service[:5]] == [
        False, False, True, False, False,
    ]  # fmt: skip
    assert "| 1,000,000 | 500 |" in report  # the scale table


def test_a_route_that_failed_its_check_is_a_miss_that_says_why() -> None:
    report = _report({f"{SERVICE} fast-read": "GET /profiles/1 answered 404"}, ratio=2.0)

    [line] = [line for line in report.splitlines() if "fast path" in line and "- [" in line]
    assert line.startswith("- [MISS]")
    assert "not measured (GET /profiles/1 answered 404)" in line


def test_a_profile_summary_ranks_where_the_samples_ended(tmp_path: Path) -> None:
    raw = tmp_path / "stacks.txt"
    raw.write_text(
        "main (uvicorn/main.py);handle (app/observability.py);format (logging/__init__.py) 3\n"
        "main (uvicorn/main.py);handle (app/observability.py) 1\n"
    )

    profile = summarize(raw)

    assert profile.samples == 4
    assert profile.self_by_area == [("logging", 0.75), ("app/observability.py", 0.25)]
    assert ("handle (app/observability.py)", 1.0) not in profile.inclusive  # above 90%
