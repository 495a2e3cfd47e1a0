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

The waiting room (SPEC §9) adds two plans. `poll` (bench queue): GET /queue/{id} round-robin over
the given entries as fast as the connections go, until the harness's stop file appears. `queue`
(rush --queue): every item is one customer, who joins, polls until admitted and books once with
the Admission-Token; joins and polls use connections of their own, apart from the bookings'.
A plan's `id_statuses` names the answers whose body's id is kept (default 202; joins: 200, 201).

`open_loop` (rush --rate): an open loop instead of the closed one. Item i is sent at offsets[i]
seconds after the start, whether or not earlier requests were answered, over as many connections
as the requests in flight need (up to max_connections); its latency runs from that scheduled time,
not from when it went out, so a generator or pool that falls behind counts its own queueing.
"""
from __future__ import annotations

import asyncio
import json
import os
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

    async def pick(self, body: dict, token_index: int, started: float, errors: Counter) -> dict:
        """A pick request's body once the customer looked at the page: `pick` (how many seats)
        becomes `seats` (none if the page showed nothing free, or could not be read)."""
        body = dict(body)
        try:
            rows = await self.fetch(token_index, started)
        except (aiohttp.ClientError, asyncio.TimeoutError) as error:
            errors[f"page {type(error).__name__}"] += 1
            rows = None
        body["seats"] = self.choose(rows or [], body.pop("pick"))
        return body

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


def poisson_offsets(rate: float, seconds: float, max_requests: int, seed) -> list[float]:
    """Arrival times of a Poisson process at `rate` a second (exponential gaps from a seeded RNG),
    as offsets from the start, for `seconds` or `max_requests` arrivals, whichever comes first."""
    rng = random.Random(seed)
    offsets: list[float] = []
    at = rng.expovariate(rate)
    while at < seconds and len(offsets) < max_requests:
        offsets.append(at)
        at += rng.expovariate(rate)
    return offsets


async def dispatch(offsets: list[float], send, start: float, clock=time.perf_counter, sleep=asyncio.sleep) -> None:
    """Start send(i, due) as a task of its own at due = start + offsets[i] on `clock`, without
    waiting for earlier sends to be answered. Each due time is reckoned from the start, never from
    the previous send: a send that goes out late (a busy loop) makes the ones due meanwhile go at
    once, and shifts none after them."""
    tasks = []
    for index, offset in enumerate(offsets):
        due = start + offset
        delay = due - clock()
        if delay > 0:
            await sleep(delay)
        tasks.append(asyncio.ensure_future(send(index, due)))
    await asyncio.gather(*tasks)


async def _open_loop(plan: dict) -> dict:
    """The rush as an open loop (`open_loop`: offsets, max_connections): see the module's doc.
    Besides the rush's per-item figures: how late each request went out after its due time
    (lag_ms) and the most requests in flight at once (each needs a connection of its own)."""
    url = plan["base_url"].rstrip("/") + plan["path"]
    tokens = plan.get("tokens") or []
    items = plan["items"]
    open_loop = plan["open_loop"]
    offsets = open_loop["offsets"]
    n = len(items)
    latencies, statuses, sent, answered, lags = [0.0] * n, [0] * n, [0.0] * n, [0.0] * n, [0.0] * n
    ids: list[str | None] = [None] * n
    errors: Counter = Counter()
    headers = [{"Authorization": f"Bearer {t}"} for t in tokens]
    in_flight = most_in_flight = 0
    limit = int(open_loop.get("max_connections", 2_000))
    # Idle connections are let go before gunicorn's keep-alive (5 s) closes them: at a low rate a
    # connection is idle long, and one reused just as the server closes it would fail the request.
    connector = aiohttp.TCPConnector(limit=limit, limit_per_host=limit, keepalive_timeout=4)
    timeout = aiohttp.ClientTimeout(total=plan.get("timeout_s", 60))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def send(index: int, due: float):
            nonlocal in_flight, most_in_flight
            token_index, body = items[index]
            began = time.perf_counter()
            in_flight += 1
            most_in_flight = max(most_in_flight, in_flight)
            try:
                async with session.post(url, json=body,
                                        headers=headers[token_index] if token_index >= 0 else None) as response:
                    answer = await response.read()
                    statuses[index] = response.status
                    if response.status == 202:
                        ids[index] = json.loads(answer).get("id")
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                errors[type(error).__name__] += 1
                statuses[index] = -1
            in_flight -= 1
            ended = time.perf_counter()
            latencies[index] = (ended - due) * 1000
            lags[index] = (began - due) * 1000
            sent[index], answered[index] = began - started, ended - started

        started_wall = time.time()
        started = time.perf_counter()
        await dispatch(offsets, send, started)
        elapsed = time.perf_counter() - started
    return {"started_at": started_wall, "finished_at": started_wall + elapsed, "elapsed_s": elapsed,
            "latencies_ms": latencies, "sent_s": sent, "answered_s": answered, "ids": ids,
            "statuses": dict(Counter(str(s) for s in statuses)), "errors": dict(errors),
            "lag_ms": lags, "most_in_flight": most_in_flight,
            "first_409_sent_s": min((sent[i] for i in range(n) if statuses[i] == 409), default=None),
            "last_202_sent_s": max((sent[i] for i in range(n) if statuses[i] == 202), default=None)}


async def _run(plan: dict) -> dict:
    if plan.get("poll"):
        return await _poll(plan)
    if plan.get("queue"):
        return await _queue_rush(plan)
    if plan.get("open_loop"):
        return await _open_loop(plan)
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
    id_statuses = set(plan.get("id_statuses", [202]))  # the answers whose body's id is kept
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
                    body = await pages.pick(body, token_index, started, errors)
                    if not body["seats"]:  # nothing free on the page: this customer books nothing
                        statuses[index], latencies[index] = SKIPPED, -1.0
                        continue
                began = time.perf_counter()
                try:
                    async with session.request(method, url, json=body,
                                               headers=headers[token_index] if token_index >= 0 else None) as response:
                        answer = await response.read()
                        statuses[index] = response.status
                        if response.status in id_statuses:
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


class _Stop:
    """The harness's signal to stop: its stop file appears (or max_s passes)."""

    def __init__(self, path: str | None, max_s: float | None):
        self.path, self.max_s, self.set = path, max_s, False

    async def watch(self, started: float) -> None:
        while not self.set:
            if (self.path and os.path.exists(self.path)) or (self.max_s and time.perf_counter() - started >= self.max_s):
                self.set = True
                return
            await asyncio.sleep(0.1)


async def _poll(plan: dict) -> dict:
    """The waiting customers' status polls (`poll`: entries [token index, entry id], stop_file,
    max_s): GET /queue/{id} round-robin over the entries, as fast as `concurrency` connections
    go, until stopped. Records every latency and status, the states answered, and the distinct
    admitted_until each entry showed while ADMITTED (a second one would be a second admission)."""
    base = plan["base_url"].rstrip("/")
    poll = plan["poll"]
    entries = poll["entries"]
    headers = [{"Authorization": f"Bearer {t}"} for t in plan["tokens"]]
    concurrency = int(plan["concurrency"])
    latencies: list[float] = []
    statuses: Counter = Counter()
    states: Counter = Counter()
    errors: Counter = Counter()
    admitted_seen: dict[str, set] = {}
    stop = _Stop(poll.get("stop_file"), poll.get("max_s"))
    turn = 0
    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)
    timeout = aiohttp.ClientTimeout(total=plan.get("timeout_s", 60))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one_connection():
            nonlocal turn
            while not stop.set:
                token_index, entry_id = entries[turn % len(entries)]
                turn += 1
                began = time.perf_counter()
                try:
                    async with session.get(f"{base}/queue/{entry_id}", headers=headers[token_index]) as response:
                        body = await response.read()
                        status = response.status
                except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                    errors[type(error).__name__] += 1
                    status, body = -1, b""
                latencies.append((time.perf_counter() - began) * 1000)
                statuses[str(status)] += 1
                if status == 200:
                    answer = json.loads(body)
                    states[answer["state"]] += 1
                    if answer["state"] == "ADMITTED":
                        admitted_seen.setdefault(entry_id, set()).add(answer["admitted_until"])

        started_wall = time.time()
        started = time.perf_counter()
        await asyncio.gather(stop.watch(started), *(one_connection() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {"started_at": started_wall, "finished_at": started_wall + elapsed, "elapsed_s": elapsed,
            "latencies_ms": latencies, "statuses": dict(statuses), "states": dict(states), "errors": dict(errors),
            "admitted_seen": {entry_id: sorted(seen) for entry_id, seen in admitted_seen.items()}}


NOT_JOINED = -2  # the status of a booking not sent: its customer's join was refused
NOT_ADMITTED = -3  # ... its customer was still waiting when the run stopped


async def _queue_rush(plan: dict) -> dict:
    """The rush behind a waiting room (`queue`: join_path, poll_interval_s, stop_file, max_s):
    every item is one customer, who joins, polls GET /queue/{id} every poll_interval_s (the first
    poll at a random point of the first interval) until ADMITTED, then sends its booking with the
    Admission-Token, once. Joins and polls go over `concurrency` connections of their own, the
    bookings over `concurrency` others, so a booking's latency is the API's, not a wait for a
    connection the polls hold. The per-item figures are the bookings' (as in a rush); an item
    whose customer was not admitted has NOT_JOINED or NOT_ADMITTED and latency -1."""
    base = plan["base_url"].rstrip("/")
    queue = plan["queue"]
    items = plan["items"]
    tokens = plan["tokens"]
    concurrency = int(plan["concurrency"])
    interval = float(queue.get("poll_interval_s", 5.0))
    rng = random.Random(plan.get("seed", 0))
    n = len(items)
    latencies, statuses, sent, answered = [0.0] * n, [0] * n, [0.0] * n, [0.0] * n
    ids: list[str | None] = [None] * n
    waited: list[float] = []
    errors: Counter = Counter()
    join_statuses: Counter = Counter()
    poll_statuses: Counter = Counter()
    poll_latencies: list[float] = []
    admitted_seen: dict[str, set] = {}
    joins_answered: list[float] = []
    stop = _Stop(queue.get("stop_file"), queue.get("max_s"))
    timeout = aiohttp.ClientTimeout(total=plan.get("timeout_s", 60))
    seat_page = plan.get("seat_page")

    def connector():
        return aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency)

    async with aiohttp.ClientSession(connector=connector(), timeout=timeout) as waiting, \
            aiohttp.ClientSession(connector=connector(), timeout=timeout) as booking:
        pages = SeatPages(booking, base + seat_page["path"], plan.get("seed", 0)) if seat_page else None

        async def call(method, url, headers, latencies_of=None):
            began = time.perf_counter()
            try:
                async with waiting.request(method, url, headers=headers) as response:
                    body = await response.read()
                    status = response.status
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                errors[f"queue {type(error).__name__}"] += 1
                return -1, None
            if latencies_of is not None:
                latencies_of.append((time.perf_counter() - began) * 1000)
            return status, json.loads(body) if 200 <= status < 300 else None

        async def customer(index: int, first_wait: float):
            token_index, body = items[index]
            auth = {"Authorization": f"Bearer {tokens[token_index]}"}
            status, entry = await call("POST", base + queue["join_path"], auth)
            join_statuses[str(status)] += 1
            joins_answered.append(time.perf_counter() - started)
            if entry is None:
                statuses[index], latencies[index] = NOT_JOINED, -1.0
                return
            joined = time.perf_counter()
            wait = first_wait
            while entry["state"] != "ADMITTED" and entry["state"] in ("WAITING",) and not stop.set:
                await asyncio.sleep(wait)
                wait = interval
                if stop.set:
                    break
                status, answer = await call("GET", f"{base}/queue/{entry['id']}", auth, poll_latencies)
                poll_statuses[str(status)] += 1
                if answer is not None:
                    entry = answer
            if entry["state"] != "ADMITTED":
                statuses[index], latencies[index] = NOT_ADMITTED, -1.0
                return
            waited.append(time.perf_counter() - joined)
            admitted_seen.setdefault(entry["id"], set()).add(entry["admitted_until"])
            if "pick" in body:  # look at the page, then pick from it (as in the seated rush)
                body = await pages.pick(body, token_index, started, errors)
                if not body["seats"]:
                    statuses[index], latencies[index] = SKIPPED, -1.0
                    return
            headers = {**auth, "Admission-Token": entry["admission_token"]}
            began = time.perf_counter()
            try:
                async with booking.post(base + "/bookings", json=body, headers=headers) as response:
                    answer = await response.read()
                    statuses[index] = response.status
                    if response.status == 202:
                        ids[index] = json.loads(answer).get("id")
            except (aiohttp.ClientError, asyncio.TimeoutError) as error:
                errors[type(error).__name__] += 1
                statuses[index] = -1
            ended = time.perf_counter()
            latencies[index] = (ended - began) * 1000
            sent[index], answered[index] = began - started, ended - started

        async def customers():
            await asyncio.gather(*(customer(i, rng.uniform(0, interval)) for i in range(n)))
            stop.set = True

        started_wall = time.time()
        started = time.perf_counter()
        await asyncio.gather(stop.watch(started), customers())
        elapsed = time.perf_counter() - started
    result = {
        "started_at": started_wall, "finished_at": started_wall + elapsed, "elapsed_s": elapsed,
        "latencies_ms": latencies, "sent_s": sent, "answered_s": answered, "ids": ids,
        "statuses": dict(Counter(str(s) for s in statuses)), "errors": dict(errors),
        "queue": {"join_statuses": dict(join_statuses), "poll_statuses": dict(poll_statuses),
                  "joins_done_s": max(joins_answered, default=0.0),
                  "poll_latencies_ms": poll_latencies, "waited_s": waited,
                  "admitted_seen": {entry_id: sorted(seen) for entry_id, seen in admitted_seen.items()}},
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
