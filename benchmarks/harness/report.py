"""The results as Markdown: per-round ratios to the baseline, their medians, and the targets."""

from dataclasses import dataclass
from statistics import median
from typing import NamedTuple

from .config import LIST_SIZE
from .contestants import (
    BASELINE,
    BASELINE_AGAIN,
    COUNTERPART,
    ENDPOINTS,
    PEER,
    SERVICE,
    SERVICE_PGBOUNCER,
    SESSION_LAYER,
    Contestant,
)
from .load import Sample
from .memory import MemorySample

__all__ = [
    "EXPORT_ROWS_PER_SECOND",
    "LAYER_TARGETS",
    "MEMORY_TARGET_MB",
    "SCALE_COST_RATIO",
    "SERVICE_TARGETS",
    "Results",
    "Round",
    "Scale",
    "Target",
    "render",
]

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
# Issue 15: each export streams at least this many rows per second through the server.
EXPORT_ROWS_PER_SECOND = 250_000
# Issue 15: a list page on the largest table costs at most this much more than on the smallest.
SCALE_COST_RATIO = 1.2
NOT_RUN = "Not judged: this run left out the contestants these targets compare (`--only`)."


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


# Issue 23: the baked service, on its own endpoints, against the baseline's: idiomatic
# code, no bypass of FastAPI or the ORM, with these floors.
SERVICE_TARGETS = [
    Target("no-db", "rps", 0.60, contestant=SERVICE),
    Target("read", "rps", 0.85, contestant=SERVICE),
    Target("fast-read", "rps", 1.5, contestant=SERVICE),
    Target("list", "rps", 1.0, contestant=SERVICE),
    Target("insert-pair", "rps", 0.90, contestant=SERVICE),
]

# The session layer's own targets, from before issue 15.
LAYER_TARGETS = [
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
    # "<contestant key> <format>" -> its export's figures, or why they are missing.
    memory: dict[str, MemorySample | str]
    header: list[str]
    scale: "Scale | None" = None


@dataclass
class Scale:
    """The scale benchmark: the service's reads and list on tables of several sizes."""

    # Users in the table -> endpoint key -> sample; a missing endpoint failed its check.
    samples: dict[int, dict[str, Sample]]
    # "<users> <endpoint>" -> why it was not measured.
    failures: dict[str, str]


def _ratios(results: Results, key: str, endpoint: str, figure: str, versus: str) -> list[float]:
    """`figure` of contestant `key` over that of `versus`, for each round that measured both."""
    ratios = []
    for measured in results.rounds:
        mine = measured.get(key, {}).get(endpoint)
        theirs = measured.get(versus, {}).get(endpoint) or measured.get(versus, {}).get(
            COUNTERPART.get(endpoint, "")
        )
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
            if endpoint not in contestant.routes:
                continue
            cells = [title, contestant.title]
            samples = [m[contestant.key][endpoint] for m in results.rounds
                       if endpoint in m.get(contestant.key, {})]  # fmt: skip
            failure = results.failures.get(contestant.key) or results.failures.get(
                f"{contestant.key} {endpoint}"
            )
            if failure and not samples:
                cells.append("did not run: " + failure.splitlines()[0])
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


def _noise_floor(results: Results) -> float | None:
    """The largest gap in req/s between the two baseline servers in any round and endpoint."""
    every = [
        ratio
        for endpoint in ENDPOINTS
        for ratio in _ratios(results, BASELINE_AGAIN, endpoint, "rps", BASELINE)
    ]
    return max(abs(r - 1) for r in every) if every else None


def _noise(results: Results) -> list[str]:
    """How far apart two servers of the same code came out, from the second baseline server."""
    per_endpoint = {
        title: _ratios(results, BASELINE_AGAIN, endpoint, "rps", BASELINE)
        for endpoint, title in ENDPOINTS.items()
    }
    floor = _noise_floor(results)
    if floor is None:
        return []
    spread = "; ".join(
        f"{title} {_each(ratios)}" for title, ratios in per_endpoint.items() if ratios
    )
    return [
        f"Noise floor: two servers of the baseline's code, measured in the same slices, "
        f"differed by up to {floor:.0%} in req/s within a round "
        f"({spread}). A per-round difference smaller than that is within this machine's noise.",
        "",
    ]


def _pgbouncer(results: Results) -> list[str]:
    """The service through PgBouncer over the service direct, per endpoint and round."""
    per_endpoint = {
        title: _ratios(results, SERVICE_PGBOUNCER, endpoint, "rps", SERVICE)
        for endpoint, title in ENDPOINTS.items()
    }
    if not any(per_endpoint.values()):
        return []
    return [
        "Through PgBouncer in transaction mode (DATABASE_POOLER=pgbouncer, a pool of the "
        "service's size in pgbouncer.ini): the service's req/s over the direct service's in "
        "the same slices, median (each round):",
        "",
        *(
            f"- {title}: {_x(ratios)} ({_each(ratios)})"
            for title, ratios in per_endpoint.items()
            if ratios
        ),
        "",
    ]


def _mark(met: list[bool]) -> str:
    """A target that could not be judged is missed: a broken route reaches nothing."""
    return "pass" if met and all(met) else "MISS"


def _target_lines(results: Results, targets: list[Target]) -> list[str]:
    """Each target with the ratios it was judged on; n/a where a side was not measured."""
    titles = {c.key: c.title for c in results.contestants}
    lines = []
    for target in targets:
        if target.contestant not in titles or target.versus not in titles:
            continue
        name, _, _, higher_is_better = FIGURES[target.figure]
        ratios = _ratios(results, target.contestant, target.endpoint, target.figure, target.versus)
        judged = ratios if target.every_round else [median(ratios)] if ratios else []
        met = [r >= target.ratio if higher_is_better else r <= target.ratio for r in judged]
        bound = f"{'≥' if higher_is_better else '≤'} {target.ratio:.2f}x"
        versus = target.versus
        endpoint = ENDPOINTS[target.endpoint]
        if target.endpoint in COUNTERPART:
            endpoint += f" (vs the {titles[versus]}'s {ENDPOINTS[COUNTERPART[target.endpoint]]})"
        if not ratios:
            how = "; not measured" + _why_not(results, target.contestant, target.endpoint)
        elif target.every_round:
            how = f" in every round; {_each(ratios)}"
        else:
            how = f"; median {_x(ratios)}"
        lines.append(
            f"- [{_mark(met)}] {titles[target.contestant]}, {endpoint}: {name} "
            f"{bound} of {titles[versus]}{how}"
        )
    return lines


def _why_not(results: Results, key: str, endpoint: str) -> str:
    failure = results.failures.get(key) or results.failures.get(f"{key} {endpoint}")
    return f" ({failure.splitlines()[0]})" if failure else ""


def _export_lines(results: Results) -> list[str]:
    """Issue 15's export targets: the service's rows per second and memory, per format."""
    lines = []
    for form in ("ndjson", "csv"):
        outcome = results.memory.get(f"{SERVICE} {form}")
        if outcome is None:
            continue
        if isinstance(outcome, str):
            lines.append(f"- [MISS] baked service, export as {form}: {outcome}")
            continue
        fast = outcome.rows_per_second >= EXPORT_ROWS_PER_SECOND
        small = outcome.growth_mb < MEMORY_TARGET_MB
        lines += [
            f"- [{_mark([fast])}] baked service, export as {form}: rows/s ≥ "
            f"{EXPORT_ROWS_PER_SECOND:,}; {outcome.rows_per_second:,.0f} "
            f"({outcome.rows:,} rows in {outcome.seconds:.1f} s)",
            f"- [{_mark([small])}] baked service, export as {form}: memory growth < "
            f"{MEMORY_TARGET_MB} MB; {outcome.growth_mb:.1f} MB",
        ]
    return lines


def _scale_cost(scale: Scale, endpoint: str) -> tuple[int, int, float] | None:
    """(smallest, largest, cost ratio): time per request on the largest table over the smallest."""
    sizes = sorted(size for size, samples in scale.samples.items() if endpoint in samples)
    if len(sizes) < 2:
        return None
    small, large = scale.samples[sizes[0]][endpoint], scale.samples[sizes[-1]][endpoint]
    if large.rps <= 0:
        return sizes[0], sizes[-1], float("inf")
    return sizes[0], sizes[-1], small.rps / large.rps


def _scale_lines(results: Results) -> list[str]:
    """Issue 15's flatness target, from the scale benchmark."""
    if results.scale is None:
        return []
    found = _scale_cost(results.scale, "list")
    if found is None:
        reasons = [v.splitlines()[0] for k, v in results.scale.failures.items() if "list" in k]
        why = f" ({reasons[0]})" if reasons else ""
        return [f"- [MISS] baked service, list {LIST_SIZE} rows: cost flat with rows; "
                f"not measured{why}"]  # fmt: skip
    small, large, ratio = found
    shown = f"{ratio:.2f}x" if ratio != float("inf") else "no request finished on the largest"
    return [
        f"- [{_mark([ratio <= SCALE_COST_RATIO])}] baked service, list {LIST_SIZE} rows: "
        f"time per request on {large:,} users ≤ {SCALE_COST_RATIO:.2f}x that on {small:,} "
        f"(scale benchmark); {shown}"
    ]


def _memory(results: Results) -> list[str]:
    lines = [
        "| contestant | format | rows | seconds | rows/s | RSS before MB | peak MB | growth MB |",
        "|---|---|--:|--:|--:|--:|--:|--:|",
    ]
    for contestant in results.contestants:
        for form in contestant.exports:
            outcome = results.memory.get(f"{contestant.key} {form}")
            if isinstance(outcome, str):
                lines.append(f"| {contestant.title} | {form} | {outcome} ||||||")
            elif outcome is not None:
                lines.append(
                    f"| {contestant.title} | {form} | {outcome.rows:,} | {outcome.seconds:.1f} "
                    f"| {outcome.rows_per_second:,.0f} | {outcome.rss_before_mb:.1f} "
                    f"| {outcome.peak_mb:.1f} | {outcome.growth_mb:.1f} |"
                )
    return lines


def _layer_memory_lines(results: Results) -> list[str]:
    outcome = results.memory.get(f"{SESSION_LAYER} ndjson")
    if not isinstance(outcome, MemorySample):
        return []
    met = outcome.growth_mb < MEMORY_TARGET_MB
    return [
        f"- [{_mark([met])}] app/db layer, export: memory growth < {MEMORY_TARGET_MB} MB; "
        f"{outcome.growth_mb:.1f} MB"
    ]


def scale_table(scale: Scale) -> list[str]:
    """The scale benchmark as Markdown: one row per table size."""
    endpoints = [e for e in ("list", "read", "fast-read")
                 if any(e in samples for samples in scale.samples.values())]  # fmt: skip
    smallest = {e: next((scale.samples[size][e] for size in sorted(scale.samples)
                         if e in scale.samples[size]), None) for e in endpoints}  # fmt: skip
    columns = ["users"]
    for endpoint in endpoints:
        columns += [f"{ENDPOINTS[endpoint]} req/s", "p50 ms", "cost vs smallest"]
    lines = ["| " + " | ".join(columns) + " |", "|--:|" + "--:|" * (len(columns) - 1)]
    for size in sorted(scale.samples):
        cells = [f"{size:,}"]
        for endpoint in endpoints:
            sample = scale.samples[size].get(endpoint)
            first = smallest[endpoint]
            if sample is None or first is None:
                cells += ["not measured", "", ""]
                continue
            if sample.rps <= 0:
                cells += ["0", "no request finished in a slice", ""]
                continue
            cells += [
                f"{sample.rps:,.0f}",
                f"{sample.p50_ms:.1f}",
                f"{first.rps / sample.rps:.2f}x",
            ]
        lines.append("| " + " | ".join(cells) + " |")
    for key, why in scale.failures.items():
        lines.append(f"\n{key}: not measured: {why.splitlines()[0]}")
    return lines


def render(results: Results) -> str:
    """The whole report as Markdown."""
    floor = _noise_floor(results)
    noise = (
        f"This run's noise floor (the second baseline server against the first): "
        f"{floor:.0%}. A target missed or passed by less than that is a tie, not a verdict."
        if floor is not None
        else "This run had no second baseline server, so it has no noise floor."
    )
    scale = (
        [
            "## Scale: the service's reads and list as the users table grows",
            "",
            "One database and one server per size, seeded with `INSERT ... SELECT ... FROM "
            "generate_series` and `VACUUM ANALYZE`; the servers share one core, wrk has the "
            "other, and the slices take turns between the sizes, as in the rounds. Cost is "
            "time per request at full load, relative to the smallest table.",
            "",
            *scale_table(results.scale),
            "",
        ]
        if results.scale is not None
        else []
    )
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
            *_pgbouncer(results),
            "## Targets",
            "",
            noise,
            "",
            "### Issue 23: the baked service",
            "",
            *(
                _target_lines(results, SERVICE_TARGETS)
                + _scale_lines(results)
                + _export_lines(results)
                or [NOT_RUN]
            ),
            "",
            "### The session layer (docs/performance.md)",
            "",
            *(_target_lines(results, LAYER_TARGETS) + _layer_memory_lines(results) or [NOT_RUN]),
            "",
            "## Streaming exports: speed and resident memory",
            "",
            *_memory(results),
            "",
            *scale,
        ]
    )
