"""The HTTP adapter our workers use to talk to the payment gateway.

It only translates: no retries here, the Celery tasks own retrying. Failures come out as two
exceptions that tell the caller what to do next:

- ``GatewayUnavailable``: transient (cannot connect, timed out, 5xx, 429). Retry later with the
  same Idempotency-Key; if a charge may have gone through, the retry replays it.
- ``GatewayRejected``: permanent. Retrying the same request gives the same answer.
"""

import os
import threading
from dataclasses import dataclass

import requests
from requests.adapters import HTTPAdapter


class GatewayUnavailable(Exception):
    """The gateway did not answer usefully this time; the caller retries later."""


class GatewayRejected(Exception):
    """The gateway refused the request for good; the caller must not retry it.

    ``code`` is the gateway's machine-readable reason, e.g. ``nothing_to_refund``,
    ``refund_exceeds_remaining``, ``charge_not_captured``, ``charge_not_found``,
    ``idempotency_key_reused``, ``invalid_request``.
    """

    def __init__(self, message, *, status, code):
        super().__init__(message)
        self.message = message
        self.status = status
        self.code = code


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

    @classmethod
    def from_json(cls, body):
        return cls(id=body["id"], charge_id=body["charge_id"], amount=body["amount"],
                   status=body["status"])


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
        return Charge.from_json(body)

    def get_charge(self, charge_id: str) -> Charge | None:
        try:
            return Charge.from_json(self._call("GET", f"/v1/charges/{charge_id}"))
        except GatewayRejected as rejected:
            if rejected.status == 404:
                return None
            raise

    def find_charges(self, reference: str) -> list[Charge]:
        body = self._call("GET", "/v1/charges", params={"reference": reference})
        return [Charge.from_json(charge) for charge in body["charges"]]

    def refund(self, *, charge_id: str, amount: int, idempotency_key: str) -> Refund:
        body = self._call(
            "POST", "/v1/refunds", idempotency_key=idempotency_key,
            json={"charge_id": charge_id, "amount": amount},
        )
        return Refund.from_json(body)

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

    def _call(self, method, path, *, idempotency_key=None, **kwargs):
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        try:
            response = self._session().request(
                method, self.base_url + path, headers=headers, timeout=self.timeout, **kwargs
            )
        except requests.RequestException as error:
            raise GatewayUnavailable(f"{method} {path}: {error}") from error
        if response.status_code == 429 or response.status_code >= 500:
            raise GatewayUnavailable(f"{method} {path}: HTTP {response.status_code} {_message(response)}")
        if response.status_code >= 400:
            raise GatewayRejected(
                _message(response), status=response.status_code, code=_code(response),
            )
        try:
            return response.json()
        except ValueError as error:
            raise GatewayUnavailable(f"{method} {path}: answer is not JSON") from error


def _error_body(response):
    try:
        body = response.json()
    except ValueError:
        return {}
    return body if isinstance(body, dict) else {}


def _message(response):
    return _error_body(response).get("message") or response.reason or ""


def _code(response):
    return _error_body(response).get("code") or f"http_{response.status_code}"
