"""The check-in keys of a show (SPEC §10): the public half for scanners
(GET /shows/{id}/checkin-key), and rotation (POST /shows/{id}/checkin-key/rotate, admin)."""
from __future__ import annotations

from models.checkin_keys import ALGORITHM, published_keys, rotate, signing_key
from models.shows import get_show
from services.unit_of_work import UnitOfWork


def public_keys(show_id: str) -> dict:
    """The key that signs the show's new tickets, and every key that verifies its tickets
    (the signing one first): `{alg, jwk, keys}`. The first call for a show makes its key."""
    with UnitOfWork() as uow:
        get_show(show_id)
        signing_key(show_id)
        document = _document(show_id)
        uow.commit()
    return document


def rotate_key(show_id: str) -> dict:
    """Retire the show's signing key for a new one; tickets signed before still verify."""
    with UnitOfWork() as uow:
        uow.lock_shows([show_id])  # one rotation of a show at a time
        rotate(show_id)
        document = _document(show_id)
        uow.commit()
    return document


def _document(show_id: str) -> dict:
    keys = [key.jwk() for key in published_keys(show_id)]
    return {"show_id": show_id, "alg": ALGORITHM, "jwk": keys[0], "keys": keys}
