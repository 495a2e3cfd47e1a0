"""CPU per POST /bookings, in process: `python -m bench.profile_request [--requests N] [--profile]`.

Runs the real app (Flask test client, no HTTP server) against the PostgreSQL and Redis named by
DATABASE_URL and REDIS_URL, in a database of its own created for the run and dropped after. It
prints the process CPU time per request; with --profile, the cProfile functions by cumulative
CPU time. Each booking asks for a reservation run, published to REDIS_URL: point it at a Redis
database no worker reads. The rush (`python -m bench rush`) says how fast the whole stack is;
this says where one request's CPU goes. With --sold-out each request is refused at once (409
sold_out) from the show's fact, set for the run: what a refusal costs. With --seats N the show is reserved, on the seated rush's
map of N seats, and each request asks for one seat best available in a category (SPEC §8).
"""
from __future__ import annotations

import argparse
import cProfile
import os
import pstats
import secrets
import sys
import tempfile
import time
from contextlib import contextmanager
from datetime import datetime, timedelta, timezone

import psycopg
from sqlalchemy.engine import make_url


def _plain(url: str) -> str:
    return make_url(url).set(drivername="postgresql").render_as_string(hide_password=False)


def main(argv: list[str]) -> None:
    parser = argparse.ArgumentParser(prog="python -m bench.profile_request", description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=1000)
    parser.add_argument("--profile", action="store_true", help="print the cProfile (CPU time) of the requests")
    parser.add_argument("--top", type=int, default=40)
    parser.add_argument("--seats", type=int, default=0, help="a reserved show of this many seats (0: general)")
    parser.add_argument("--sold-out", action="store_true",
                        help="each request refused at once: the show's sold-out fact set (kept set) in Redis")
    args = parser.parse_args(argv)
    with scratch_database():
        per_request = run(args)
    print(f"{args.requests} requests: {per_request['cpu_ms']:.2f} ms CPU and {per_request['wall_ms']:.2f} ms wall each")


@contextmanager
def scratch_database():
    """Point DATABASE_URL at a new database on its server for the block, and drop it after."""
    server, redis_url = os.environ.get("DATABASE_URL"), os.environ.get("REDIS_URL")
    if not server or not redis_url:
        sys.exit("set DATABASE_URL (a server where a database may be created) and REDIS_URL")
    name = f"boxoffice_profile_{secrets.token_hex(4)}"
    with psycopg.connect(_plain(server), autocommit=True) as connection:
        connection.execute(f'CREATE DATABASE "{name}"')
    os.environ.update({
        "DATABASE_URL": make_url(server).set(database=name).render_as_string(hide_password=False),
        "RATE_LIMIT_BOOKINGS": "100000000/minute",
        "BOXOFFICE_INSTANCE": tempfile.mkdtemp(prefix="boxoffice-profile-"),
        "LOG_LEVEL": os.environ.get("LOG_LEVEL", "WARNING"),
    })
    try:
        yield
    finally:
        with psycopg.connect(_plain(server), autocommit=True) as connection:
            connection.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def run(args) -> dict:
    from flask_jwt_extended import create_access_token
    from flask_migrate import upgrade

    from models import db
    from models.shows import Show
    from models.users import Role, User
    from web import create_app

    app = create_app()
    with app.app_context():
        upgrade()
        customer = User(email="profile@example.com", name="profile", password_hash="-", role=Role.CUSTOMER)
        show = Show(title="profile", venue="here", starts_at=datetime.now(timezone.utc) + timedelta(days=3),
                    price=1000, capacity=10 * args.requests + 100)
        db.session.add_all([customer] if args.seats else [customer, show])
        db.session.commit()
        token = create_access_token(identity=customer.id, additional_claims={"role": Role.CUSTOMER})
        if args.seats:  # nothing decides these bookings: the seats need not suffice
            from bench.harness import add_seated_show
            show_id = add_seated_show(args.seats)
        else:
            show_id = show.id
    client = app.test_client()
    headers = {"Authorization": f"Bearer {token}"}
    body = {"show_id": show_id, "qty": 1, "payment_method": "tok_ok", **({"category": "S"} if args.seats else {})}
    for _ in range(50):  # warm up: connections, caches, compiled statements
        client.post("/bookings", json=body, headers=headers)

    facts = None
    if args.sold_out:
        from shared_state.redis_clients import redis_client
        from shared_state.sold_out import Fact, SoldOutFacts
        facts = SoldOutFacts(redis_client(os.environ["REDIS_URL"]))
        wanted = Fact({"S"} if args.seats else {None}, False)
        facts.publish(show_id, wanted, facts.fence(show_id) or "")
    profiler = cProfile.Profile(time.process_time) if args.profile else None
    cpu, wall = time.process_time(), time.perf_counter()
    if profiler:
        profiler.enable()
    for index in range(args.requests):
        if facts is not None and index % 100 == 0:  # the fact lives a second (its TTL): kept set
            facts.publish(show_id, wanted, facts.fence(show_id) or "")
        response = client.post("/bookings", json=body, headers=headers)
        assert response.status_code == (409 if facts else 202), response.get_data(as_text=True)
    if profiler:
        profiler.disable()
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    if profiler:
        pstats.Stats(profiler).sort_stats("cumulative").print_stats(args.top)
    return {"cpu_ms": 1000 * cpu / args.requests, "wall_ms": 1000 * wall / args.requests}


if __name__ == "__main__":
    main(sys.argv[1:])
