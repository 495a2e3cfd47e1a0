"""The load generator: N HTTP requests over C keep-alive connections, in a process of its own.

`python -m bench.load PLAN.json RESULT.json`. The plan names a base URL, the concurrency, the
request bodies and the bearer tokens; the result holds every latency, the status counts, the
wall-clock window (time.time(), so the harness can line it up with what it saw in the database)
and the CPU time this process used, so a run can show the load generator was not the bottleneck.
Per request it also holds when it was sent and answered (seconds after started_at) and the id in a
202 answer's body: the real-time arrival order that the fairness check (SPEC §4.6) is judged by.

Its own process (and asyncio with aiohttp in it) keeps the generator's CPU off the harness and
cheap per request: on a 2-core machine a thread-per-connection client would eat the CPU it measures.

A plan may say `"method": "GET"` (a page, the body unused). A plan with `seat_page` (the seated
rush, SPEC §8) drives customers who pick their seats: an item whose body has `pick: n` first GETs
the seat page with If-None-Match from that customer's last copy, then books n seats side by side
(or as near as the row allows) among those its copy shows AVAILABLE, front rows likelier, as people
do; so picks collide as real ones do. `seat_page.pollers` more connections poll the page (each with
its own last ETag, as an open page refreshing) while the bookings run. Every page answer is
recorded apart from the bookings' figures.
"""
from __future__ import annotations

import asyncio
import json
import random
import resource
import sys
import time
from collections import Counter, OrderedDict

import aiohttp


SKIPPED = 0  # the status of a pick not sent: the customer's page showed no free seat
PAGES_PARSED = 256  # page copies (by ETag) the generator keeps parsed; customers share them


class SeatPages:
    """The seat page as customers see it: each customer's last ETag, and each version parsed
    once (into rows of AVAILABLE seat ids), shared by every customer holding that version."""

    def __init__(self, session, url: str, seed: int):
        self.session, self.url = session, url
        self.rng = random.Random(seed)
        self.etag_of: dict[int, str] = {}
        self.rows_of: OrderedDict[str, list[list[str]]] = OrderedDict()
        self.latencies: list[float] = []
        self.answered: list[float] = []
        self.statuses: Counter = Counter()
        self.picks_short = 0  # picks that found fewer free seats side by side than they wanted

    async def fetch(self, viewer: int, started: float) -> list[list[str]] | None:
        etag = self.etag_of.get(viewer)
        headers = {"If-None-Match": etag} if etag in self.rows_of else None
        began = time.perf_counter()
        async with self.session.get(self.url, headers=headers) as response:
            body = await response.read()
            status, new_etag = response.status, response.headers.get("ETag")
        ended = time.perf_counter()
        self.latencies.append((ended - began) * 1000)
        self.answered.append(ended - started)
        self.statuses[str(status)] += 1
        if status == 304:
            self.rows_of.move_to_end(etag)
            return self.rows_of[etag]
        if status != 200:
            return None
        if new_etag not in self.rows_of:
            self.rows_of[new_etag] = _available_rows(json.loads(body)["seats"])
            if len(self.rows_of) > PAGES_PARSED:
                self.rows_of.popitem(last=False)
        self.etag_of[viewer] = new_etag
        return self.rows_of[new_etag]

    def choose(self, rows: list[list[str]], n: int) -> list[str]:
        """n free seats side by side in one row if a row has them (front rows likelier), else
        the most that row has together."""
        candidates = [row for row in rows if row]
        if not candidates:
            return []
        for _ in range(8):
            row = candidates[int(len(candidates) * self.rng.random() ** 2)]  # quality order: front first
            if len(row) >= n:
                break
        start = self.rng.randrange(max(1, len(row) - n + 1))
        chosen = row[start:start + n]
        self.picks_short += len(chosen) < n
        return chosen


def _available_rows(seats: list[dict]) -> list[list[str]]:
    """The page's AVAILABLE seats as runs of neighbours (consecutive numbers in one row)."""
    rows: list[list[str]] = []
    last = None
    for seat in seats:
        if seat["status"] != "AVAILABLE":
            last = None
            continue
        place = (seat["section"], seat["row"], seat["number"])
        if last is None or place[:2] != last[:2] or place[2] != last[2] + 1:
            rows.append([])
        rows[-1].append(seat["id"])
        last = place
    return rows


async def _run(plan: dict) -> dict:
    url = plan["base_url"].rstrip("/") + plan["path"]
    method = plan.get("method", "POST")
    tokens = plan.get("tokens") or []
    items = plan["items"]  # [token_index or -1, json body]
    concurrency = int(plan["concurrency"])
    seat_page = plan.get("seat_page")
    pollers = int(seat_page.get("pollers", 0)) if seat_page else 0
    latencies = [0.0] * len(items)
    statuses: list[int] = [0] * len(items)
    sent = [0.0] * len(items)
    answered = [0.0] * len(items)
    ids: list[str | None] = [None] * len(items)
    errors: Counter = Counter()
    headers = [{"Authorization": f"Bearer {t}"} for t in tokens]
    next_index = 0
    bookings_done = False

    connector = aiohttp.TCPConnector(limit=concurrency + pollers, limit_per_host=concurrency + pollers,
                                     force_close=False)
    timeout = aiohttp.ClientTimeout(total=plan.get("timeout_s", 60))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        pages = SeatPages(session, plan["base_url"].rstrip("/") + seat_page["path"], plan.get("seed", 0)) \
            if seat_page else None

        async def one_connection():
            nonlocal next_index
            while next_index < len(items):
                index = next_index
                next_index += 1
                token_index, body = items[index]
                if body is not None and "pick" in body:  # look at the page, then pick from it
                    body = dict(body)
                    try:
                        rows = await pages.fetch(token_index, started)
                    except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                        errors[f"page {type(error).__name__}"] += 1
                        rows = None
                    body["seats"] = pages.choose(rows or [], body.pop("pick"))
                    if not body["seats"]:  # nothing free on the page: this customer books nothing
                        statuses[index], latencies[index] = SKIPPED, -1.0
                        continue
                began = time.perf_counter()
                try:
                    async with session.request(method, url, json=body,
                                               headers=headers[token_index] if token_index >= 0 else None) as response:
                        answer = await response.read()
                        statuses[index] = response.status
                        if response.status == 202:
                            ids[index] = json.loads(answer).get("id")
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    errors[type(error).__name__] += 1
                    statuses[index] = -1
                ended = time.perf_counter()
                latencies[index] = (ended - began) * 1000
                sent[index] = began - started
                answered[index] = ended - started

        async def one_poller(viewer: int):
            while not bookings_done:
                try:
                    await pages.fetch(viewer, started)
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    errors[f"page {type(error).__name__}"] += 1

        async def bookings():
            nonlocal bookings_done
            await asyncio.gather(*(one_connection() for _ in range(concurrency)))
            bookings_done = True

        started_wall = time.time()
        started = time.perf_counter()
        await asyncio.gather(bookings(), *(one_poller(-1 - n) for n in range(pollers)))
        elapsed = time.perf_counter() - started
    result = {
        "started_at": started_wall,
        "finished_at": started_wall + elapsed,
        "elapsed_s": elapsed,
        "latencies_ms": latencies,
        "sent_s": sent,
        "answered_s": answered,
        "ids": ids,
        "statuses": dict(Counter(str(s) for s in statuses)),
        "errors": dict(errors),
    }
    if pages:
        result["seat_page"] = {"latencies_ms": pages.latencies, "answered_s": pages.answered,
                               "statuses": dict(pages.statuses), "picks_short": pages.picks_short,
                               "versions_parsed": len(pages.rows_of)}
    return result


def main(argv: list[str]) -> None:
    plan_path, result_path = argv
    with open(plan_path) as file:
        plan = json.load(file)
    result = asyncio.run(_run(plan))
    usage = resource.getrusage(resource.RUSAGE_SELF)
    result["cpu_s"] = usage.ru_utime + usage.ru_stime
    with open(result_path, "w") as file:
        json.dump(result, file)


if __name__ == "__main__":
    main(sys.argv[1:])
