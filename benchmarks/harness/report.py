"""The results as Markdown: per-round ratios to the baseline, their medians, and the targets."""

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from statistics import median

from .contestants import BASELINE, BASELINE_AGAIN, ENDPOINTS, PEER, SESSION_LAYER, Contestant
from .load import Sample
from .memory import MemorySample

__all__ = ["Results", "Round", "render"]

# One round: contestant key -> endpoint key -> sample.
Round = dict[str, dict[str, Sample]]

# The req/s targets for the session layer, as ratios to the baseline.
RPS_TARGETS = {"no-db": 0.97, "read": 1.08, "list": 1.05, "insert": 1.05}
DB_ENDPOINTS = ("read", "list", "insert")
MEMORY_TARGET_MB = 50


@dataclass
class Results:
    contestants: list[Contestant]
    rounds: list[Round]
    # Contestant key -> why it could not be measured.
    failures: dict[str, str]
    memory: dict[str, MemorySample | str]
    header: list[str]


def _ratios(
    results: Results, key: str, endpoint: str, figure: Callable[[Sample], float], versus: str
) -> list[float]:
    """`figure` of contestant `key` over that of `versus`, for each round that measured both."""
    ratios = []
    for measured in results.rounds:
        mine = measured.get(key, {}).get(endpoint)
        theirs = measured.get(versus, {}).get(endpoint)
        if mine is not None and theirs is not None and figure(theirs) > 0:
            ratios.append(figure(mine) / figure(theirs))
    return ratios


def _absolute(results: Results, key: str, endpoint: str) -> list[Sample]:
    return [m[key][endpoint] for m in results.rounds if endpoint in m.get(key, {})]


def _x(values: Iterable[float]) -> str:
    values = list(values)
    return f"{median(values):.2f}x" if values else "-"


def _rps(sample: Sample) -> float:
    return sample.rps


def _p50(sample: Sample) -> float:
    return sample.p50_ms


def _p99(sample: Sample) -> float:
    return sample.p99_ms


def _cpu(sample: Sample) -> float:
    return sample.cpu_us_per_request


def _table(results: Results) -> list[str]:
    lines = [
        "| endpoint | contestant | req/s | p50 | p99 | CPU/req | req/s per round "
        "| req/s | p50 ms | p99 ms | CPU µs/req | errors |",
        "|---|---|--:|--:|--:|--:|---|--:|--:|--:|--:|--:|",
    ]
    for endpoint, title in ENDPOINTS.items():
        for contestant in results.contestants:
            cells = [title, contestant.title]
            samples = _absolute(results, contestant.key, endpoint)
            if contestant.key in results.failures:
                cells.append("did not run: " + results.failures[contestant.key].splitlines()[0])
            elif endpoint not in contestant.routes:
                cells.append("missing: the baked service has no such endpoint yet")
            elif not samples:
                cells.append("not measured")
            else:
                per_round = _ratios(results, contestant.key, endpoint, _rps, BASELINE)
                cells += [
                    _x(per_round),
                    _x(_ratios(results, contestant.key, endpoint, _p50, BASELINE)),
                    _x(_ratios(results, contestant.key, endpoint, _p99, BASELINE)),
                    _x(_ratios(results, contestant.key, endpoint, _cpu, BASELINE)),
                    " ".join(f"{ratio:.2f}" for ratio in per_round),
                    f"{median(s.rps for s in samples):,.0f}",
                    f"{median(s.p50_ms for s in samples):.1f}",
                    f"{median(s.p99_ms for s in samples):.1f}",
                    f"{median(s.cpu_us_per_request for s in samples):,.0f}",
                    str(sum(s.errors for s in samples)),
                ]
            cells += [""] * (12 - len(cells))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _noise(results: Results) -> list[str]:
    """How far apart two servers of the same code came out, from the second baseline server."""
    per_endpoint = {
        title: _ratios(results, BASELINE_AGAIN, endpoint, _rps, BASELINE)
        for endpoint, title in ENDPOINTS.items()
    }
    every = [ratio for ratios in per_endpoint.values() for ratio in ratios]
    if not every:
        return []
    spread = "; ".join(
        f"{title} {' '.join(f'{r:.2f}' for r in ratios)}"
        for title, ratios in per_endpoint.items()
        if ratios
    )
    return [
        f"Noise floor: two servers of the baseline's code, measured in the same slices, "
        f"differed by up to {max(abs(r - 1) for r in every):.0%} in req/s within a round "
        f"({spread}). A per-round difference smaller than that is within this machine's noise.",
        "",
    ]


def _check(passed: bool | None, text: str) -> str:
    mark = {True: "pass", False: "MISS", None: "n/a"}[passed]
    return f"- [{mark}] {text}"


def _targets(results: Results) -> list[str]:
    """The issue's targets for the app/db layer, each with the figure it was judged on."""
    lines = []
    for endpoint, target in RPS_TARGETS.items():
        ratios = _ratios(results, SESSION_LAYER, endpoint, _rps, BASELINE)
        passed = median(ratios) >= target if ratios else None
        lines.append(
            _check(passed, f"{ENDPOINTS[endpoint]}: req/s ≥ {target:.2f}x baseline ({_x(ratios)})")
        )
    for endpoint in DB_ENDPOINTS:
        versus_peer = _ratios(results, SESSION_LAYER, endpoint, _rps, PEER)
        wins = sum(ratio >= 1 for ratio in versus_peer)
        lines.append(
            _check(
                wins == len(versus_peer) if versus_peer else None,
                f"{ENDPOINTS[endpoint]}: req/s never below fastapi-async-sqlalchemy "
                f"(at or above it in {wins} of {len(versus_peer)} rounds, "
                f"{' '.join(f'{r:.2f}' for r in versus_peer)})",
            )
        )
        cpu_base = _ratios(results, SESSION_LAYER, endpoint, _cpu, BASELINE)
        cpu_peer = _ratios(results, SESSION_LAYER, endpoint, _cpu, PEER)
        both = cpu_base and cpu_peer
        lines.append(
            _check(
                median(cpu_base) < 1 and median(cpu_peer) < 1 if both else None,
                f"{ENDPOINTS[endpoint]}: CPU per request below the baseline ({_x(cpu_base)}) "
                f"and fastapi-async-sqlalchemy ({_x(cpu_peer)})",
            )
        )
        p99_peer = _ratios(results, SESSION_LAYER, endpoint, _p99, PEER)
        lines.append(
            _check(
                median(p99_peer) <= 1 if p99_peer else None,
                f"{ENDPOINTS[endpoint]}: p99 no worse than fastapi-async-sqlalchemy "
                f"({_x(p99_peer)})",
            )
        )
    return lines


def _memory(results: Results) -> list[str]:
    lines = [
        "| contestant | rows | seconds | RSS before MB | peak MB | growth MB | target |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for contestant in results.contestants:
        outcome = results.memory.get(contestant.key)
        if outcome is None:
            continue
        if isinstance(outcome, str):
            lines.append(f"| {contestant.title} | {outcome} |||||")
            continue
        verdict = "pass" if outcome.growth_mb < MEMORY_TARGET_MB else "MISS"
        lines.append(
            f"| {contestant.title} | {outcome.rows:,} | {outcome.seconds:.1f} "
            f"| {outcome.rss_before_mb:.1f} | {outcome.peak_mb:.1f} | {outcome.growth_mb:.1f} "
            f"| {verdict} (< {MEMORY_TARGET_MB} MB) |"
        )
    return lines


def render(results: Results) -> str:
    """The whole report as Markdown."""
    return "\n".join(
        [
            "# Session layer benchmark",
            "",
            *results.header,
            "",
            "Ratios are to the Depends baseline measured in the same round, then the median "
            "over rounds; req/s above 1.00x is better, latency and CPU below 1.00x are better. "
            "The absolute columns are medians on this machine, for reference only.",
            "",
            *_table(results),
            "",
            *_noise(results),
            "## Targets for the app/db layer",
            "",
            *_targets(results),
            "",
            "## Streaming export: resident memory",
            "",
            *_memory(results),
            "",
        ]
    )
