"""The load generator: N HTTP requests over C keep-alive connections, in a process of its own.

`python -m bench.load PLAN.json RESULT.json`. The plan names a base URL, the concurrency, the
request bodies and the bearer tokens; the result holds every latency, the status counts, the
wall-clock window (time.time(), so the harness can line it up with what it saw in the database)
and the CPU time this process used, so a run can show the load generator was not the bottleneck.
Per request it also holds when it was sent and answered (seconds after started_at) and the id in a
202 answer's body: the real-time arrival order that the fairness check (SPEC §4.6) is judged by.

Its own process (and asyncio with aiohttp in it) keeps the generator's CPU off the harness and
cheap per request: on a 2-core machine a thread-per-connection client would eat the CPU it measures.
"""
from __future__ import annotations

import asyncio
import json
import resource
import sys
import time
from collections import Counter

import aiohttp


async def _run(plan: dict) -> dict:
    url = plan["base_url"].rstrip("/") + plan["path"]
    tokens = plan.get("tokens") or []
    items = plan["items"]  # [token_index or -1, json body]
    concurrency = int(plan["concurrency"])
    latencies = [0.0] * len(items)
    statuses: list[int] = [0] * len(items)
    sent = [0.0] * len(items)
    answered = [0.0] * len(items)
    ids: list[str | None] = [None] * len(items)
    errors: Counter = Counter()
    headers = [{"Authorization": f"Bearer {t}"} for t in tokens]
    next_index = 0

    connector = aiohttp.TCPConnector(limit=concurrency, limit_per_host=concurrency, force_close=False)
    timeout = aiohttp.ClientTimeout(total=plan.get("timeout_s", 60))
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        async def one_connection():
            nonlocal next_index
            while next_index < len(items):
                index = next_index
                next_index += 1
                token_index, body = items[index]
                began = time.perf_counter()
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
                ended = time.perf_counter()
                latencies[index] = (ended - began) * 1000
                sent[index] = began - started
                answered[index] = ended - started

        started_wall = time.time()
        started = time.perf_counter()
        await asyncio.gather(*(one_connection() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
    return {
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
