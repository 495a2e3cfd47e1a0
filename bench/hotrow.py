"""Baseline (b): PostgreSQL hot-row throughput, in a process of its own.

`python -m bench.hotrow DATABASE_URL CONCURRENCY SECONDS RESULT.json`: CONCURRENCY connections,
each in autocommit running `UPDATE bench_hot_row SET remaining = remaining - 1 WHERE id = 1 AND
remaining >= 1` as fast as it can, all on one row: the cost of the seat counter alone.
"""
import json
import resource
import sys
import threading
import time

import psycopg

SETUP = [
    "CREATE TABLE IF NOT EXISTS bench_hot_row (id int PRIMARY KEY, remaining bigint NOT NULL)",
    "INSERT INTO bench_hot_row VALUES (1, 1000000000) ON CONFLICT (id) DO UPDATE SET remaining = 1000000000",
]
UPDATE = "UPDATE bench_hot_row SET remaining = remaining - 1 WHERE id = %s AND remaining >= 1"


def main(argv):
    url, concurrency, seconds, result_path = argv[0], int(argv[1]), float(argv[2]), argv[3]
    with psycopg.connect(url, autocommit=True) as setup:
        for statement in SETUP:
            setup.execute(statement)
    connections = [psycopg.connect(url, autocommit=True) for _ in range(concurrency)]
    counts = [0] * concurrency
    start = threading.Barrier(concurrency + 1)
    stop = threading.Event()

    def hammer(index):
        connection = connections[index]
        start.wait()
        while not stop.is_set():
            connection.execute(UPDATE, (1,))
            counts[index] += 1

    threads = [threading.Thread(target=hammer, args=(i,)) for i in range(concurrency)]
    for thread in threads:
        thread.start()
    start.wait()
    began = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - began
    for connection in connections:
        connection.close()
    usage = resource.getrusage(resource.RUSAGE_SELF)
    with open(result_path, "w") as file:
        json.dump({"updates": sum(counts), "elapsed_s": elapsed, "cpu_s": usage.ru_utime + usage.ru_stime}, file)


if __name__ == "__main__":
    main(sys.argv[1:])
