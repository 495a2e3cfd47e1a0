"""Command line: `python -m stack up | servers | list`.

    python -m stack up [--data-dir var] [--api-port 8000] [--workers N] [--no-flower]
        the whole stack, supervised, until Ctrl-C
    python -m stack servers [--data-dir var]
        only PostgreSQL and Redis, in the foreground (benchmarks, manual tests)
    python -m stack list
        the stack's processes and their command lines
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import signal
import sys
import threading
from pathlib import Path

from .embedded import ServerError, servers_from_env_or_embedded
from .processes import MAIL_SINK_PORT, WORKER_METRICS_PORTS, stack_processes
from .supervisor import Stack, StackError, mask_password

log = logging.getLogger("stack")


class _Shutdown(Exception):
    """SIGINT or SIGTERM arrived."""


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="[stack] %(message)s", stream=sys.stderr)
    return args.command(args)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m stack", description="Run the boxoffice stack locally.")
    commands = parser.add_subparsers(required=True, metavar="COMMAND")

    up = commands.add_parser("up", help="start the whole stack and supervise it until Ctrl-C")
    _server_options(up)
    up.add_argument("--api-port", type=int, default=8000)
    up.add_argument("--workers", type=int, default=2, metavar="N", help="concurrency of each Celery worker")
    up.add_argument("--no-flower", action="store_true", help="do not start the Flower dashboard")
    up.set_defaults(command=_up)

    servers = commands.add_parser("servers", help="start only PostgreSQL and Redis in the foreground")
    _server_options(servers)
    servers.set_defaults(command=_servers)

    listing = commands.add_parser("list", help="print the stack's processes and command lines")
    listing.add_argument("--data-dir", default="var")
    listing.set_defaults(command=_list)
    return parser


def _server_options(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data-dir", default="var", help="where data and logs live (default: var)")
    parser.add_argument("--pg-port", type=int, default=5433, help="embedded PostgreSQL port")
    parser.add_argument("--redis-port", type=int, default=6380, help="embedded Redis port")


def _up(args: argparse.Namespace) -> int:
    stack = Stack(
        args.data_dir,
        api_port=args.api_port,
        workers=args.workers,
        flower=not args.no_flower,
        pg_port=args.pg_port,
        redis_port=args.redis_port,
        detach=True,  # stopped explicitly below, after the processes that use them
        metrics_ports=WORKER_METRICS_PORTS,  # the documented ones; other stacks pick free ports
        mail_port=MAIL_SINK_PORT,
    )
    _raise_on_signals()
    try:
        stack.start()
        _print_table(stack)
        threading.Event().wait()  # until a signal raises _Shutdown
    except _Shutdown:
        pass
    except StackError as error:
        log.error("%s", error)
        return 1
    finally:
        _force_on_signals(stack)
        log.info("stopping (Ctrl-C again to kill at once)")
        stack.stop()
        log.info("stopped")
    return 0


def _servers(args: argparse.Namespace) -> int:
    _raise_on_signals()
    stop = lambda: None  # noqa: E731
    try:
        database_url, redis_url, stop = servers_from_env_or_embedded(
            Path(args.data_dir), args.pg_port, args.redis_port, database="boxoffice"
        )
        print(f"DATABASE_URL={database_url}")
        print(f"REDIS_URL={redis_url}")
        print("Ctrl-C to stop", flush=True)
        threading.Event().wait()
    except _Shutdown:
        pass
    except ServerError as error:
        log.error("%s", error)
        return 1
    finally:
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        stop()
    return 0


def _list(args: argparse.Namespace) -> int:
    for spec in stack_processes(args.data_dir):
        kind = " (one-shot)" if spec.oneshot else ""
        print(f"{spec.name}{kind}: {shlex.join(spec.argv)}")
    return 0


def _print_table(stack: Stack) -> None:
    urls = stack.urls
    rows = [("API", urls["api"]), ("API docs", urls["docs"])]
    if "flower" in urls:
        rows.append(("Flower", urls["flower"]))
        rows.append(("  login", _flower_login(stack)))
    rows += [
        ("Payment gateway", urls["gateway"]),
        ("Mail (SMTP sink)", f"{urls['smtp']}  (messages in {urls['mail']})"),
        ("PostgreSQL", mask_password(urls["database"])),
        ("Redis", mask_password(urls["redis"])),
        ("Broker", "Redis (above)" if urls["broker"] == urls["redis"] else mask_password(urls["broker"])),
        ("Logs", urls["logs"]),
    ]
    width = max(len(name) for name, _ in rows)
    print()
    for name, value in rows:
        print(f"  {name.ljust(width)}  {value}")
    print("\nCtrl-C to stop\n", flush=True)


def _flower_login(stack: Stack) -> str:
    stored = stack.data_dir / "flower-credentials"
    if stack.flower_auth_generated:
        return f"{stack.flower_auth}  (new; shown once, kept in {stored})"
    if os.environ.get("FLOWER_BASIC_AUTH"):
        return "from FLOWER_BASIC_AUTH"
    user = stack.flower_auth.split(":", 1)[0]
    return f"user {user}, password in {stored}"


def _raise_on_signals() -> None:
    def handler(signum, frame):
        raise _Shutdown(signum)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _force_on_signals(stack: Stack) -> None:
    def handler(signum, frame):
        stack.force_stop()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


if __name__ == "__main__":
    sys.exit(main())
