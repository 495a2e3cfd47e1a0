"""Run the payment gateway sandbox under gunicorn: ``python -m gateway --port 8100 --db gw.sqlite3``.

Every option can also come from the environment (GATEWAY_HOST, GATEWAY_PORT, GATEWAY_DB,
GATEWAY_WORKERS, GATEWAY_THREADS, GATEWAY_LATENCY_MS, GATEWAY_ERROR_RATE, GATEWAY_ERROR_STATUSES,
GATEWAY_ERROR_BODY, GATEWAY_TIMEOUT_RATE, GATEWAY_TIMEOUT_S, GATEWAY_OUTAGE); a flag wins over the
environment. The fault flags replace
whatever faults the database held from an earlier run.
"""

import argparse
import os

from gunicorn.app.base import BaseApplication

from gateway.sandbox import DEFAULT_FAULTS, Store, create_app, parse_faults


def _env(name, default):
    return os.environ.get(name, default)


def _env_bool(name):
    return os.environ.get(name, "").strip().lower() in ("1", "true", "yes", "on")


def _statuses(text):
    try:
        return [int(part) for part in text.split(",") if part.strip()]
    except ValueError as error:
        raise argparse.ArgumentTypeError(f"not a list of HTTP statuses: {text!r}") from error


def parse_args(argv=None):
    parser = argparse.ArgumentParser(prog="python -m gateway", description=__doc__.splitlines()[0])
    parser.add_argument("--host", default=_env("GATEWAY_HOST", "127.0.0.1"))
    parser.add_argument("--port", type=int, default=int(_env("GATEWAY_PORT", "8100")))
    parser.add_argument("--db", default=_env("GATEWAY_DB", "gateway.sqlite3"),
                        help="SQLite file holding charges, refunds and faults")
    parser.add_argument("--workers", type=int, default=int(_env("GATEWAY_WORKERS", "1")))
    parser.add_argument("--threads", type=int, default=int(_env("GATEWAY_THREADS", "32")))
    parser.add_argument("--graceful-timeout", type=int, default=5,
                        help="seconds in-flight requests get to finish after SIGTERM")
    parser.add_argument("--log-level", default=_env("GATEWAY_LOG_LEVEL", "info"))
    parser.add_argument("--access-log", action="store_true", help="log every request to stderr")
    faults = parser.add_argument_group("faults at start (changeable later with PUT /v1/faults)")
    faults.add_argument("--latency-ms", type=int,
                        default=int(_env("GATEWAY_LATENCY_MS", DEFAULT_FAULTS["latency_ms"])))
    faults.add_argument("--error-rate", type=float,
                        default=float(_env("GATEWAY_ERROR_RATE", DEFAULT_FAULTS["error_rate"])))
    faults.add_argument("--error-statuses", type=_statuses,
                        default=_statuses(_env("GATEWAY_ERROR_STATUSES", ",".join(
                            str(status) for status in DEFAULT_FAULTS["error_statuses"]))),
                        help="comma-separated HTTP statuses an injected error picks from")
    faults.add_argument("--error-body", action=argparse.BooleanOptionalAction,
                        default=_env("GATEWAY_ERROR_BODY", "true").strip().lower() not in ("0", "false", "no", "off"),
                        help="whether an injected error has a JSON body (--no-error-body: empty, like a proxy's)")
    faults.add_argument("--timeout-rate", type=float,
                        default=float(_env("GATEWAY_TIMEOUT_RATE", DEFAULT_FAULTS["timeout_rate"])))
    faults.add_argument("--timeout-s", type=float,
                        default=float(_env("GATEWAY_TIMEOUT_S", DEFAULT_FAULTS["timeout_s"])))
    faults.add_argument("--outage", action="store_true", default=_env_bool("GATEWAY_OUTAGE"))
    return parser.parse_args(argv)


class SandboxServer(BaseApplication):
    """gunicorn with threaded workers, configured in code rather than from the command line."""

    def __init__(self, db_path, options):
        self.db_path = db_path
        self.options = options
        super().__init__()

    def load_config(self):
        for name, value in self.options.items():
            self.cfg.set(name, value)

    def load(self):
        # Called in each worker after the fork, so every worker opens its own connections.
        return create_app(self.db_path)


def main(argv=None):
    args = parse_args(argv)
    startup_faults = parse_faults({
        "latency_ms": args.latency_ms, "error_rate": args.error_rate,
        "error_statuses": args.error_statuses, "error_body": args.error_body,
        "timeout_rate": args.timeout_rate, "timeout_s": args.timeout_s, "outage": args.outage,
    })
    store = Store(args.db)
    store.reset_faults()
    store.update_faults(startup_faults)
    store.close()  # never carry an SQLite connection across the fork

    SandboxServer(args.db, {
        "bind": f"{args.host}:{args.port}",
        "workers": args.workers,
        "threads": args.threads,
        "worker_class": "gthread",
        "graceful_timeout": args.graceful_timeout,
        # Long enough for injected timeouts: a gthread worker's heartbeat is not blocked by them.
        "timeout": 120,
        # Keep pooled client connections open well beyond the gap between two charges.
        "keepalive": 30,
        "loglevel": args.log_level,
        "errorlog": "-",
        "accesslog": "-" if args.access_log else None,
        "proc_name": "gateway-sandbox",
        # gunicorn's control socket lives at one path per user; several servers would collide.
        "control_socket_disable": True,
    }).run()


if __name__ == "__main__":
    main()
