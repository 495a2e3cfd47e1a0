"""GET /shows/{id}/seats, the most requested page of an on-sale: the seats of a reserved show with
their states, from the read model (models/seats.py show_seat_states, one row: a version and one
byte per seat), never from the bookings.

The answer is built once per show and version in each API process (the latest version of a few
shows is kept): the seats' fixed part (id,
section, row, number, category) is rendered once per map, and a new version only joins each
seat's fragment with its state. A client that sends the version it has (If-None-Match) gets 304,
with no body at all.
"""
from __future__ import annotations

import json
import threading

from flask import Response

from models.errors import NotFound
from models.seats import STATUS_NAMES, load_seat_map, seat_states
from models.shows import get_show

_fragments: dict[str, list[str]] = {}   # seat map id -> each seat's JSON up to its status
_pages: dict[str, tuple[int, bytes]] = {}  # show id -> its latest page rendered here (version, body)
_seat_map_of: dict[str, str] = {}       # show id -> its seat map (it never changes)
_lock = threading.Lock()
# A 100,000-seat page is about 10 MB: keep the latest of a few shows only.
PAGES_KEPT = 8


def seat_page(show_id: str, if_none_match) -> Response:
    seat_map_id = _seat_map_of.get(show_id)
    if seat_map_id is None:
        show = get_show(show_id)
        if not show.reserved:
            raise NotFound("this show has general admission: it has no seat map")
        seat_map_id = _seat_map_of[show_id] = show.seat_map_id
    version, states = seat_states(show_id)
    etag = f"{show_id}.{version}"
    headers = {"ETag": f'"{etag}"', "Cache-Control": "no-cache"}
    if if_none_match and if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    cached = _pages.get(show_id)
    body = cached[1] if cached and cached[0] == version else _render(show_id, version, seat_map_id, states)
    return Response(body, status=200, mimetype="application/json", headers=headers)


def _render(show_id: str, version: int, seat_map_id: str, states: bytes) -> bytes:
    fragments = _fragments.get(seat_map_id)
    if fragments is None:
        if len(_fragments) >= PAGES_KEPT:
            _fragments.pop(next(iter(_fragments)), None)
        fragments = _fragments[seat_map_id] = [
            '{"id": %s, "section": %s, "row": %s, "number": %d, "category": %s, "status": "' % (
                json.dumps(seat.id), json.dumps(seat.section), json.dumps(seat.row), seat.number,
                json.dumps(seat.category))
            for seat in load_seat_map(seat_map_id).seats]
    names = [name + '"}' for name in STATUS_NAMES]
    seats = ", ".join(fragment + names[state] for fragment, state in zip(fragments, states))
    body = ('{"show_id": %s, "version": %d, "seats": [%s]}' % (json.dumps(show_id), version, seats)).encode()
    with _lock:
        _pages.pop(show_id, None)
        if len(_pages) >= PAGES_KEPT:
            _pages.pop(next(iter(_pages)))
        _pages[show_id] = (version, body)
    return body
