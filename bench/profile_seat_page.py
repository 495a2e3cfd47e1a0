"""CPU per GET /shows/{id}/seats, in process: `python -m bench.profile_seat_page [--seats N]
[--requests N] [--change-every K] [--profile]`.

The real app (Flask test client, no HTTP server) against DATABASE_URL and REDIS_URL, in a
database of its own created for the run and dropped after (bench.profile_request's). A reserved
show on the seated rush's map (bench/harness.py seat_map_body); every K requests a seat is held
(a new version, so the next answer is rendered anew, as in a rush), never with K = 0. It prints
the CPU per answer; with --profile, the cProfile functions by cumulative CPU time.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import sys
import time

from bench.profile_request import scratch_database


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_seat_page", description=__doc__.splitlines()[0])
    parser.add_argument("--seats", type=int, default=5000)
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--change-every", type=int, default=0, help="hold a seat every K requests (0: never)")
    parser.add_argument("--profile", action="store_true", help="print the cProfile (CPU time) of the requests")
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args(argv)
    with scratch_database():
        per_request = run(args)
    print(f"{args.requests} pages of {args.seats} seats ({per_request['bytes']:,} bytes), a change every "
          f"{args.change_every or 'never'}: {per_request['cpu_ms']:.2f} ms CPU and {per_request['wall_ms']:.2f} ms wall each")


def run(args) -> dict:
    from flask_migrate import upgrade

    from bench.harness import add_seated_show
    from models import db
    from models.seats import flush_seat_states, hold_seats, load_seat_map
    from models.shows import get_show
    from web import create_app

    app = create_app()
    with app.app_context():
        upgrade()
        show_id = add_seated_show(args.seats)
        seat_map_id = get_show(show_id).seat_map_id
        seat_ids = [seat.id for seat in load_seat_map(seat_map_id).seats]
    client = app.test_client()
    path = f"/shows/{show_id}/seats"
    size = 0
    for _ in range(20):  # warm up: connections, caches
        size = len(client.get(path).data)

    def hold_one(index: int) -> None:
        # Straight to the seat rows (blocked: no booking needed); the page's read model follows.
        with app.app_context():
            hold_seats(show_id, load_seat_map(seat_map_id), {None: (seat_ids[index],)})
            flush_seat_states(db.session)
            db.session.commit()

    profiler = cProfile.Profile(time.process_time) if args.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for n in range(args.requests):
        if args.change_every and n % args.change_every == 0:
            hold_one(n // args.change_every % len(seat_ids))
        response = client.get(path)
        assert response.status_code == 200, response.status_code
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
    return {"cpu_ms": 1000 * cpu / args.requests, "wall_ms": 1000 * wall / args.requests, "bytes": size}


if __name__ == "__main__":
    main(sys.argv[1:])
