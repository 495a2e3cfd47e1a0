"""Seat decisions per second inside one reservation run, by batch size, in process:
`python -m bench.profile_reservation [--batches 1,10,100,500] [--profile]`.

The rush measures the reservation step while the API, the load generator and PostgreSQL share
the cores, and with whatever batch the arrival rate makes. This measures the step alone: for
each batch size it records that many PENDING bookings (as POST /bookings does), then times
the reservation use case (services/reservation.py `reserve`) deciding them, the commit and the
publish of the next steps included.
With --seats N each batch size gets a reserved show on the seated rush's map of N seats
(bench/harness.py seat_map_body) instead, and its bookings ask for best available (qty 1-2, the
rush's category weights): the seated step, whose every run reads and marks the show's seats.
Same setup as bench.profile_request: DATABASE_URL and REDIS_URL, a database of its own. The runs
publish what they would (payments.charge messages) to REDIS_URL: point it at a Redis
database no worker reads.
"""
from __future__ import annotations

import argparse
import cProfile
import pstats
import random
import sys
import time
from datetime import datetime, timedelta, timezone

from bench.profile_request import scratch_database


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_reservation", description=__doc__.splitlines()[0])
    parser.add_argument("--batches", default="1,10,100,500", help="pending bookings per run, comma-separated")
    parser.add_argument("--bookings", type=int, default=2000, help="bookings decided per batch size (at least 5 runs)")
    parser.add_argument("--profile", action="store_true", help="print the cProfile (CPU time) of the runs")
    parser.add_argument("--top", type=int, default=30)
    parser.add_argument("--seats", type=int, default=0, help="a reserved show of this many seats (0: general)")
    args = parser.parse_args(argv)
    with scratch_database():
        for row in run(args):
            print(f"batch {row['batch']:>4}: {row['runs']} runs, {row['wall_ms']:.2f} ms wall and "
                  f"{row['cpu_ms']:.2f} ms CPU a run, {row['decisions_per_s']:,.0f} decisions/s")


def run(args) -> list[dict]:
    from flask_migrate import upgrade

    from models import db
    from models.bookings import record_booking
    from models.shows import Show
    from models.users import Role, User
    from services.reservation import reserve
    from web import create_app

    app = create_app()
    rows = []
    with app.app_context():
        upgrade()
        customer = User(email="profile@example.com", name="profile", password_hash="-", role=Role.CUSTOMER)
        db.session.add(customer)
        db.session.commit()
        for batch in (int(each) for each in args.batches.split(",")):
            runs = max(5, args.bookings // batch)
            if args.seats:
                show = reserved_show(args.seats)
            else:
                show = Show(title=f"profile {batch}", venue="here", price=1000, capacity=batch * runs,
                            starts_at=datetime.now(timezone.utc) + timedelta(days=3))
                db.session.add(show)
                db.session.commit()
            ask = seated_asks(show) if args.seats else None
            profiler = cProfile.Profile(time.process_time) if args.profile else None
            wall = cpu = 0.0
            for _ in range(runs):
                for _ in range(batch):
                    if ask:
                        qty, category, amount = next(ask)
                        record_booking(customer.id, show.id, qty, "tok_ok", category=category, amount=amount)
                    else:
                        record_booking(customer.id, show.id, 1, "tok_ok")
                db.session.commit()
                cpu_start, wall_start = time.process_time(), time.perf_counter()
                if profiler:
                    profiler.enable()
                decided = reserve(show.id)
                if profiler:
                    profiler.disable()
                cpu += time.process_time() - cpu_start
                wall += time.perf_counter() - wall_start
                assert decided == f"decided {batch}", decided
            rows.append({"batch": batch, "runs": runs, "wall_ms": 1000 * wall / runs, "cpu_ms": 1000 * cpu / runs,
                         "decisions_per_s": batch * runs / wall})
            if profiler:
                print(f"-- batch {batch}")
                pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
    return rows


def reserved_show(seats: int):
    from bench.harness import add_seated_show
    from models import db
    from models.shows import Show
    return db.session.get(Show, add_seated_show(seats))


def seated_asks(show):
    """(qty, category, amount) of best-available asks, forever, by the rush's category weights."""
    from bench.harness import CATEGORIES
    rng = random.Random(6)
    names, weights = [name for name, *_ in CATEGORIES], [weight for _, _, weight, _ in CATEGORIES]
    prices = {name: price for name, _, _, price in CATEGORIES}
    while True:
        qty, category = rng.randint(1, 2), rng.choices(names, weights)[0]
        yield qty, category, qty * prices[category]


if __name__ == "__main__":
    main(sys.argv[1:])
