"""The results as Markdown: per-round ratios to the baseline, their medians, and the targets."""

from dataclasses import dataclass
from statistics import median
from typing import NamedTuple

from .contestants import BASELINE, BASELINE_AGAIN, ENDPOINTS, PEER, SESSION_LAYER, Contestant
from .load import Sample
from .memory import MemorySample

__all__ = ["TARGETS", "Results", "Round", "Target", "render"]

# One round: contestant key -> endpoint key -> sample.
Round = dict[str, dict[str, Sample]]


class Figure(NamedTuple):
    name: str
    # The column of its absolute median, and that median's format.
    unit: str
    form: str
    higher_is_better: bool


# The Sample attributes the table shows, in its order.
FIGURES = {
    "rps": Figure("req/s", "req/s", "{:,.0f}", higher_is_better=True),
    "p50_ms": Figure("p50", "p50 ms", "{:.1f}", higher_is_better=False),
    "p99_ms": Figure("p99", "p99 ms", "{:.1f}", higher_is_better=False),
    "cpu_us_per_request": Figure("CPU/req", "CPU µs/req", "{:,.0f}", higher_is_better=False),
}
MEMORY_TARGET_MB = 50


@dataclass(frozen=True)
class Target:
    """`figure` of `contestant` over that of `versus` on `endpoint` reaches `ratio` (a figure
    where higher is better) or stays at or under it: as the median over the rounds, or in
    `every_round`. docs/performance.md says why each target is what it is."""

    endpoint: str
    figure: str
    ratio: float
    versus: str = BASELINE
    contestant: str = SESSION_LAYER
    every_round: bool = False


TARGETS = [
    Target("no-db", "rps", 0.97),
    Target("read", "rps", 1.08),
    Target("list", "rps", 1.05),
    Target("insert", "rps", 1.05),
    *(
        target
        for endpoint in ("read", "list", "insert")
        for target in (
            Target(endpoint, "rps", 1.0, PEER, every_round=True),
            Target(endpoint, "cpu_us_per_request", 1.0),
            Target(endpoint, "cpu_us_per_request", 1.0, PEER),
            Target(endpoint, "p99_ms", 1.0, PEER),
        )
    ),
]


@dataclass
class Results:
    contestants: list[Contestant]
    rounds: list[Round]
    # Contestant key -> why it could not be measured.
    failures: dict[str, str]
    # Contestant key -> its export's memory, or why that is missing.
    memory: dict[str, MemorySample | str]
    header: list[str]


def _ratios(results: Results, key: str, endpoint: str, figure: str, versus: str) -> list[float]:
    """`figure` of contestant `key` over that of `versus`, for each round that measured both."""
    ratios = []
    for measured in results.rounds:
        mine = measured.get(key, {}).get(endpoint)
        theirs = measured.get(versus, {}).get(endpoint)
        if mine is not None and theirs is not None and getattr(theirs, figure) > 0:
            ratios.append(getattr(mine, figure) / getattr(theirs, figure))
    return ratios


def _x(values: list[float]) -> str:
    return f"{median(values):.2f}x" if values else "-"


def _each(values: list[float]) -> str:
    return " ".join(f"{value:.2f}" for value in values)


def _table(results: Results) -> list[str]:
    columns = [
        "endpoint", "contestant", *(f.name for f in FIGURES.values()), "req/s per round",
        *(f.unit for f in FIGURES.values()), "errors",
    ]  # fmt: skip
    lines = [
        "| " + " | ".join(columns) + " |",
        "|---|---|" + "--:|" * len(FIGURES) + "---|" + "--:|" * (len(FIGURES) + 1),
    ]
    for endpoint, title in ENDPOINTS.items():
        for contestant in results.contestants:
            cells = [title, contestant.title]
            samples = [m[contestant.key][endpoint] for m in results.rounds
                       if endpoint in m.get(contestant.key, {})]  # fmt: skip
            if contestant.key in results.failures:
                cells.append("did not run: " + results.failures[contestant.key].splitlines()[0])
            elif not samples:
                cells.append("not measured")
            else:
                ratios = {
                    f: _ratios(results, contestant.key, endpoint, f, BASELINE) for f in FIGURES
                }
                cells += [_x(values) for values in ratios.values()]
                cells.append(_each(ratios["rps"]))
                cells += [
                    f.form.format(median(getattr(s, figure) for s in samples))
                    for figure, f in FIGURES.items()
                ]
                cells.append(str(sum(s.errors for s in samples)))
            cells += [""] * (len(columns) - len(cells))
            lines.append("| " + " | ".join(cells) + " |")
    return lines


def _noise(results: Results) -> list[str]:
    """How far apart two servers of the same code came out, from the second baseline server."""
    per_endpoint = {
        title: _ratios(results, BASELINE_AGAIN, endpoint, "rps", BASELINE)
        for endpoint, title in ENDPOINTS.items()
    }
    every = [ratio for ratios in per_endpoint.values() for ratio in ratios]
    if not every:
        return []
    spread = "; ".join(
        f"{title} {_each(ratios)}" for title, ratios in per_endpoint.items() if ratios
    )
    return [
        f"Noise floor: two servers of the baseline's code, measured in the same slices, "
        f"differed by up to {max(abs(r - 1) for r in every):.0%} in req/s within a round "
        f"({spread}). A per-round difference smaller than that is within this machine's noise.",
        "",
    ]


def _targets(results: Results) -> list[str]:
    """Each target with the ratios it was judged on."""
    titles = {c.key: c.title for c in results.contestants}
    lines = []
    for target in TARGETS:
        if target.contestant not in titles or target.versus not in titles:
            continue
        name, _, _, higher_is_better = FIGURES[target.figure]
        ratios = _ratios(results, target.contestant, target.endpoint, target.figure, target.versus)
        judged = ratios if target.every_round else [median(ratios)] if ratios else []
        met = [r >= target.ratio if higher_is_better else r <= target.ratio for r in judged]
        mark = "n/a" if not met else "pass" if all(met) else "MISS"
        bound = f"{'≥' if higher_is_better else '≤'} {target.ratio:.2f}x"
        how = (
            f" in every round; {_each(ratios)}" if target.every_round else f"; median {_x(ratios)}"
        )
        lines.append(
            f"- [{mark}] {titles[target.contestant]}, {ENDPOINTS[target.endpoint]}: {name} "
            f"{bound} of {titles[target.versus]}{how}"
        )
    return lines


def _memory(results: Results) -> list[str]:
    lines = [
        "| contestant | rows | seconds | RSS before MB | peak MB | growth MB | target |",
        "|---|--:|--:|--:|--:|--:|---|",
    ]
    for contestant in results.contestants:
        outcome = results.memory.get(contestant.key)
        if isinstance(outcome, str):
            lines.append(f"| {contestant.title} | {outcome} |||||")
        elif outcome is not None:
            verdict = "pass" if outcome.growth_mb < MEMORY_TARGET_MB else "MISS"
            lines.append(
                f"| {contestant.title} | {outcome.rows:,} | {outcome.seconds:.1f} "
                f"| {outcome.rss_before_mb:.1f} | {outcome.peak_mb:.1f} "
                f"| {outcome.growth_mb:.1f} | {verdict} (< {MEMORY_TARGET_MB} MB) |"
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
            "## Targets",
            "",
            "The design targets of docs/performance.md, each with the ratios it was judged on.",
            "",
            *_targets(results),
            "",
            "## Streaming export: resident memory",
            "",
            *_memory(results),
            "",
        ]
    )
