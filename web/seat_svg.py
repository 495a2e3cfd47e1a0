"""GET /shows/{id}/seats.svg: the seat map drawn, from the same read model as GET /shows/{id}/seats
(models/seats.py show_seat_states: a version and one byte per seat in map order).

The drawing is split like the JSON page's body (web/seat_page.py): everything that depends only on
the map (the legend, the section and row labels, each seat's place and category) is laid out once
per map and kept as text fragments; a new version of the states only joins each seat's fragment
with the shape of its state. A seat is one `<use>` of a shape defined once, so a 5,000-seat map is
a few hundred kilobytes and a 100,000-seat one about as large as its JSON page.

Colour tells the category; the shape tells the state (colour is never the only signal; the
legend draws the states in a neutral grey):
AVAILABLE a filled disc, HELD a ring with a dot, SOLD a dark square, BLOCKED a crossed-out square
outline. Each seat's element carries its id (`s` + the seat id), so a test or a script can read
the state of every seat back from the picture.

A page is cached per process for MAX_AGE_S: during a rush, every process reads the states of a
show at most once a second for the picture, and answers If-None-Match with 304 without a body.
"""
from __future__ import annotations

import threading
import time
from html import escape

from flask import Response

from models.errors import NotFound
from models.seating import SeatMap
from models.seats import STATUS_NAMES, load_seat_map, seat_states
from models.shows import get_show

# How stale the picture may be: the browser and this process both keep it this long.
MAX_AGE_S = 1.0
PITCH = 14          # distance between two seats' centres
RADIUS = 5
LABEL_WIDTH = 64    # the row names on the left
SECTION_GAP = 30    # above each section: its name
LEGEND_HEIGHT = 64
MARGIN = 12
# Okabe-Ito: colours told apart with the common kinds of colour blindness.
PALETTE = ("#0072B2", "#E69F00", "#009E73", "#CC79A7", "#56B4E9", "#D55E00", "#F0E442", "#7F3C8D")
# The shape of each state, in STATUS_NAMES order (AVAILABLE, HELD, SOLD, BLOCKED).
SHAPES = ("a", "h", "s", "b")
STATE_OF_SHAPE = {shape: STATUS_NAMES[index] for index, shape in enumerate(SHAPES)}
LEGEND_NAMES = ("Available", "Held", "Sold", "Blocked")
# Beyond this span a row's numbering is drawn seat after seat, not number by number.
MAX_GAP_FACTOR = 3

_DEFS = (
    '<defs>'
    f'<symbol id="a" overflow="visible"><circle r="{RADIUS}" fill="currentColor"/></symbol>'
    f'<symbol id="h" overflow="visible"><circle r="{RADIUS - 0.8}" fill="#fff" stroke="currentColor" '
    f'stroke-width="1.8"/><circle r="1.6" fill="#222"/></symbol>'
    f'<symbol id="s" overflow="visible"><rect x="-{RADIUS}" y="-{RADIUS}" width="{2 * RADIUS}" '
    f'height="{2 * RADIUS}" fill="#3b3b3b"/></symbol>'
    f'<symbol id="b" overflow="visible"><rect x="-{RADIUS - 0.5}" y="-{RADIUS - 0.5}" width="{2 * RADIUS - 1}" '
    f'height="{2 * RADIUS - 1}" fill="#fff" stroke="#777"/><path d="M-4-4L4 4M4-4L-4 4" stroke="#777" '
    f'stroke-width="1.4"/></symbol>'
    '</defs>')


class Layout:
    """A map drawn without its states: the head of the document (size, styles, legend, labels)
    and, per seat in map order, the text before and after its shape's name."""

    def __init__(self, seat_map: SeatMap):
        self.categories = [category.name for category in seat_map.categories]
        colour = {name: index for index, name in enumerate(self.categories)}
        places: list[tuple[float, float]] = [(0.0, 0.0)] * seat_map.seat_count
        labels: list[str] = []
        y = MARGIN + LEGEND_HEIGHT
        widest = 0
        section = None
        for row in seat_map.rows:
            if row.section != section:
                section = row.section
                y += SECTION_GAP
                labels.append(f'<text class="section" x="{MARGIN}" y="{y - 10}">{escape(section)}</text>')
            seats = seat_map.seats[row.first:row.first + row.size]
            first, last = seats[0].number, seats[-1].number
            by_number = last - first < MAX_GAP_FACTOR * len(seats)
            for slot, seat in enumerate(seats):
                column = seat.number - first if by_number else slot
                places[seat.index] = (MARGIN + LABEL_WIDTH + column * PITCH + RADIUS, y)
                widest = max(widest, column + 1)
            labels.append(f'<text class="row" x="{MARGIN + LABEL_WIDTH - 8}" y="{y + 4}" '
                          f'text-anchor="end">{escape(row.name)}</text>')
            y += PITCH
        self.width = max(MARGIN + LABEL_WIDTH + widest * PITCH + MARGIN, 640)
        self.height = y + MARGIN
        self.labels = "".join(labels)
        self.before = '<use href="#'
        self.after = [f'" class="c{colour[seat.category] % len(PALETTE)}" x="{x:g}" y="{y:g}" id="s{seat.id}"/>'
                      for seat, (x, y) in zip(seat_map.seats, places)]

    def legend(self) -> str:
        parts = []
        x = MARGIN
        for index, name in enumerate(self.categories):
            parts.append(f'<use href="#a" class="c{index % len(PALETTE)}" x="{x + RADIUS}" y="{MARGIN + 12}"/>'
                         f'<text x="{x + 2 * RADIUS + 6}" y="{MARGIN + 16}">{escape(name)}</text>')
            x += 2 * RADIUS + 18 + 8 * len(name)
        x = MARGIN
        for shape, name in zip(SHAPES, LEGEND_NAMES):
            parts.append(f'<use href="#{shape}" class="cn" x="{x + RADIUS}" y="{MARGIN + 40}"/>'
                         f'<text x="{x + 2 * RADIUS + 6}" y="{MARGIN + 44}">{name}</text>')
            x += 2 * RADIUS + 18 + 8 * len(name)
        return '<g class="legend" aria-label="Legend">' + "".join(parts) + "</g>"


def draw(title: str, show_id: str, version: int, layout: Layout, states: bytes) -> bytes:
    """The whole picture of one version of a show's seats."""
    counts = [0, 0, 0, 0]
    for state in range(4):
        counts[state] = states.count(state)
    summary = ", ".join(f"{count} {name.lower()}" for count, name in zip(counts, LEGEND_NAMES))
    styles = "".join(f".c{index}{{color:{colour}}}" for index, colour in enumerate(PALETTE))
    head = (f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {layout.width} {layout.height}" '
            f'width="{layout.width}" height="{layout.height}" role="img" aria-labelledby="t d" '
            f'data-show="{escape(show_id)}" data-version="{version}">'
            f'<title id="t">Seat map of {escape(title)}</title>'
            f'<desc id="d">{len(states)} seats: {summary}. Colour is the category; the shape is the state.</desc>'
            f'<style>text{{font:12px sans-serif;fill:#222}}.section{{font-weight:bold;font-size:13px}}'
            f'{styles}.cn{{color:#59636e}}</style>{_DEFS}'
            f'<rect width="100%" height="100%" fill="#fff"/>{layout.legend()}{layout.labels}<g class="seats">')
    before = layout.before
    shapes = [before + shape for shape in SHAPES]
    seats = "".join([shapes[state] + after for state, after in zip(states, layout.after)])
    return (head + seats + "</g></svg>").encode()


_layouts: dict[str, Layout] = {}
_pictures: dict[str, tuple[float, int, bytes]] = {}   # show id -> (fresh until, version, picture)
_lock = threading.Lock()
PICTURES_KEPT = 8


def seat_picture(show_id: str, if_none_match) -> Response:
    """The picture of the show's seats now (at most MAX_AGE_S old), or 304."""
    cached = _pictures.get(show_id)
    if cached is None or cached[0] < time.monotonic():
        cached = _fresh(show_id)
    _, version, body = cached
    etag = f"{show_id}.{version}.svg"
    headers = {"ETag": f'"{etag}"', "Cache-Control": f"public, max-age={MAX_AGE_S:g}",
               # A picture opened on its own runs nothing and loads nothing: only its own styles.
               "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'"}
    if if_none_match and if_none_match.contains(etag):
        return Response(status=304, headers=headers)
    return Response(body, status=200, mimetype="image/svg+xml", headers=headers)


def _fresh(show_id: str) -> tuple[float, int, bytes]:
    show = get_show(show_id)
    if not show.reserved:
        raise NotFound("this show has general admission: it has no seat map")
    version, states = seat_states(show_id)
    cached = _pictures.get(show_id)
    if cached is not None and cached[1] == version:
        body = cached[2]
    else:
        layout = _layouts.get(show.seat_map_id)
        if layout is None:
            layout = Layout(load_seat_map(show.seat_map_id))
            with _lock:
                if len(_layouts) >= PICTURES_KEPT:
                    _layouts.pop(next(iter(_layouts)), None)
                _layouts[show.seat_map_id] = layout
        body = draw(show.title, show_id, version, layout, states)
    fresh = (time.monotonic() + MAX_AGE_S, version, body)
    with _lock:
        _pictures.pop(show_id, None)
        if len(_pictures) >= PICTURES_KEPT:
            _pictures.pop(next(iter(_pictures)), None)
        _pictures[show_id] = fresh
    return fresh
