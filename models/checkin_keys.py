"""The keys tickets are signed with (SPEC §10): one Ed25519 key pair signs a show's tickets, and
its public half is published so that a scanner can verify a ticket with no network.

A ticket's `qr` is a compact JWS (RFC 7515) with `alg: EdDSA` and the signing key's `kid` in its
header; its payload names the ticket (`tid`, `code`), the booking (`bid`), the show (`sid`) and
what it admits (`qty`, `seats`). PyJWT signs and verifies it (with `cryptography` underneath).

Keys live in PostgreSQL, one table, per show: created on first need, rotated by an admin. A
rotation retires the signing key, it signs no new ticket, but it stays published (the `keys` list
of GET /shows/{id}/checkin-key) and keeps verifying what it signed, by `kid`: tickets issued
before a rotation stay valid. A private key never leaves the server.
"""
from __future__ import annotations

import binascii
import json
import secrets
import threading
from datetime import datetime

import jwt
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, NoEncryption, PrivateFormat, PublicFormat
from jwt.utils import base64url_decode, base64url_encode
from sqlalchemy import Boolean, DateTime, ForeignKey, Index, LargeBinary, String, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.orm import Mapped, mapped_column

from models.database import db, utc_now
from models.errors import InvalidInput

ALGORITHM = "EdDSA"
# A JWS longer than this is no ticket of ours (ours are about 450 characters).
MAX_QR_LENGTH = 2048


class CheckinKey(db.Model):
    __tablename__ = "checkin_keys"
    __table_args__ = (
        # One signing key per show at a time; retired ones only verify.
        Index("uq_checkin_keys_show_signing", "show_id", unique=True, postgresql_where=text("NOT retired")),
        Index("ix_checkin_keys_show_id", "show_id"),
    )

    kid: Mapped[str] = mapped_column(String(32), primary_key=True)
    show_id: Mapped[str] = mapped_column(ForeignKey("shows.id"))
    private_key: Mapped[bytes] = mapped_column(LargeBinary(32))  # the raw 32 bytes
    public_x: Mapped[str] = mapped_column(String(64))  # base64url of the raw public key (the JWK's x)
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), default=utc_now)
    retired: Mapped[bool] = mapped_column(Boolean, default=False)

    def jwk(self) -> dict:
        return {"kty": "OKP", "crv": "Ed25519", "x": self.public_x, "kid": self.kid}

    def sign(self, claims: dict) -> str:
        private = Ed25519PrivateKey.from_private_bytes(self.private_key)
        return jwt.encode(claims, private, algorithm=ALGORITHM, headers={"kid": self.kid})


def _new_key_row(show_id: str) -> dict:
    private = Ed25519PrivateKey.generate()
    raw_private = private.private_bytes(Encoding.Raw, PrivateFormat.Raw, NoEncryption())
    raw_public = private.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)
    return {"kid": secrets.token_hex(8), "show_id": show_id, "private_key": raw_private,
            "public_x": base64url_encode(raw_public).decode(), "created_at": utc_now(), "retired": False}


def signing_key(show_id: str) -> CheckinKey:
    """The show's key that signs new tickets, made on first need. Two transactions making it at
    once agree on one: the partial unique index keeps the first, the second reads it."""
    key = _current(show_id)
    if key is None:
        db.session.execute(insert(CheckinKey).values(_new_key_row(show_id)).on_conflict_do_nothing(
            index_elements=["show_id"], index_where=text("NOT retired")))
        key = _current(show_id)
    return key


def _current(show_id: str) -> CheckinKey | None:
    return db.session.scalar(select(CheckinKey).where(CheckinKey.show_id == show_id, CheckinKey.retired.is_(False))
                             .execution_options(populate_existing=True))


def rotate(show_id: str) -> CheckinKey:
    """Retire the show's signing key and make a new one (the caller holds the show's row lock)."""
    db.session.execute(update(CheckinKey).where(CheckinKey.show_id == show_id, CheckinKey.retired.is_(False))
                       .values(retired=True))
    db.session.execute(insert(CheckinKey).values(_new_key_row(show_id)))
    return _current(show_id)


def published_keys(show_id: str) -> list[CheckinKey]:
    """Every key of the show that verifies its tickets, the signing one first, then newest first."""
    return list(db.session.scalars(select(CheckinKey).where(CheckinKey.show_id == show_id)
                                   .order_by(CheckinKey.retired, CheckinKey.created_at.desc())))


class InvalidTicket(InvalidInput):
    """A QR that is no ticket of ours: unreadable, badly signed, or signed by an unknown key."""

    def __init__(self, message: str):
        super().__init__(message)
        self.details = {"result": "INVALID"}


# kid -> public key. A key never changes once made, and a retired one still verifies, so a key
# read once is good for the life of the process; the bound only keeps a long-lived process small.
_VERIFIERS: dict[str, tuple[str, Ed25519PublicKey]] = {}
_VERIFIERS_MAX = 10_000
_verifiers_lock = threading.Lock()


def _verifier(kid: str) -> tuple[str, Ed25519PublicKey] | None:
    found = _VERIFIERS.get(kid)
    if found is None:
        row = db.session.execute(select(CheckinKey.show_id, CheckinKey.public_x).where(CheckinKey.kid == kid)).first()
        if row is None:
            return None
        found = (row.show_id, Ed25519PublicKey.from_public_bytes(base64url_decode(row.public_x)))
        with _verifiers_lock:
            if len(_VERIFIERS) >= _VERIFIERS_MAX:
                _VERIFIERS.clear()
            _VERIFIERS[kid] = found
    return found


def _header(qr: str) -> dict:
    """The JWS header, only to find the key: jwt.decode checks all of it again with the key. (Read
    here with the C base64 decoder: PyJWT's own check of a segment is a Python loop per character,
    and a batch upload reads thousands of QRs.)"""
    try:
        header = json.loads(base64url_decode(qr.split(".", 1)[0]))
    except (ValueError, binascii.Error, RecursionError):  # bad base64, UTF-8 or JSON; JSON nested too deep
        raise InvalidTicket("the QR is not a JWS") from None
    if not isinstance(header, dict):
        raise InvalidTicket("the QR is not a JWS")
    return header


CLAIMS = ("tid", "code", "bid", "sid", "qty", "seats")


def read_qr(qr: str) -> dict:
    """The claims of a ticket's QR, verified with the key its `kid` names; InvalidTicket if it
    is not a ticket this server signed for the show it names."""
    if not isinstance(qr, str) or not qr or len(qr) > MAX_QR_LENGTH:
        raise InvalidTicket("the QR is not a ticket")
    header = _header(qr)
    kid = header.get("kid")
    if header.get("alg") != ALGORITHM or not isinstance(kid, str) or len(kid) > 32:
        raise InvalidTicket("the QR is not signed with a check-in key")
    found = _verifier(kid)
    if found is None:
        raise InvalidTicket("the QR is signed with an unknown key")
    show_id, public_key = found
    try:
        claims = jwt.decode(qr, public_key, algorithms=[ALGORITHM], options={"require": list(CLAIMS)})
    except jwt.PyJWTError:
        raise InvalidTicket("the QR's signature does not verify") from None
    if claims["sid"] != show_id:  # a key signs the tickets of its own show only
        raise InvalidTicket("the QR names another show than its key's")
    return claims
