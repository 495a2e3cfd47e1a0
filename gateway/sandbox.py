"""The payment gateway sandbox: a fake payment provider in "test mode".

It behaves like the provider our workers talk to in production: charges and refunds keyed by an
Idempotency-Key, a ledger to reconcile against, and fault injection (latency, errors, timeouts,
outage) so the retry paths can be exercised for real.

The API (JSON; errors are ``{message, code, errors?}``):

- ``POST /v1/charges`` (``Idempotency-Key`` header) ``{reference, amount > 0, currency?,
  payment_method}`` -> 201 the charge, 200 the same charge again for a repeated key;
  ``status`` is ``captured`` (``tok_ok``) or ``declined`` (any other token). 409
  ``charge_voided`` once the key was voided (nothing is recorded, no money moves); 422
  ``invalid_request`` / ``idempotency_key_reused`` (the key came with another body).
- ``POST /v1/charges/cancel`` ``{idempotency_key}``: void a charge's key, like a provider's
  cancel of a payment intent, atomically with respect to any charge request under that key.
  200 ``{idempotency_key, status, charge}``: ``captured`` or ``declined`` with the charge that
  key already recorded (a void does not undo it: refund a captured one), or ``voided`` with
  ``charge: null``: nothing was taken, and no charge request with that key will ever capture
  (those still in flight, or sent later, get 409 ``charge_voided``). Repeating it gives the same
  answer.
- ``GET /v1/charges/<id>``; ``GET /v1/charges?reference=…`` (every charge of a reference,
  oldest first); ``GET /v1/charges?created_after=<ISO time>&starting_after=<charge id>&limit=<1..500>``
  (every reference, in creation order, a page at a time: ``{charges, has_more, next_cursor}``;
  pass ``next_cursor`` as ``starting_after`` for the next page).
- ``POST /v1/refunds`` (``Idempotency-Key``) ``{charge_id, amount}`` -> 201 / 200 replayed;
  409 ``charge_not_captured``, ``nothing_to_refund``, ``refund_exceeds_remaining``; 404
  ``charge_not_found``.
- ``GET /v1/ledger[?reference=…]``: captured and refunded money per reference.
- ``GET|PUT|DELETE /v1/faults``: ``latency_ms`` (every money-moving request sleeps first, before
  anything is recorded), ``error_rate`` (that share of them fail before anything is recorded,
  with a status picked at random from ``error_statuses``, a non-empty list of integers 400-599,
  default ``[500, 503]``; ``error_body: false`` makes that answer bodiless, with no JSON content
  type, like a proxy's), ``timeout_rate`` / ``timeout_s`` (hang, having recorded the operation
  half of the time), ``outage`` (503 to every money-moving request). Lookups, the ledger and the
  faults themselves always answer. 422 on a bad value; DELETE resets every knob.

Everything lives in one SQLite file so that every gunicorn worker process and every thread sees
the same charges and the same faults. Writes run inside ``BEGIN IMMEDIATE`` transactions, which
SQLite serialises across processes; the UNIQUE constraints on the idempotency keys are the last
word on "exactly one charge per key".
"""

import copy
import hashlib
import json
import os
import random
import sqlite3
import threading
import time
import uuid
from datetime import datetime, timezone

from flask import Flask, Response, jsonify, request
from werkzeug.exceptions import HTTPException

PAYMENT_METHOD_APPROVED = "tok_ok"
BUSY_TIMEOUT_MS = 30_000

DEFAULT_FAULTS = {
    "latency_ms": 0,
    "error_rate": 0.0,
    "timeout_rate": 0.0,
    "timeout_s": 30.0,
    "outage": False,
    "error_statuses": [500, 503],
    "error_body": True,
}
MAX_PAGE = 500

SCHEMA = """
CREATE TABLE IF NOT EXISTS charges (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash TEXT NOT NULL,
    reference TEXT NOT NULL,
    amount INTEGER NOT NULL CHECK (amount > 0),
    currency TEXT NOT NULL,
    payment_method TEXT NOT NULL,
    status TEXT NOT NULL,
    refunded_amount INTEGER NOT NULL DEFAULT 0 CHECK (refunded_amount BETWEEN 0 AND amount),
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS charges_reference ON charges (reference, seq);
CREATE INDEX IF NOT EXISTS charges_created ON charges (created_at, seq);
CREATE TABLE IF NOT EXISTS charge_voids (
    idempotency_key TEXT PRIMARY KEY,
    created_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS refunds (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    idempotency_key TEXT NOT NULL UNIQUE,
    request_hash TEXT NOT NULL,
    charge_id TEXT NOT NULL REFERENCES charges (id),
    amount INTEGER NOT NULL CHECK (amount > 0),
    status TEXT NOT NULL,
    created_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS refunds_charge ON refunds (charge_id);
CREATE TABLE IF NOT EXISTS faults (
    id INTEGER PRIMARY KEY CHECK (id = 1),
    settings TEXT NOT NULL
);
"""


class SandboxError(Exception):
    """An error answered to the client as ``{message, code}`` with an HTTP status."""

    def __init__(self, status, code, message, errors=None, body=True):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.errors = errors
        self.body = body  # False: an empty answer without a content type (a proxy's, say)


def _now():
    return datetime.now(timezone.utc).isoformat(timespec="milliseconds")


def _new_id(prefix):
    return f"{prefix}_{uuid.uuid4().hex[:24]}"


def _request_hash(fields):
    return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()


class Store:
    """The sandbox's data: charges, refunds and fault settings in one SQLite file.

    One connection per thread (and per process: a connection inherited through fork is never
    reused). Within a process a lock serialises write transactions, so threads queue on the lock
    instead of spinning in SQLite's busy handler; across processes ``busy_timeout`` does that.
    """

    def __init__(self, path):
        self.path = path
        self._local = threading.local()
        self._write_lock = threading.Lock()
        self._write_lock_pid = os.getpid()
        with self._lock():
            # executescript manages its own transaction: one, so that racing workers are safe.
            self._connection().executescript(f"BEGIN IMMEDIATE; {SCHEMA} COMMIT;")
        with self._write() as db:
            db.execute(
                "INSERT OR IGNORE INTO faults (id, settings) VALUES (1, ?)",
                (json.dumps(DEFAULT_FAULTS),),
            )

    # -- connections -------------------------------------------------------------------------

    def _connection(self):
        db = getattr(self._local, "db", None)
        if db is not None and self._local.pid == os.getpid():
            return db
        db = sqlite3.connect(
            self.path, timeout=BUSY_TIMEOUT_MS / 1000, isolation_level=None,
            check_same_thread=False,
        )
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        db.execute("PRAGMA journal_mode = WAL")
        # NORMAL is durable across application crashes in WAL mode; fine for a sandbox.
        db.execute("PRAGMA synchronous = NORMAL")
        db.execute("PRAGMA foreign_keys = ON")
        self._local.db, self._local.pid = db, os.getpid()
        return db

    def close(self):
        """Close this thread's connection (before a fork, say)."""
        db = getattr(self._local, "db", None)
        if db is not None:
            self._local.db = None
            db.close()

    def _lock(self):
        # A lock inherited through fork may be held by a thread that no longer exists.
        if self._write_lock_pid != os.getpid():
            self._write_lock, self._write_lock_pid = threading.Lock(), os.getpid()
        return self._write_lock

    class _Transaction:
        def __init__(self, store):
            self.store = store

        def __enter__(self):
            self.lock = self.store._lock()
            self.lock.acquire()
            self.db = self.store._connection()
            try:
                self.db.execute("BEGIN IMMEDIATE")
            except BaseException:
                self.lock.release()
                raise
            return self.db

        def __exit__(self, exc_type, exc, tb):
            try:
                self.db.execute("ROLLBACK" if exc_type else "COMMIT")
            finally:
                self.lock.release()
            return False

    def _write(self):
        return self._Transaction(self)

    def _read(self):
        return self._connection()

    # -- charges -----------------------------------------------------------------------------

    def create_charge(self, key, fields):
        """Record a charge once per key; return ``(charge, created)``."""
        status = "captured" if fields["payment_method"] == PAYMENT_METHOD_APPROVED else "declined"
        digest = _request_hash(fields)
        with self._write() as db:
            # A void and a charge under one key are serialised by the write transaction: either
            # the charge was recorded first (the void answers it) or it never will be.
            if db.execute("SELECT 1 FROM charge_voids WHERE idempotency_key = ?", (key,)).fetchone():
                raise SandboxError(
                    409, "charge_voided",
                    "this charge was voided (cancelled) before it was made: nothing was taken",
                )
            inserted = db.execute(
                "INSERT INTO charges (id, idempotency_key, request_hash, reference, amount,"
                " currency, payment_method, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) ON CONFLICT (idempotency_key) DO NOTHING",
                (_new_id("ch"), key, digest, fields["reference"], fields["amount"],
                 fields["currency"], fields["payment_method"], status, _now()),
            ).rowcount == 1
            row = db.execute("SELECT * FROM charges WHERE idempotency_key = ?", (key,)).fetchone()
        if row["request_hash"] != digest:
            raise _key_reused()
        return _charge_json(row), inserted

    def get_charge(self, charge_id):
        row = self._read().execute("SELECT * FROM charges WHERE id = ?", (charge_id,)).fetchone()
        return _charge_json(row) if row else None

    def void_charge(self, key):
        """Void a charge's key: return the charge it recorded, or make sure it never records one."""
        with self._write() as db:
            row = db.execute("SELECT * FROM charges WHERE idempotency_key = ?", (key,)).fetchone()
            if row is None:
                db.execute(
                    "INSERT INTO charge_voids (idempotency_key, created_at) VALUES (?, ?)"
                    " ON CONFLICT (idempotency_key) DO NOTHING",
                    (key, _now()),
                )
        if row is None:
            return {"idempotency_key": key, "status": "voided", "charge": None}
        return {"idempotency_key": key, "status": row["status"], "charge": _charge_json(row)}

    def list_charges(self, created_after=None, starting_after=None, limit=100):
        """Charges of every reference in creation order, a page at a time."""
        where, params = [], []
        if created_after is not None:
            where.append("created_at > ?")
            params.append(created_after)
        if starting_after is not None:
            row = self._read().execute(
                "SELECT seq FROM charges WHERE id = ?", (starting_after,)).fetchone()
            if row is None:
                raise SandboxError(422, "invalid_request", "invalid listing",
                                   errors={"starting_after": "no such charge"})
            where.append("seq > ?")
            params.append(row["seq"])
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        rows = self._read().execute(
            f"SELECT * FROM charges {clause} ORDER BY seq LIMIT ?", (*params, limit + 1)
        ).fetchall()
        page = [_charge_json(row) for row in rows[:limit]]
        return {"charges": page, "has_more": len(rows) > limit,
                "next_cursor": page[-1]["id"] if page else starting_after}

    def find_charges(self, reference):
        rows = self._read().execute(
            "SELECT * FROM charges WHERE reference = ? ORDER BY seq", (reference,)
        ).fetchall()
        return [_charge_json(row) for row in rows]

    # -- refunds -----------------------------------------------------------------------------

    def create_refund(self, key, fields):
        """Record a refund once per key, never beyond the captured amount."""
        digest = _request_hash(fields)
        with self._write() as db:
            row = db.execute("SELECT * FROM refunds WHERE idempotency_key = ?", (key,)).fetchone()
            if row is not None:
                if row["request_hash"] != digest:
                    raise _key_reused()
                return _refund_json(row), False
            charge = db.execute(
                "SELECT * FROM charges WHERE id = ?", (fields["charge_id"],)
            ).fetchone()
            _check_refundable(charge, fields["amount"])
            refund_id = _new_id("re")
            db.execute(
                "INSERT INTO refunds (id, idempotency_key, request_hash, charge_id, amount,"
                " status, created_at) VALUES (?, ?, ?, ?, ?, 'succeeded', ?)",
                (refund_id, key, digest, charge["id"], fields["amount"], _now()),
            )
            db.execute(
                "UPDATE charges SET refunded_amount = refunded_amount + ? WHERE id = ?",
                (fields["amount"], charge["id"]),
            )
            row = db.execute("SELECT * FROM refunds WHERE id = ?", (refund_id,)).fetchone()
        return _refund_json(row), True

    # -- ledger ------------------------------------------------------------------------------

    def ledger(self, reference=None):
        where, params = ("WHERE c.reference = ?", (reference,)) if reference is not None else ("", ())
        rows = self._read().execute(
            "SELECT c.reference,"
            " SUM(CASE WHEN c.status = 'captured' THEN c.amount ELSE 0 END) AS captured,"
            " SUM(c.refunded_amount) AS refunded,"
            " COUNT(*) AS charges,"
            " SUM((SELECT COUNT(*) FROM refunds r WHERE r.charge_id = c.id)) AS refunds"
            f" FROM charges c {where} GROUP BY c.reference ORDER BY c.reference",
            params,
        ).fetchall()
        by_reference = {
            row["reference"]: {
                "captured": row["captured"], "refunded": row["refunded"],
                "charges": row["charges"], "refunds": row["refunds"],
            }
            for row in rows
        }
        if reference is not None:
            entry = by_reference.get(reference, {"captured": 0, "refunded": 0, "charges": 0, "refunds": 0})
            return {"reference": reference, **entry}
        return {
            "by_reference": by_reference,
            "totals": {
                "captured": sum(e["captured"] for e in by_reference.values()),
                "refunded": sum(e["refunded"] for e in by_reference.values()),
            },
        }

    # -- faults ------------------------------------------------------------------------------

    def faults(self):
        row = self._read().execute("SELECT settings FROM faults WHERE id = 1").fetchone()
        return {**copy.deepcopy(DEFAULT_FAULTS), **json.loads(row["settings"])}

    def update_faults(self, changes):
        with self._write() as db:
            row = db.execute("SELECT settings FROM faults WHERE id = 1").fetchone()
            settings = {**DEFAULT_FAULTS, **json.loads(row["settings"]), **changes}
            db.execute("UPDATE faults SET settings = ? WHERE id = 1", (json.dumps(settings),))
        return settings

    def reset_faults(self):
        with self._write() as db:
            db.execute("UPDATE faults SET settings = ? WHERE id = 1", (json.dumps(DEFAULT_FAULTS),))
        return copy.deepcopy(DEFAULT_FAULTS)


def _key_reused():
    return SandboxError(
        422, "idempotency_key_reused",
        "this Idempotency-Key was already used with a different request body",
    )


def _check_refundable(charge, amount):
    if charge is None:
        raise SandboxError(404, "charge_not_found", "no such charge")
    if charge["status"] != "captured":
        raise SandboxError(409, "charge_not_captured", "only a captured charge can be refunded")
    remaining = charge["amount"] - charge["refunded_amount"]
    if remaining == 0:
        raise SandboxError(409, "nothing_to_refund", "nothing left to refund on this charge")
    if amount > remaining:
        raise SandboxError(
            409, "refund_exceeds_remaining",
            f"refund of {amount} exceeds the {remaining} left to refund on this charge",
        )


def _charge_json(row):
    return {
        "id": row["id"], "reference": row["reference"], "amount": row["amount"],
        "currency": row["currency"], "status": row["status"],
        "refunded_amount": row["refunded_amount"], "created_at": row["created_at"],
    }


def _refund_json(row):
    return {
        "id": row["id"], "charge_id": row["charge_id"], "amount": row["amount"],
        "status": row["status"], "created_at": row["created_at"],
    }


# -- input validation -------------------------------------------------------------------------

def _json_body():
    body = request.get_json(silent=True)
    if body is None:
        raise SandboxError(400, "malformed_json", "the request body must be a JSON object")
    if not isinstance(body, dict):
        raise SandboxError(422, "invalid_request", "the request body must be a JSON object")
    return body


def _unknown_fields(body, allowed):
    return {name: "unknown field" for name in sorted(set(body) - set(allowed))}


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value):
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _idempotency_key():
    key = request.headers.get("Idempotency-Key", "").strip()
    if not key:
        raise SandboxError(400, "idempotency_key_missing", "the Idempotency-Key header is required")
    if len(key) > 255:
        raise SandboxError(400, "idempotency_key_invalid", "the Idempotency-Key is longer than 255")
    return key


def _nonempty_text(value, limit=255):
    return isinstance(value, str) and 0 < len(value.strip()) <= limit


def parse_charge(body):
    fields = {
        "amount": body.get("amount"),
        "currency": body.get("currency", "KRW"),
        "payment_method": body.get("payment_method"),
        "reference": body.get("reference"),
    }
    errors = _unknown_fields(body, fields)
    if not _is_int(fields["amount"]) or fields["amount"] <= 0:
        errors["amount"] = "must be a positive integer"
    if not (isinstance(fields["currency"], str) and len(fields["currency"]) == 3
            and fields["currency"].isalpha() and fields["currency"].isupper()):
        errors["currency"] = "must be a three-letter upper-case currency code"
    if not _nonempty_text(fields["payment_method"]):
        errors["payment_method"] = "must be a non-empty string"
    if not _nonempty_text(fields["reference"]):
        errors["reference"] = "must be a non-empty string of at most 255 characters"
    if errors:
        raise SandboxError(422, "invalid_request", "invalid charge", errors=errors)
    return fields


def parse_refund(body):
    fields = {"charge_id": body.get("charge_id"), "amount": body.get("amount")}
    errors = _unknown_fields(body, fields)
    if not _nonempty_text(fields["charge_id"]):
        errors["charge_id"] = "must be a non-empty string"
    if not _is_int(fields["amount"]) or fields["amount"] <= 0:
        errors["amount"] = "must be a positive integer"
    if errors:
        raise SandboxError(422, "invalid_request", "invalid refund", errors=errors)
    return fields


def parse_void(body):
    errors = _unknown_fields(body, {"idempotency_key"})
    key = body.get("idempotency_key")
    if not _nonempty_text(key):
        errors["idempotency_key"] = "must be a non-empty string of at most 255 characters"
    if errors:
        raise SandboxError(422, "invalid_request", "invalid void", errors=errors)
    return key.strip()


def parse_listing(args):
    """``created_after``, ``starting_after`` and ``limit`` of a charge listing."""
    errors = _unknown_fields(args, {"created_after", "starting_after", "limit"})
    created_after = args.get("created_after")
    if created_after is not None:
        try:
            moment = datetime.fromisoformat(created_after)
            if moment.tzinfo is None:
                raise ValueError("no time zone")
            created_after = moment.astimezone(timezone.utc).isoformat(timespec="milliseconds")
        except ValueError:
            errors["created_after"] = "must be an ISO 8601 time with a zone"
    starting_after = args.get("starting_after")
    if starting_after is not None and not _nonempty_text(starting_after):
        errors["starting_after"] = "must be a charge id"
    limit = args.get("limit", "100")
    if not (limit.isdigit() and 1 <= int(limit) <= MAX_PAGE):
        errors["limit"] = f"must be an integer between 1 and {MAX_PAGE}"
    if errors:
        raise SandboxError(422, "invalid_request", "invalid listing", errors=errors)
    return {"created_after": created_after, "starting_after": starting_after, "limit": int(limit)}


def parse_faults(body):
    errors = _unknown_fields(body, DEFAULT_FAULTS)
    for name, value in body.items():
        if name in ("outage", "error_body"):
            if not isinstance(value, bool):
                errors[name] = "must be a boolean"
        elif name == "error_statuses":
            if not (isinstance(value, list) and 0 < len(value) <= 50
                    and all(_is_int(status) and 400 <= status <= 599 for status in value)):
                errors[name] = "must be a non-empty list of HTTP statuses between 400 and 599"
        elif name == "latency_ms":
            if not _is_int(value) or value < 0:
                errors[name] = "must be a non-negative integer"
        elif name in ("error_rate", "timeout_rate"):
            if not _is_number(value) or not 0 <= value <= 1:
                errors[name] = "must be a number between 0 and 1"
        elif name == "timeout_s":
            if not _is_number(value) or value < 0:
                errors[name] = "must be a non-negative number"
    if errors:
        raise SandboxError(422, "invalid_request", "invalid faults", errors=errors)
    return {
        name: float(value) if name in ("error_rate", "timeout_rate", "timeout_s") else value
        for name, value in body.items()
    }


# -- fault injection --------------------------------------------------------------------------

class _Timeout:
    """What a request hit by ``timeout_rate`` does: sleep, and maybe record first."""

    def __init__(self, seconds, record):
        self.seconds, self.record = seconds, record


def _inject_faults(store):
    """Apply outage, errors and latency; return a _Timeout when this request is to hang."""
    faults = store.faults()
    if faults["outage"]:
        raise SandboxError(503, "outage", "the payment gateway is unavailable (injected outage)")
    if faults["error_rate"] and random.random() < faults["error_rate"]:
        status = random.choice(faults["error_statuses"])
        raise SandboxError(status, "injected_error", "the payment gateway failed (injected error)",
                           body=faults["error_body"])
    if faults["latency_ms"]:
        time.sleep(faults["latency_ms"] / 1000)
    if faults["timeout_rate"] and random.random() < faults["timeout_rate"]:
        # Half of the hung requests moved money before hanging: the client cannot tell which.
        return _Timeout(faults["timeout_s"], record=random.random() < 0.5)
    return None


def _perform(store, operation):
    """Run a money-moving operation under the injected faults; return ``(body, created)``."""
    timeout = _inject_faults(store)
    if timeout is None:
        return operation()
    if not timeout.record:
        time.sleep(timeout.seconds)
        raise SandboxError(504, "injected_timeout", "the payment gateway timed out (injected)")
    result = operation()
    time.sleep(timeout.seconds)
    return result


# -- the app ----------------------------------------------------------------------------------

def create_app(db_path=None):
    """Build the sandbox WSGI app over the SQLite file at ``db_path`` (or $GATEWAY_DB)."""
    db_path = db_path or os.environ.get("GATEWAY_DB") or "gateway.sqlite3"
    app = Flask(__name__)
    app.json.sort_keys = False
    store = Store(db_path)
    app.extensions["gateway_store"] = store

    @app.errorhandler(SandboxError)
    def sandbox_error(error):
        if not error.body:
            bare = Response(status=error.status)
            bare.headers.remove("Content-Type")
            return bare
        body = {"message": error.message, "code": error.code}
        if error.errors:
            body["errors"] = error.errors
        return jsonify(body), error.status

    @app.errorhandler(HTTPException)
    def http_error(error):
        return jsonify({"message": error.description, "code": error.name.lower().replace(" ", "_")}), error.code

    @app.errorhandler(Exception)
    def unexpected_error(error):
        app.logger.exception("unexpected error")
        return jsonify({"message": "internal error", "code": "internal_error"}), 500

    @app.get("/healthz")
    def healthz():
        return {"status": "ok"}

    @app.post("/v1/charges")
    def create_charge():
        key = _idempotency_key()
        fields = parse_charge(_json_body())
        charge, created = _perform(store, lambda: store.create_charge(key, fields))
        return jsonify(charge), 201 if created else 200

    @app.post("/v1/charges/cancel")
    def void_charge():
        key = parse_void(_json_body())
        answer, _ = _perform(store, lambda: (store.void_charge(key), False))
        return jsonify(answer)

    @app.get("/v1/charges/<charge_id>")
    def get_charge(charge_id):
        charge = store.get_charge(charge_id)
        if charge is None:
            raise SandboxError(404, "charge_not_found", "no such charge")
        return jsonify(charge)

    @app.get("/v1/charges")
    def find_charges():
        if "reference" in request.args:
            reference = request.args["reference"]
            if not reference:
                raise SandboxError(400, "reference_missing", "the reference must not be empty")
            return jsonify({"charges": store.find_charges(reference)})
        return jsonify(store.list_charges(**parse_listing(request.args)))

    @app.post("/v1/refunds")
    def create_refund():
        key = _idempotency_key()
        fields = parse_refund(_json_body())
        refund, created = _perform(store, lambda: store.create_refund(key, fields))
        return jsonify(refund), 201 if created else 200

    @app.get("/v1/ledger")
    def ledger():
        return jsonify(store.ledger(request.args.get("reference")))

    @app.get("/v1/faults")
    def get_faults():
        return jsonify(store.faults())

    @app.put("/v1/faults")
    def put_faults():
        return jsonify(store.update_faults(parse_faults(_json_body())))

    @app.delete("/v1/faults")
    def delete_faults():
        return jsonify(store.reset_faults())

    return app
