"""`python -m bench rush --rate R[,R2,…]`: the rush as an open loop, and where its latency breaks.

The closed loop keeps `--concurrency` requests in flight, so its latency is that number ÷ its
throughput (Little's law) and says nothing about how fast an answer comes at a given demand.
Here requests arrive as customers do, independently: at each rate a Poisson process (seeded)
decides when each booking is sent, whatever happened to the earlier ones, and its latency runs
from that scheduled time (bench/load.py, `open_loop`). Each rate books a show of its own
(seats: a quarter of its expected requests, as in scale mode) and is let settle before the next.
The bare INSERT endpoint (bench/bare_app.py) gets the same schedules, first, on the idle stack.
Before its first rate each target gets a warm-up, not reported: `warmup_s` at the lowest rate
(the first requests of a fresh process open its database connections and fill its caches).

The knee is the highest rate whose p99 stays at or below KNEE_P99_MS with no error, below the
lowest rate that did not: past it, requests queue faster than they are answered. `--rate auto`
searches for it: doubling from AUTO_START_RPS until a rate fails, then bisecting.
"""
from __future__ import annotations

import random
from dataclasses import dataclass
from pathlib import Path

from bench import harness
from bench.load import poisson_offsets

KNEE_P99_MS = 100.0
AUTO_START_RPS = 50
AUTO_RESOLUTION = 0.1  # the search stops once the failing rate is within 10 % of the passing one


@dataclass
class Schedule:
    """How long each rate runs: `seconds` of arrivals, at most `max_requests` of them."""
    seconds: float = 20.0
    warmup_s: float = 2.0
    max_requests: int = 20_000
    max_connections: int = 2_000
    seed: int = 6


def arrivals(rate: float, seconds: float, schedule: Schedule, customers: int,
             show_id: str) -> tuple[list[float], float, list]:
    """One rate's send times, their span (seconds of schedule) and bookings: for a rate, the same
    times, customers and quantities on the app and on the bare endpoint."""
    offsets = poisson_offsets(rate, seconds, schedule.max_requests, f"{schedule.seed}:{rate:g}")
    span = seconds if len(offsets) < schedule.max_requests else offsets[-1]
    rng = random.Random(f"{schedule.seed}:{rate:g}:bookings")
    items = [[rng.randrange(customers), {"show_id": show_id, "qty": rng.randint(1, 4), "payment_method": "tok_ok"}]
             for _ in offsets]
    return offsets, span, items


def figures_of(rate: float, result: dict, span: float) -> tuple[dict, dict]:
    """A rate's row of the report and its details. Every request answered otherwise than 202
    (accepted) or 409 (the app's answer for a show sold out: no booking written) counts as an
    error, as do those never answered (connection errors, timeouts); latencies are of every
    request sent, errors included. accepted/s: 202 answers ÷ the time from the start to the later
    of the schedule's end and the last answer."""
    latencies = result["latencies_ms"]
    accepted = result["statuses"].get("202", 0)
    refused = result["statuses"].get("409", 0)
    window = max(span, result["elapsed_s"])
    row = {"rate": rate,
           "p50_ms": harness.percentile(latencies, 50), "p99_ms": harness.percentile(latencies, 99),
           "p999_ms": harness.percentile(latencies, 99.9),
           "accepted_rps": accepted / window, "errors": len(latencies) - accepted - refused}
    detail = {"rate": rate, "requests": len(latencies), "span_s": span, "window_s": window, "sold_out": refused,
              "statuses": result["statuses"], "error_kinds": result["errors"],
              "most_in_flight": result["most_in_flight"], "send_lag_p99_ms": harness.percentile(result["lag_ms"], 99),
              "loadgen_cpu_pct": 100 * result["cpu_s"] / result["elapsed_s"] if result["elapsed_s"] else 0.0}
    return row, detail


def passes(row: dict) -> bool:
    return row["p99_ms"] <= KNEE_P99_MS and row["errors"] == 0


def knee(rows: list[dict]) -> tuple[float | None, bool]:
    """(the knee, whether it is only a lower bound: no rate above it failed). None if the lowest
    rate failed already."""
    found = None
    for row in sorted(rows, key=lambda r: r["rate"]):
        if not passes(row):
            return found, False
        found = row["rate"]
    return found, found is not None


def search(measure, steps: int, start: float = AUTO_START_RPS) -> None:
    """`--rate auto`: measure(rate) -> row, at most `steps` times: double from `start` while the
    rate passes, then bisect between the highest that passed (0 if none) and the lowest that failed."""
    low, high, rate = 0, None, start
    for _ in range(steps):
        if passes(measure(rate)):
            low = rate
        else:
            high = rate
        if high is None:
            rate = low * 2
            continue
        rate = round((low + high) / 2)
        if high - low <= max(1, AUTO_RESOLUTION * low) or rate in (low, high):
            return


def measured(measure, rates: list[float] | str, schedule: Schedule, steps: int) -> tuple[list[dict], list[dict]]:
    """The rows and details of the given rates, or of the auto search, by rate, after the warm-up."""
    if schedule.warmup_s > 0:
        measure(AUTO_START_RPS if rates == "auto" else min(rates), schedule.warmup_s)
    rows, details = [], []

    def one(rate):
        row, detail = measure(rate, schedule.seconds)
        rows.append(row)
        details.append(detail)
        return row

    if rates == "auto":
        search(one, steps)
    else:
        for rate in rates:
            one(rate)
    order = sorted(range(len(rows)), key=lambda i: rows[i]["rate"])
    return [rows[i] for i in order], [details[i] for i in order]


def bare_insert(bench: harness.BenchStack, rates, schedule: Schedule, customers: int, steps: int,
                workdir: Path) -> tuple[list[dict], list[dict]]:
    tokens = bench.seed_customers(customers)
    with harness.bare_insert_app(bench) as base_url:
        def measure(rate, seconds):
            offsets, span, items = arrivals(rate, seconds, schedule, customers, "bench")
            harness.log.info("open loop, bare insert: %g/s, %d requests", rate, len(items))
            return figures_of(rate, run(base_url, "/insert", tokens, items, offsets, schedule, workdir), span)
        return measured(measure, rates, schedule, steps)


def app(bench: harness.BenchStack, rates, schedule: Schedule, customers: int, steps: int,
        workdir: Path) -> tuple[list[dict], list[dict]]:
    tokens = bench.seed_customers(customers)

    def measure(rate, seconds):
        seats = max(1, round(min(rate * seconds, schedule.max_requests) / 4))
        show_id = bench.create_show(seats)
        offsets, span, items = arrivals(rate, seconds, schedule, customers, show_id)
        harness.log.info("open loop, the app: %g/s, %d requests", rate, len(items))
        result = run(bench.stack.urls["api"], "/bookings", tokens, items, offsets, schedule, workdir)
        row, detail = figures_of(rate, result, span)
        detail["seats"] = seats
        detail["settle_s"] = settle(bench, show_id, result, row, span)
        checked = harness.check_show(bench, show_id, result)
        detail.update({key: checked[key] for key in ("oversold", "fairness_violations", "fairness_untimed_bookings",
                                                      "ledger_mismatches", "booking_statuses")})
        return row, detail
    return measured(measure, rates, schedule, steps)


def run(base_url: str, path: str, tokens: list[str], items: list, offsets: list[float], schedule: Schedule,
        workdir: Path) -> dict:
    return harness.run_load(base_url, path, tokens, items, 0, workdir,
                            open_loop={"offsets": offsets, "max_connections": schedule.max_connections})


def settle(bench: harness.BenchStack, show_id: str, result: dict, row: dict, span: float) -> float:
    """Wait until every accepted booking of the rate is final (the next rate starts on a quiet
    stack); the seconds from the start of the rate until then."""
    accepted = result["statuses"].get("202", 0)
    poller = harness.ProgressPoller(bench.db_url, show_id)
    poller.target = accepted
    poller.start()
    if not poller.done.wait(bench.options.settle_timeout):
        poller.stop.set()
        raise RuntimeError(f"open loop at {row['rate']:g}/s: not every booking was final within "
                           f"{bench.options.settle_timeout:.0f}s")
    final_at = poller.first_time(lambda c: sum(c.get(s, 0) for s in harness.FINAL) >= accepted)
    return final_at - result["started_at"]


def rush(bench: harness.BenchStack, rates, schedule: Schedule, customers: int, steps: int, workdir: Path,
         baseline: bool = True) -> dict:
    """The open-loop figures: the bare endpoint's table and knee (unless not `baseline`), the
    app's, their ratio, and the app's correctness checks summed over its rates."""
    figures: dict = {"open_loop_rates": rates, "rate_seconds": schedule.seconds, "rate_warmup_s": schedule.warmup_s,
                     "rate_max_requests": schedule.max_requests, "knee_p99_ms": KNEE_P99_MS}
    bare_knee = None
    if baseline:
        rows, details = bare_insert(bench, rates, schedule, customers, steps, workdir)
        bare_knee, bounded = knee(rows)
        figures.update(bare_insert_open_loop=rows, bare_insert_open_loop_details=details,
                       bare_insert_knee_rps=bare_knee, bare_insert_knee_rps_is_lower_bound=bounded)
    else:
        figures.update(bare_insert_knee_rps=None)
    rows, details = app(bench, rates, schedule, customers, steps, workdir)
    app_knee, bounded = knee(rows)
    figures.update(open_loop=rows, open_loop_details=details, knee_rps=app_knee, knee_rps_is_lower_bound=bounded,
                   ratio_knee_vs_bare_insert=app_knee / bare_knee if app_knee is not None and bare_knee else None)
    for key in ("oversold", "fairness_violations", "ledger_mismatches"):
        figures[key] = sum(detail[key] for detail in details)
    return figures
