"""python -m bench rush|scale|soak|baselines|checkins|queue|show-cancel [options]

rush       the on-sale rush (default 20,000 requests for 5,000 seats from 1,000 customers at 64
           connections) and the three baselines, in one run on one stack; prints a table and
           writes bench-results/rush-TIMESTAMP.json. With --seated: the rush on a reserved show
           (a 5,000-seat map, 2,000 customers, best available and picks from the seat page,
           which is polled meanwhile), plus the bare JSON baseline; --with-general runs the
           general rush first, in the same run, for the seated ÷ general ratio
baselines  only the baselines
scale      rushes of 1k, 5k, 20k and 50k bookings (seats = bookings / 4): how time grows
soak       a long run (default 100,000 bookings in rushes of 10,000) with API and worker memory
           (RSS) at the start and the end
checkins   the door (SPEC §10): check-ins/s through POST /checkins (--tickets tickets, each scanned
           twice) and one offline batch of --batch-scans scans (POST /checkins/batch) and its
           replay, each against the bare JSON baseline
queue      the waiting room (SPEC §9): 100,000 customers join one show's queue before its sale at 64
           connections, then the sale opens and they poll their entries (round-robin, as fast as the
           connections go) while the admission job admits them; the admission rate over a steady
           minute, admissions given twice or out of queue order, and the bare JSON baseline, in one
           run on one stack. rush --queue (with or without --seated): the rush behind the waiting
           room, every customer joining, polling until admitted and booking once with its token.
           rush --rate R[,R2,…] (or auto): the rush as an open loop instead (bench/open_loop.py):
           Poisson arrivals at each rate, p50/p99/p99.9 from the scheduled send, on the app and
           the bare INSERT endpoint, and the knee (the highest rate with p99 <= 100 ms) of each
show-cancel  a cancelled show (SPEC §11): --cancel-bookings PAID bookings (default 10,000) refunded
           after POST /shows/{id}/cancel, worker-payments and worker-maintenance SIGKILLed once a
           third are done; the time until all are refunded, and the gateway-alone baseline
"""
from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from datetime import timedelta
from pathlib import Path

from bench import door, harness, open_loop, show_cancel

RESULTS_DIR = Path("bench-results")

TARGETS = {
    "ratio_settled_vs_celery_noop": (">=", 1.0),
    "ratio_reservations_vs_pg_hot_row": (">=", 1.0),
    "ratio_accepted_vs_bare_insert": (">=", 0.8),
    "api_p99_ms": ("<=", 50.0),
    "oversold": ("==", 0),
    "fairness_violations": ("==", 0),
    "ledger_mismatches": ("==", 0),
    "ratio_seat_page_vs_bare_json": (">=", 0.5),
    "double_held": ("==", 0),
    "seat_page_mismatches": ("==", 0),
    "limit_violations": ("==", 0),
    "double_admissions": ("==", 0),
    "missed_admissions": ("==", 0),
    "batch_mismatches": ("==", 0),
    "ratio_join_vs_bare_json": (">=", 0.5),
    "ratio_poll_vs_bare_json": (">=", 0.5),
    "admission_rate_error_pct": ("<=", 2.0),
    "ratio_max_second_vs_rate": ("<=", 1.5),
    "admitted_twice": ("==", 0),
    "out_of_order": ("==", 0),
    "admitted_booking_p99_ms": ("<=", 100.0),
    "bookings_without_admission": ("==", 0),
    "admissions_booked_twice": ("==", 0),
}
CORRECTNESS = ("oversold", "fairness_violations", "ledger_mismatches", "double_held", "seat_page_mismatches",
               "limit_violations", "double_admissions", "missed_admissions", "batch_mismatches", "admitted_twice",
               "out_of_order", "bookings_without_admission", "admissions_booked_twice")

ROWS = [
    ("cores", "CPU cores"), ("requests", "booking requests"), ("seats", "seats"),
    ("customers", "customers"), ("concurrency", "connections"),
    ("accepted_rps", "accepted requests/s"), ("api_p50_ms", "API latency p50 (ms)"),
    ("api_p99_ms", "API latency p99 (ms)"), ("settle_s", "time until every booking final (s)"),
    ("settled_per_s", "settled bookings/s"),
    ("reservations_per_s", "seat decisions/s (accepted / seconds inside the reservation step)"),
    ("reserve_step_s", "time inside the reservation step, summed (s)"),
    ("reservations_e2e_per_s", "seat decisions/s end to end (accepted / first request -> all decided)"),
    ("reserve_s", "first request -> every booking decided (s)"),
    ("oversold", "oversold seats"),
    ("fairness_violations", "fairness violations (SPEC 4.6, by request sent/answered times)"),
    ("ledger_mismatches", "ledger mismatches"), ("celery_noop_per_s", "(a) Celery no-op tasks/s"),
    ("pg_hot_row_tps", "(b) PostgreSQL hot-row updates/s"), ("bare_insert_rps", "(c) bare Flask INSERT req/s"),
    ("bare_insert_p99_ms", "(c) bare Flask INSERT p99 (ms)"),
    ("ratio_settled_vs_celery_noop", "settled/s / (a)"),
    ("ratio_reservations_vs_pg_hot_row", "decisions/s (in the step) / (b)"),
    ("ratio_accepted_vs_bare_insert", "accepted/s / (c)"),
    ("loadgen_cpu_pct", "load generator CPU (% of a core)"),
]

SEATED_ROWS = [
    ("seat_page_rps", "seat page answers/s during the rush (200 and 304)"),
    ("seat_page_full_rps", "seat page full answers/s during the rush (200)"),
    ("seat_page_p99_ms", "seat page p99 during the rush (ms)"),
    ("seat_conflicts", "picks refused: seat_taken"),
    ("picks_not_sent", "picks not sent (the page showed no free seat)"),
    ("double_held", "seats held twice (seat_holds vs bookings)"),
    ("seat_page_mismatches", "seats the final page shows otherwise than seat_holds"),
    ("limit_violations", "customers over max_per_customer"),
    ("stranded_single_seats", "single free seats between taken ones (final page)"),
    ("seats_available_at_end", "seats left AVAILABLE"),
    ("general_settled_per_s", "general rush settled bookings/s (same run)"),
    ("bare_json_rps", "(d) bare Flask JSON page req/s"),
    ("seat_page_alone_rps", "seat page alone, idle stack, req/s"),
    ("ratio_settled_seated_vs_general", "seated settled/s / general settled/s"),
    ("ratio_seat_page_vs_bare_json", "seat page answers/s in the rush / (d)"),
    ("ratio_seat_page_alone_vs_bare_json", "seat page alone / (d)"),
]

QUEUE_ROWS = [
    ("cores", "CPU cores"), ("joins", "joins (one customer each)"), ("concurrency", "connections"),
    ("join_rps", "joins/s (201)"), ("join_p99_ms", "join p99 (ms)"),
    ("poll_rps", "status polls/s (round-robin, as fast as the connections go)"),
    ("poll_rps_intended", "status polls/s intended (one per waiting customer every 5 s)"),
    ("poll_coverage_pct", "polls/s reached, % of intended"), ("poll_p99_ms", "status poll p99 (ms)"),
    ("draw_s", "sale open -> first admission (the draw) (s)"),
    ("catch_up_s", "first admission -> admissions caught up with the schedule (s)"),
    ("admit_per_minute", "admit_per_minute (the setting)"),
    ("admitted_in_window", "admitted in the window"), ("expected_in_window", "the setting's count for the window"),
    ("admission_rate_error_pct", "admission rate error (%)"),
    ("admit_per_second", "the setting per second"),
    ("max_admitted_in_a_second", "most admitted in one second (window)"),
    ("ratio_max_second_vs_rate", "most in one second / setting per second"),
    ("max_admitted_in_a_second_overall", "most admitted in one second (from the first admission)"),
    ("admitted_total", "admitted in all"),
    ("admitted_twice", "admitted twice (or beyond the slots)"),
    ("out_of_order", "admitted out of queue order"),
    ("bare_json_rps", "(d) bare Flask JSON page req/s"),
    ("ratio_join_vs_bare_json", "joins/s / (d)"), ("ratio_poll_vs_bare_json", "polls/s / (d)"),
    ("join_loadgen_cpu_pct", "load generator CPU, joins (% of a core)"),
    ("poll_loadgen_cpu_pct", "load generator CPU, polls (% of a core)"),
]

QUEUED_RUSH_ROWS = [
    ("admit_per_minute", "admit_per_minute (the setting)"), ("poll_interval_s", "poll interval (s)"),
    ("customers_admitted", "customers admitted"), ("customers_not_admitted", "customers still waiting at the end"),
    ("admitted_booking_p99_ms", "admitted customers' booking p99 (ms)"),
    ("joins_s", "first join -> last join answered (s)"),
    ("bookings_after_joins", "bookings sent after the last join was answered"),
    ("booking_p99_after_joins_ms", "their p99 (ms)"),
    ("booking_served_p99_ms", "booking p99 inside the API (its request log) (ms)"),
    ("queue_poll_p99_ms", "status poll p99 (ms)"), ("waited_p50_s", "wait join -> admitted p50 (s)"),
    ("waited_max_s", "wait join -> admitted max (s)"),
    ("admitted_twice", "admitted twice (or beyond the slots)"), ("out_of_order", "admitted out of queue order"),
    ("bookings_without_admission", "bookings without an admission"),
    ("admissions_booked_twice", "admissions with two live bookings"),
]


SHOW_CANCEL_ROWS = [
    ("cores", "CPU cores"), ("workers", "Celery concurrency per worker"),
    ("cancel_bookings", "PAID bookings of the cancelled show"),
    ("fan_out_s", "(a) every booking cancelled (s)"), ("refund_s", "(b) every refund settled (s)"),
    ("refunds_per_s", "refunds/s (bookings / (b))"), ("killed_at", "workers SIGKILLed at"),
    ("refunds_per_s_before_kill", "refunds/s until the SIGKILL"), ("after_kill_s", "from the SIGKILL to the last refund (s)"),
    ("refunded_not_in_full", "bookings not refunded in full, once"),
    ("gateway_alone_refunds_per_s", "(c) the refund's gateway calls alone, refunds/s"),
    ("refund_rate_vs_gateway_alone", "refunds/s / (c)"),
    ("refund_rate_before_kill_vs_gateway_alone", "refunds/s until the SIGKILL / (c)"),
]
TARGETS["refunded_not_in_full"] = ("==", 0)

CHECKIN_ROWS = [
    ("cores", "CPU cores"), ("concurrency", "connections"),
    ("online_tickets", "tickets checked in online"), ("online_scans", "online scans (each ticket twice)"),
    ("checkins_per_s", "POST /checkins answers/s (200 and 409)"),
    ("checkin_p50_ms", "POST /checkins p50 (ms)"), ("checkin_p99_ms", "POST /checkins p99 (ms)"),
    ("double_admissions", "tickets admitted twice"), ("missed_admissions", "tickets never admitted"),
    ("batch_scans", "offline batch: scans"), ("batch_s", "offline batch: seconds"),
    ("batch_scans_per_s", "offline batch: scans/s"), ("batch_replay_s", "offline batch replayed: seconds"),
    ("batch_mismatches", "batch answers not ADMITTED, or changed on replay"),
    ("bare_json_rps", "(d) bare Flask JSON page req/s"),
    ("ratio_checkins_vs_bare_json", "check-ins/s / (d)"),
    ("ratio_batch_scans_vs_bare_json", "batch scans/s / (d)"),
    ("checkin_loadgen_cpu_pct", "load generator CPU (% of a core)"),
]


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("mode", choices=("rush", "baselines", "scale", "soak", "checkins", "queue", "show-cancel"))
    parser.add_argument("--requests", type=int, default=20_000, help="booking requests in the rush")
    parser.add_argument("--seats", type=int, default=5_000)
    parser.add_argument("--customers", type=int, default=None, help="default 1,000 (2,000 with --seated)")
    parser.add_argument("--concurrency", type=int, default=64, help="HTTP connections (and hot-row connections)")
    parser.add_argument("--workers", type=int, default=2, help="Celery concurrency per worker (stack default)")
    parser.add_argument("--web-concurrency", type=int, default=int(os.environ.get("WEB_CONCURRENCY", "2")),
                        help="gunicorn workers of the API (and of the bare-insert baseline)")
    parser.add_argument("--baseline-requests", type=int, default=None,
                        help="requests for the bare-insert baseline (default: --requests, at most 10,000)")
    parser.add_argument("--noop-tasks", type=int, default=None,
                        help="tasks for the Celery no-op baseline (default: --requests, at most 10,000)")
    parser.add_argument("--hot-row-seconds", type=float, default=5.0)
    parser.add_argument("--sizes", default="1000,5000,20000,50000", help="scale mode: bookings per rush")
    parser.add_argument("--soak-bookings", type=int, default=100_000)
    parser.add_argument("--soak-chunk", type=int, default=10_000)
    parser.add_argument("--settle-timeout", type=float, default=900.0)
    parser.add_argument("--no-flower", action="store_true", help="leave Flower out (the run command starts it)")
    parser.add_argument("--no-baselines", action="store_true", help="rush only")
    parser.add_argument("--env-servers", action="store_true",
                        help="use DATABASE_URL / REDIS_URL instead of embedded servers of the run's own")
    parser.add_argument("--seated", action="store_true", help="rush mode: the reserved-seating rush (SPEC §8)")
    parser.add_argument("--with-general", action="store_true",
                        help="with --seated: the general rush first, same sizes, for the seated / general ratio")
    parser.add_argument("--page-pollers", type=int, default=4,
                        help="with --seated: connections polling the seat page during the rush, beside --concurrency")
    parser.add_argument("--max-per-customer", type=int, default=8, help="with --seated: the show's purchase limit")
    parser.add_argument("--page-requests", type=int, default=2_000,
                        help="with --seated: GETs for the bare JSON baseline and the seat page alone")
    parser.add_argument("--tickets", type=int, default=5_000, help="checkins: tickets checked in online")
    parser.add_argument("--batch-scans", type=int, default=10_000, help="checkins: scans in the offline batch")
    parser.add_argument("--cancel-bookings", type=int, default=10_000,
                        help="show-cancel: PAID bookings of the show cancelled")
    parser.add_argument("--baseline-refunds", type=int, default=1_000,
                        help="show-cancel: refunds of the gateway-alone baseline")
    parser.add_argument("--queue", action="store_true",
                        help="rush mode: the rush behind a waiting room (customers join, wait, book once when admitted)")
    parser.add_argument("--joins", type=int, default=100_000, help="queue mode: customers joining the waiting room")
    parser.add_argument("--admit-per-minute", type=int, default=None,
                        help="the waiting room's rate (default 6,000: queue mode and rush --queue)")
    parser.add_argument("--session-minutes", type=int, default=10, help="the waiting room's session length")
    parser.add_argument("--admission-window", type=float, default=60.0,
                        help="queue mode: seconds over which the admission rate is judged")
    parser.add_argument("--admission-warmup", type=float, default=5.0,
                        help="queue mode: seconds after the first admission before the window starts")
    parser.add_argument("--poll-interval", type=float, default=harness.INTENDED_POLL_INTERVAL_S,
                        help="rush --queue: seconds between a waiting customer's polls")
    parser.add_argument("--rate", type=rates, default=None,
                        help="rush mode: the open loop at these arrival rates (requests/s, comma-separated), "
                             "or auto (search for the knee), instead of the closed loop")
    parser.add_argument("--rate-seconds", type=float, default=20.0, help="with --rate: seconds of arrivals per rate")
    parser.add_argument("--rate-warmup", type=float, default=2.0,
                        help="with --rate: seconds of warm-up (not reported) at the lowest rate, before the first")
    parser.add_argument("--rate-max-requests", type=int, default=20_000,
                        help="with --rate: at most this many requests per rate (ends it sooner at a high rate)")
    parser.add_argument("--rate-steps", type=int, default=8, help="with --rate auto: rates measured at most, per target")
    parser.add_argument("--sold-out-requests", type=int, default=5_000,
                        help="with --rate: the sold-out answer's closed loop after the rates (0: none)")
    parser.add_argument("--seed", type=int, default=6)
    parser.add_argument("--out", help="JSON result path (default bench-results/MODE-TIMESTAMP.json)")
    parser.add_argument("--keep", action="store_true", help="keep the temp data dir (logs) after the run")
    parser.add_argument("-v", "--verbose", action="store_true")
    args = parser.parse_args(argv)
    if args.rate is not None:
        if args.mode != "rush" or args.seated or args.queue:
            parser.error("--rate is an open loop of the general rush: rush mode, without --seated or --queue")
        short = [rate for rate in args.rate if rate * args.rate_seconds < 10] if args.rate != "auto" else []
        if short:
            parser.error(f"--rate {short[0]:g} for {args.rate_seconds:g}s expects fewer than 10 requests: "
                         "no percentile to speak of")
    if args.admit_per_minute is None:
        args.admit_per_minute = 6_000
    if args.mode == "queue":
        needed = args.admit_per_minute * (args.admission_warmup + args.admission_window) / 60
        if args.joins < needed * 1.1:
            parser.error(f"--joins {args.joins:,} would run dry before the admission window ends: at "
                         f"{args.admit_per_minute:,} a minute it needs more than {needed * 1.1:,.0f}")
    return args


def rates(text: str) -> list[int | float] | str:
    """--rate: "auto", or positive requests/s separated by commas (whole numbers kept as ints)."""
    if text == "auto":
        return text
    try:
        values = [float(part) for part in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a list of rates: {text!r}") from None
    if not values or any(value <= 0 for value in values):
        raise argparse.ArgumentTypeError(f"rates must be positive: {text!r}")
    return [int(value) if value.is_integer() else value for value in values]


def fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:,.2f}" if abs(value) < 100 else f"{value:,.0f}"
    return f"{value:,}" if isinstance(value, int) else str(value)


def verdict(key, value, figures: dict | None = None) -> str:
    targets = TARGETS
    if figures and figures.get("queued"):  # behind the waiting room, SPEC §9 sets the booking's p99
        targets = {**TARGETS, "api_p99_ms": TARGETS["admitted_booking_p99_ms"]}
    if key not in targets or value is None:
        return ""
    op, target = targets[key]
    ok = {">=": value >= target, "<=": value <= target, "==": value == target}[op]
    return f"{'ok ' if ok else 'MISS'} (target {op} {target:g})"


def print_table(figures: dict) -> None:
    if figures.get("checkins"):
        rows = CHECKIN_ROWS
    elif figures.get("show_cancel"):
        rows = SHOW_CANCEL_ROWS
    elif figures.get("queue"):
        rows = QUEUE_ROWS
    else:
        rows = ROWS + (SEATED_ROWS if figures.get("seated") else []) + (QUEUED_RUSH_ROWS if figures.get("queued") else [])
    width = max(len(label) for _, label in rows)
    for key, label in rows:
        if key in figures:
            print(f"  {label:<{width}}  {fmt(figures[key]):>12}  {verdict(key, figures[key], figures)}")


def print_open_loop(figures: dict) -> None:
    for label, key, knee in (("bare INSERT endpoint", "bare_insert_open_loop", "bare_insert_knee_rps"),
                             ("the app (POST /bookings)", "open_loop", "knee_rps")):
        if key not in figures:
            continue
        found = "none: the lowest rate failed" if figures[knee] is None else (
            f"{'at least ' if figures[f'{knee}_is_lower_bound'] else ''}{fmt(figures[knee])} requests/s")
        print(f"  open loop, {label}: knee {found} (p99 <= {figures['knee_p99_ms']:g} ms, no error)")
        print(f"    {'rate/s':>8}  {'p50 ms':>8}  {'p99 ms':>8}  {'p99.9 ms':>9}  {'accepted/s':>10}  {'errors':>6}")
        for row in figures[key]:
            print(f"    {fmt(row['rate']):>8}  {fmt(row['p50_ms']):>8}  {fmt(row['p99_ms']):>8}  "
                  f"{fmt(row['p999_ms']):>9}  {fmt(row['accepted_rps']):>10}  {fmt(row['errors']):>6}")
        for detail in figures[f"{key}_details"]:
            since = "" if detail.get("first_409_sent_s") is None else (
                f"; sold out answered from {detail['first_409_sent_s']:.1f} s, "
                f"the last booking taken at {detail['last_202_sent_s'] or 0:.1f} s")
            print(f"    at {fmt(detail['rate'])}/s: p99 ms by {detail['slice_s']:g} s {detail['p99_ms_by_slice']}{since}")
            used = detail["resources"]
            print(f"      CPU {used['cpu_cores_total']} cores: "
                  + ", ".join(f"{name} {cores}" for name, cores in used["cpu_cores"].items()))
            print(f"      cores busy by second: {used['cpu_cores_by_s']}; the API's: {used['api_cores_by_s']}")
            print(f"      PostgreSQL {used['pg_active_sessions']} sessions active, waiting: {used['pg_waiting'] or '-'}; "
                  f"Redis {used['redis_ops_per_s']} ops/s")
    print(f"  knee / bare INSERT knee: {fmt(figures['ratio_knee_vs_bare_insert'])}")
    if "sold_out_rps" in figures:
        print(f"  sold out, closed loop of {figures['sold_out_concurrency']}: {fmt(figures['sold_out_rps'])} answers/s "
              f"(p50 {fmt(figures['sold_out_p50_ms'])} ms, p99 {fmt(figures['sold_out_p99_ms'])} ms, "
              f"statuses {figures['sold_out_statuses']}); bare JSON {fmt(figures.get('sold_out_bare_json_rps'))}/s; "
              f"ratio {fmt(figures.get('ratio_sold_out_vs_bare_json'))}")
        used = figures["sold_out_resources"]
        print(f"    CPU {used['cpu_cores_total']} cores: "
              + ", ".join(f"{name} {cores}" for name, cores in used["cpu_cores"].items())
              + f"; Redis {used['redis_ops_per_s']} ops/s")


def write_json(figures: dict, mode: str, out: str | None) -> Path:
    path = Path(out) if out else RESULTS_DIR / f"{mode}-{time.strftime('%Y%m%d-%H%M%S')}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(figures, indent=2, default=str) + "\n")
    return path


def run(args) -> dict:
    options = harness.Options(workers=args.workers, web_concurrency=args.web_concurrency,
                              concurrency=args.concurrency, flower=not args.no_flower, keep=args.keep,
                              settle_timeout=args.settle_timeout, seed=args.seed, env_servers=args.env_servers,
                              extra_env=dict(harness.QUEUE_ENV) if args.mode == "queue" or args.queue else {})
    figures: dict = {"mode": args.mode, "cores": os.cpu_count(), "workers": args.workers,
                     "web_concurrency": args.web_concurrency, "concurrency": args.concurrency,
                     "flower": options.flower, "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
    if args.mode == "queue":
        args.customers = args.joins
    elif args.customers is None:
        args.customers = 2_000 if args.seated or args.queue else 1_000
    baseline_requests = args.baseline_requests or min(args.joins if args.mode == "queue" else args.requests, 10_000)
    noop_tasks = args.noop_tasks or min(args.requests, 10_000)
    with harness.BenchStack(options) as bench:
        workdir = bench.data_dir
        bench.seed_customers(args.customers)
        if args.mode in ("rush", "baselines") and not args.no_baselines and args.rate is None:
            figures.update(harness.baselines(bench, baseline_requests, args.customers, noop_tasks,
                                             args.hot_row_seconds, workdir))
        if args.mode == "rush" and args.seated:
            figures.update(seated(bench, args, workdir))
            figures.update(harness.ratios(figures))
            figures.update(harness.seated_ratios(figures))
        elif args.mode == "rush" and args.queue:
            show_id = harness.queued_show(bench, args.seats, args.admit_per_minute, args.session_minutes,
                                          on_sale_in=timedelta(seconds=-1))
            figures.update(harness.queued_rush(bench, show_id, args.customers, args.admit_per_minute,
                                               args.poll_interval, workdir))
            figures.update(harness.ratios(figures))
        elif args.mode == "rush" and args.rate is not None:
            figures.pop("concurrency")  # an open loop opens the connections its arrivals need
            schedule = open_loop.Schedule(seconds=args.rate_seconds, warmup_s=args.rate_warmup,
                                          max_requests=args.rate_max_requests, seed=args.seed)
            figures.update(open_loop.rush(bench, args.rate, schedule, args.customers, args.rate_steps, workdir,
                                          baseline=not args.no_baselines, sold_out_requests=args.sold_out_requests))
            figures["sold_out_concurrency"] = args.concurrency
        elif args.mode == "rush":
            figures.update(harness.rush(bench, args.requests, args.seats, args.customers, workdir))
            figures.update(harness.ratios(figures))
        elif args.mode == "queue":
            figures.update(queue(bench, args, baseline_requests, workdir))
        elif args.mode == "scale":
            figures["scale"] = scale(bench, args, workdir)
        elif args.mode == "soak":
            figures.update(soak(bench, args, workdir))
        elif args.mode == "show-cancel":
            figures.update(show_cancel.run(bench, args.cancel_bookings, args.baseline_refunds, args.workers))
        elif args.mode == "checkins":
            figures.update(door.run(bench, args.tickets, args.batch_scans, args.page_requests, workdir,
                                    baselines=not args.no_baselines))
    return figures


def seated(bench, args, workdir) -> dict:
    """The seated rush: the general one first if asked (its figures prefixed general_), then the
    reserved show, its bare JSON baseline and the page alone (on the idle stack), then the rush."""
    figures: dict = {"seated": True}
    if args.with_general:
        general = harness.rush(bench, args.requests, args.seats, args.customers, workdir)
        figures.update({f"general_{key}": value for key, value in general.items()})
    room = {"admit_per_minute": args.admit_per_minute, "session_minutes": args.session_minutes} if args.queue else None
    show_id = harness.seated_show(bench, args.seats, args.max_per_customer, room)
    if not args.no_baselines:
        figures.update(harness.baseline_bare_json(bench, harness.fetch_page(bench, show_id), args.page_requests,
                                                  workdir))
        figures.update(harness.seat_page_alone(bench, show_id, args.page_requests, workdir))
    if args.queue:
        figures.update(harness.queued_rush(bench, show_id, args.customers, args.admit_per_minute,
                                           args.poll_interval, workdir, seated=True))
    else:
        figures.update(harness.seated_rush(bench, show_id, args.requests, args.customers, args.page_pollers,
                                           args.max_per_customer, workdir))
    return figures


def queue(bench, args, baseline_requests, workdir) -> dict:
    """The waiting room's run: the bare JSON baseline (a body of a queue entry's size) on the idle
    stack, then the joins, the polls and the admissions (harness.queue_bench)."""
    figures: dict = {}
    if not args.no_baselines:
        figures.update(harness.baseline_bare_json(bench, harness.entry_sample(), baseline_requests, workdir))
    figures.update(harness.queue_bench(bench, args.joins, args.admit_per_minute, args.session_minutes,
                                       args.admission_window, args.admission_warmup, workdir))
    figures.update(harness.queue_ratios(figures))
    return figures


def scale(bench, args, workdir) -> list[dict]:
    points = []
    for size in (int(s) for s in args.sizes.split(",")):
        seats = max(1, size // 4)
        result = harness.rush(bench, size, seats, args.customers, workdir)
        point = {key: result[key] for key in ("requests", "seats", "accepted_rps", "api_p50_ms", "api_p99_ms",
                                              "load_s", "settle_s", "settled_per_s", "reservations_per_s",
                                              "reserve_step_s", "reservations_e2e_per_s", "reserve_s",
                                              "oversold", "fairness_violations", "ledger_mismatches")}
        point["settle_s_per_1k"] = result["settle_s"] / size * 1000
        points.append(point)
        print(f"  {size:>7,} bookings: settled in {result['settle_s']:8.1f}s "
              f"({point['settle_s_per_1k']:.2f}s per 1k), accepted {result['accepted_rps']:.0f}/s, "
              f"p99 {result['api_p99_ms']:.0f}ms, oversold {result['oversold']}, "
              f"fairness {result['fairness_violations']}, ledger {result['ledger_mismatches']}")
    return points


def soak(bench, args, workdir) -> dict:
    names = ["api", *harness.WORKER_PROCESSES]

    def sample():
        return {name: round(bench.rss_mb(name), 1) for name in names}

    start = sample()
    series = [{"bookings": 0, **start}]
    done = 0
    checks = {"oversold": 0, "fairness_violations": 0, "ledger_mismatches": 0}
    while done < args.soak_bookings:
        size = min(args.soak_chunk, args.soak_bookings - done)
        result = harness.rush(bench, size, max(1, size // 4), args.customers, workdir)
        for key in checks:
            checks[key] += result[key]
        done += size
        series.append({"bookings": done, "settle_s": round(result["settle_s"], 1), **sample()})
        print(f"  {done:>8,} bookings: {series[-1]}")
    end = series[-1]
    workers_start = sum(start[n] for n in harness.WORKER_PROCESSES)
    workers_end = sum(end[n] for n in harness.WORKER_PROCESSES)
    return {"soak_bookings": done, "api_rss_start_mb": start["api"], "api_rss_end_mb": end["api"],
            "worker_rss_start_mb": workers_start, "worker_rss_end_mb": workers_end, "soak_series": series,
            **checks}


def main(argv=None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(name)s %(message)s")
    logging.getLogger("bench").setLevel(logging.INFO)
    started = time.monotonic()
    figures = run(args)
    figures["command"] = "python -m bench " + " ".join(argv if argv is not None else sys.argv[1:])
    figures["wall_s"] = round(time.monotonic() - started, 1)
    path = write_json(figures, args.mode, args.out)
    print(f"\nboxoffice bench: {figures['command']}  ({figures['wall_s']}s)")
    print_table(figures)
    if "open_loop" in figures:
        print_open_loop(figures)
    if args.mode == "soak":
        print(f"  API RSS {figures['api_rss_start_mb']} MB -> {figures['api_rss_end_mb']} MB, "
              f"workers {figures['worker_rss_start_mb']:.1f} MB -> {figures['worker_rss_end_mb']:.1f} MB")
    print(f"results: {path}")
    broken = [key for key in (*CORRECTNESS, *(f"general_{k}" for k in CORRECTNESS)) if figures.get(key)]
    if broken:
        print(f"CORRECTNESS FAILED: {', '.join(f'{k}={figures[k]}' for k in broken)}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
