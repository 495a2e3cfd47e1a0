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

import json
import random
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import psycopg

from bench import harness
from bench.load import poisson_offsets
from bench.resources import Resources

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


SOLD_OUT_REQUESTS = 5_000  # the sold-out answer's closed loop (sold_out_answers), and its bare JSON one
SLICE_S = 5.0  # the details' p99 by slice of the schedule: where in the rate the latency grew


def figures_of(rate: float, result: dict, span: float, offsets: list[float]) -> tuple[dict, dict]:
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
              "loadgen_cpu_pct": 100 * result["cpu_s"] / result["elapsed_s"] if result["elapsed_s"] else 0.0,
              "p99_ms_by_slice": by_slice(latencies, offsets), "slice_s": SLICE_S,
              # the app: when (sent, s from the start) the sold-out answer began, and the last booking taken
              "first_409_sent_s": result.get("first_409_sent_s"), "last_202_sent_s": result.get("last_202_sent_s")}
    return row, detail


def by_slice(latencies: list[float], offsets: list[float]) -> list[float]:
    """p99 of the requests due in each SLICE_S seconds of the schedule, in order."""
    slices: dict[int, list[float]] = {}
    for latency, offset in zip(latencies, offsets):
        slices.setdefault(int(offset // SLICE_S), []).append(latency)
    return [round(harness.percentile(slices[i], 99), 1) for i in sorted(slices)]


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
            resources = Resources(bench).start()
            row, detail = figures_of(rate, run(base_url, "/insert", tokens, items, offsets, schedule, workdir), span,
                                     offsets)
            detail["resources"] = resources.stop()
            return row, detail
        return measured(measure, rates, schedule, steps)


def app(bench: harness.BenchStack, rates, schedule: Schedule, customers: int, steps: int,
        workdir: Path, shows: list[str]) -> tuple[list[dict], list[dict]]:
    tokens = bench.seed_customers(customers)

    def measure(rate, seconds):
        seats = max(1, round(min(rate * seconds, schedule.max_requests) / 4))
        show_id = bench.create_show(seats)
        shows.append(show_id)
        offsets, span, items = arrivals(rate, seconds, schedule, customers, show_id)
        harness.log.info("open loop, the app: %g/s, %d requests", rate, len(items))
        resources = Resources(bench).start()
        result = run(bench.stack.urls["api"], "/bookings", tokens, items, offsets, schedule, workdir)
        row, detail = figures_of(rate, result, span, offsets)
        detail["resources"] = resources.stop()
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
         baseline: bool = True, sold_out_requests: int = SOLD_OUT_REQUESTS) -> dict:
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
    shows: list[str] = []
    rows, details = app(bench, rates, schedule, customers, steps, workdir, shows)
    app_knee, bounded = knee(rows)
    figures.update(open_loop=rows, open_loop_details=details, knee_rps=app_knee, knee_rps_is_lower_bound=bounded,
                   ratio_knee_vs_bare_insert=app_knee / bare_knee if app_knee is not None and bare_knee else None)
    if sold_out_requests:
        figures.update(sold_out_answers(bench, shows[-1], customers, sold_out_requests, workdir, baseline))
    for key in ("oversold", "fairness_violations", "ledger_mismatches"):
        figures[key] = sum(detail[key] for detail in details)
    return figures


def sold_out_answers(bench: harness.BenchStack, show_id: str, customers: int, requests: int, workdir: Path,
                     baseline: bool) -> dict:
    """How fast "sold out" comes: `requests` POST /bookings for the last rate's show, settled and
    sold out (its fact earned), from `--concurrency` connections in a closed loop, each answered
    409 `sold_out` without a booking written; against GET of the bare JSON endpoint answering a
    body of the 409's size from memory (bench/bare_app.py), the same requests the same way. A
    first tenth, not counted, lets the first refusal earn the fact again if it expired meanwhile."""
    notifications_sent(bench)
    tokens = bench.seed_customers(customers)
    rng = random.Random(f"sold-out:{show_id}")
    items = [[rng.randrange(customers), {"show_id": show_id, "qty": rng.randint(1, 4), "payment_method": "tok_ok"}]
             for _ in range(requests)]
    concurrency = bench.options.concurrency
    api = bench.stack.urls["api"]
    warm = harness.run_load(api, "/bookings", tokens, items[: max(1, requests // 10)], concurrency, workdir)
    body = sold_out_body(bench, tokens[0], show_id)
    resources = Resources(bench).start()
    load = harness.load_summary(harness.run_load(api, "/bookings", tokens, items, concurrency, workdir), "409")
    used = resources.stop()
    figures = {"sold_out_requests": requests, "sold_out_rps": load["accepted_rps"], "sold_out_p50_ms": load["p50_ms"],
               "sold_out_p99_ms": load["p99_ms"], "sold_out_statuses": load["statuses"],
               "sold_out_warmup_statuses": warm["statuses"], "sold_out_resources": used,
               "sold_out_loadgen_cpu_pct": load["loadgen_cpu_pct"]}
    if baseline:
        bare = harness.baseline_bare_json(bench, body, requests, workdir)
        figures.update({f"sold_out_{key}": value for key, value in bare.items()})
        figures["ratio_sold_out_vs_bare_json"] = (load["accepted_rps"] / bare["bare_json_rps"]
                                                  if bare["bare_json_rps"] else None)
    return figures


def notifications_sent(bench: harness.BenchStack, patience_s: float = 180.0) -> None:
    """Wait until the rates' mails and webhook deliveries are sent (none PENDING), so the sold-out
    loop runs on a quiet stack as its bare baseline does; after `patience_s`, it runs anyway."""
    deadline = time.monotonic() + patience_s
    with psycopg.connect(bench.db_url, autocommit=True) as connection:
        while time.monotonic() < deadline:
            pending = connection.execute(
                "SELECT (SELECT count(*) FROM mails WHERE status = 'PENDING')"
                " + (SELECT count(*) FROM webhook_deliveries WHERE status = 'PENDING')").fetchone()[0]
            if not pending:
                return
            time.sleep(0.5)
    harness.log.warning("sold-out loop: notifications still pending after %.0fs", patience_s)


def sold_out_body(bench: harness.BenchStack, token: str, show_id: str) -> bytes:
    """The bytes of one sold-out answer (the bare JSON endpoint answers as many). A request the
    fact did not refuse yet is a booking recorded and rejected: asked again a moment later."""
    for _ in range(10):
        request = urllib.request.Request(
            bench.stack.urls["api"] + "/bookings", method="POST",
            data=json.dumps({"show_id": show_id, "qty": 1, "payment_method": "tok_ok"}).encode(),
            headers={"Authorization": f"Bearer {token}", "Content-Type": "application/json"})
        try:
            urllib.request.urlopen(request, timeout=30)
        except urllib.error.HTTPError as error:
            if error.code == 409:
                return error.read()
            raise
        time.sleep(0.3)
    raise RuntimeError(f"show {show_id} did not answer sold out: every request was taken as a booking")
