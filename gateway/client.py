"""The HTTP adapter our workers use to talk to the payment gateway.

It only translates: no retries here, the Celery tasks own retrying. Only an answer the gateway
itself gave, in its own words, is taken for an answer; everything else means "the outcome is
unknown". Failures come out as exceptions that tell the caller what to do next:

- ``GatewayUnavailable``: the outcome is unknown. Cannot connect, timed out, any 5xx (with or
  without a body), 429, 408, 409 ``idempotency_key_in_use``, and every answer that is not one of
  the gateway's own: a 401/403/404 from a proxy, an unknown error code, a status that does not
  go with its code, a body that is not the JSON we expect, a charge status we do not know. The
  request may or may not have taken effect: retry later with the same Idempotency-Key (a charge
  that went through is replayed, not repeated), or leave it to the void/refund path. Never a
  decline.
- ``GatewayRejected``: a definitive refusal of our request, in the gateway's words (its code and
  the status that goes with it, ``DEFINITIVE``): nothing was done, and the same request gets the
  same answer. ``invalid_request`` and ``idempotency_key_reused`` mean a bug on our side: the
  caller must neither retry them nor call them a decline. Refund refusals
  (``nothing_to_refund`` …) and ``charge_not_found`` are facts about the charge.
- ``ChargeVoided`` (a ``GatewayRejected``): 409 ``charge_voided``, the charge's key was voided
  (``void_charge``) before a charge was recorded: no money moved, none ever will under that key.

A decline is not an error: it is a charge answered with ``status: "declined"``.
"""

import os
import threading
from dataclasses import dataclass, field

import requests
from requests.adapters import HTTPAdapter


class GatewayUnavailable(Exception):
    """The gateway did not answer usefully this time; the caller retries later."""


class GatewayRejected(Exception):
    """The gateway refused the request for good; the caller must not retry it.

    ``code`` is the gateway's machine-readable reason, one of ``DEFINITIVE``.
    """

    def __init__(self, message, *, status, code):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code

    def __str__(self):
        return f"HTTP {self.status} {self.code}: {self.message}"

    def __repr__(self):
        return f"{type(self).__name__}(status={self.status}, code={self.code!r}, message={self.message!r})"

    def __reduce__(self):  # picklable, so a failed step's record says what was refused
        return _rejected, (type(self), self.message, self.status, self.code)


def _rejected(kind, message, status, code):
    return kind(message, status=status, code=code)


class ChargeVoided(GatewayRejected):
    """The charge's key was voided before any charge was recorded: no money moved."""


# The gateway's own refusals, each with the status it comes with. A pair not listed here is not
# an answer we understand, so its outcome is unknown (GatewayUnavailable).
DEFINITIVE = {
    "invalid_request": 422,
    "idempotency_key_reused": 422,
    "idempotency_key_missing": 400,
    "idempotency_key_invalid": 400,
    "malformed_json": 400,
    "reference_missing": 400,
    "charge_voided": 409,
    "charge_not_captured": 409,
    "nothing_to_refund": 409,
    "refund_exceeds_remaining": 409,
    "charge_not_found": 404,
}
CHARGE_STATUSES = ("captured", "declined")


@dataclass(frozen=True)
class Charge:
    id: str
    reference: str
    amount: int
    currency: str
    status: str
    refunded_amount: int

    @property
    def captured(self) -> bool:
        return self.status == "captured"

    @classmethod
    def from_json(cls, body):
        return cls(
            id=body["id"], reference=body["reference"], amount=body["amount"],
            currency=body["currency"], status=body["status"],
            refunded_amount=body["refunded_amount"],
        )


@dataclass(frozen=True)
class Refund:
    id: str
    charge_id: str
    amount: int
    status: str
    # Whether this request made the refund (201), or replayed one made before (200).
    created: bool = field(default=False, compare=False)

    @classmethod
    def from_json(cls, body, created=False):
        return cls(id=body["id"], charge_id=body["charge_id"], amount=body["amount"],
                   status=body["status"], created=created)


@dataclass(frozen=True)
class Void:
    """The answer to a void: ``voided`` (nothing was taken, nothing will be), or the charge the
    key had already recorded (``captured``: refund it; ``declined``)."""
    idempotency_key: str
    status: str
    charge: Charge | None

    @property
    def nothing_taken(self) -> bool:
        return self.status in ("voided", "declined")


@dataclass(frozen=True)
class ChargePage:
    charges: list[Charge]
    has_more: bool
    next_cursor: str | None


class GatewayClient:
    """Talks to the gateway over pooled keep-alive connections; safe to share between threads.

    Each thread (and each process, after a fork) gets its own ``requests.Session``, because a
    Session is not guaranteed to be thread-safe and a pooled socket must never cross a fork.
    """

    def __init__(self, base_url: str, timeout: float = 5.0, connect_timeout: float = 2.0):
        self.base_url = base_url.rstrip("/")
        self.timeout = (connect_timeout, timeout)
        self._local = threading.local()

    # -- payments ----------------------------------------------------------------------------

    def charge(self, *, reference: str, amount: int, payment_method: str, idempotency_key: str,
               currency: str = "KRW") -> Charge:
        body = self._call(
            "POST", "/v1/charges", idempotency_key=idempotency_key,
            json={"reference": reference, "amount": amount, "currency": currency,
                  "payment_method": payment_method},
        )
        return _charge(body, "POST /v1/charges")

    def void_charge(self, *, idempotency_key: str) -> Void:
        """Void a charge's key (a provider's cancel of a payment intent): the definitive answer
        to "was anything taken under this key?". Safe to repeat."""
        body = self._call("POST", "/v1/charges/cancel", json={"idempotency_key": idempotency_key})
        where = "POST /v1/charges/cancel"
        status = body.get("status")
        if status == "voided" and body.get("charge") is None:
            return Void(idempotency_key, status, None)
        if status in CHARGE_STATUSES and isinstance(body.get("charge"), dict):
            charge = _charge(body["charge"], where)
            if charge.status == status:
                return Void(idempotency_key, status, charge)
        raise GatewayUnavailable(f"{where}: an answer we do not understand: {body!r}"[:500])

    def list_charges(self, *, created_after: str | None = None, starting_after: str | None = None,
                     limit: int = 100) -> ChargePage:
        """Charges of every reference, in creation order, one page (``next_cursor`` goes on)."""
        params = {"limit": limit}
        if created_after is not None:
            params["created_after"] = created_after
        if starting_after is not None:
            params["starting_after"] = starting_after
        body = self._call("GET", "/v1/charges", params=params)
        try:
            return ChargePage([_charge(each, "GET /v1/charges") for each in body["charges"]],
                              bool(body["has_more"]), body["next_cursor"])
        except (KeyError, TypeError) as error:
            raise GatewayUnavailable(f"GET /v1/charges: an answer we do not understand: {error!r}") from error

    def get_charge(self, charge_id: str) -> Charge | None:
        try:
            return _charge(self._call("GET", f"/v1/charges/{charge_id}"), "GET /v1/charges/<id>")
        except GatewayRejected as rejected:
            if rejected.code == "charge_not_found":
                return None
            raise

    def find_charges(self, reference: str) -> list[Charge]:
        body = self._call("GET", "/v1/charges", params={"reference": reference})
        try:
            return [_charge(charge, "GET /v1/charges") for charge in body["charges"]]
        except (KeyError, TypeError) as error:
            raise GatewayUnavailable(f"GET /v1/charges: an answer we do not understand: {error!r}") from error

    def refund(self, *, charge_id: str, amount: int, idempotency_key: str) -> Refund:
        status, body = self._request(
            "POST", "/v1/refunds", idempotency_key=idempotency_key,
            json={"charge_id": charge_id, "amount": amount},
        )
        try:
            return Refund.from_json(body, created=status == 201)
        except (KeyError, TypeError) as error:
            raise GatewayUnavailable(f"POST /v1/refunds: an answer we do not understand: {error!r}") from error

    def ledger(self, reference: str | None = None) -> dict:
        """The whole ledger, or ``{reference, captured, refunded, charges, refunds}`` for one."""
        params = {"reference": reference} if reference is not None else None
        return self._call("GET", "/v1/ledger", params=params)

    # -- fault injection (sandbox only) ------------------------------------------------------

    def get_faults(self) -> dict:
        return self._call("GET", "/v1/faults")

    def set_faults(self, **faults) -> dict:
        return self._call("PUT", "/v1/faults", json=faults)

    def clear_faults(self) -> None:
        self._call("DELETE", "/v1/faults")

    def healthy(self) -> bool:
        try:
            return self._call("GET", "/healthz").get("status") == "ok"
        except (GatewayUnavailable, GatewayRejected):
            return False

    def close(self) -> None:
        """Close this thread's connections."""
        session = getattr(self._local, "session", None)
        if session is not None:
            self._local.session = None
            session.close()

    # -- plumbing ----------------------------------------------------------------------------

    def _session(self):
        session = getattr(self._local, "session", None)
        if session is not None and self._local.pid == os.getpid():
            return session
        session = requests.Session()
        adapter = HTTPAdapter(pool_connections=1, pool_maxsize=4)
        session.mount("http://", adapter)
        session.mount("https://", adapter)
        self._local.session, self._local.pid = session, os.getpid()
        return session

    def _call(self, method, path, **kwargs):
        return self._request(method, path, **kwargs)[1]

    def _request(self, method, path, *, idempotency_key=None, **kwargs):
        """Send one request; return ``(status, JSON object)`` of a 2xx answer, or raise."""
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        try:
            response = self._session().request(
                method, self.base_url + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            raise GatewayUnavailable(f"{method} {path}: {error}") from error
        status = response.status_code
        if status >= 400:
            code = _error_body(response).get("code")
            if status < 500 and isinstance(code, str) and DEFINITIVE.get(code) == status:
                kind = ChargeVoided if code == "charge_voided" else GatewayRejected
                raise kind(_message(response), status=status, code=code)
            # 5xx, 429, 408, 409 idempotency_key_in_use, a proxy's 401/403/404, anything else.
            raise GatewayUnavailable(
                f"{method} {path}: HTTP {status} {code or 'without a gateway code'}: {_message(response)}"[:500])
        if not 200 <= status < 300:
            raise GatewayUnavailable(f"{method} {path}: unexpected HTTP {status}")
        try:
            body = response.json()
        except ValueError as error:
            raise GatewayUnavailable(f"{method} {path}: answer is not JSON") from error
        if not isinstance(body, dict):
            raise GatewayUnavailable(f"{method} {path}: answer is not a JSON object")
        return status, body


def _charge(body, where) -> Charge:
    """A charge from the gateway's JSON; one we cannot read, or in a state we do not know, is an
    unknown outcome."""
    try:
        charge = Charge.from_json(body)
    except (KeyError, TypeError) as error:
        raise GatewayUnavailable(f"{where}: an answer we do not understand: {error!r}") from error
    if charge.status not in CHARGE_STATUSES:
        raise GatewayUnavailable(f"{where}: charge {charge.id} is {charge.status!r}, not a known outcome")
    return charge


def _error_body(response):
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response):
    return _error_body(response).get("message") or response.reason or ""


