"""The seat map drawn (web/seat_svg.py): every seat once, in its category's colour and its state's
shape, a legend of both, and a 5,000-seat map that stays small and legible."""
import re
import time
import xml.etree.ElementTree as ET

from models.seating import parse_seat_map
from models.seats import AVAILABLE, BLOCKED, HELD, SOLD
from web.seat_svg import PALETTE, PITCH, RADIUS, STATE_OF_SHAPE, Layout, draw

SVG = "{http://www.w3.org/2000/svg}"
HALL = {"name": "Small hall", "sections": [
    {"name": "Floor", "rows": [{"name": "A", "seats": 6, "category": "VIP"},
                               {"name": "B", "seats": [1, 2, 3, {"number": 5, "category": "R"}], "category": "VIP"}]},
    {"name": "Balcony & <Gods>", "rows": [{"name": "C", "seats": 8, "category": "R"}]},
]}


def seats_of(picture: bytes) -> dict[str, tuple[str, str, float, float]]:
    """seat id -> (state, category class, x, y) read back from the picture."""
    root = ET.fromstring(picture)
    found = {}
    for use in root.find(f"{SVG}g[@class='seats']"):
        found[use.get("id")[1:]] = (STATE_OF_SHAPE[use.get("href")[1:]], use.get("class"),
                                    float(use.get("x")), float(use.get("y")))
    return found


def test_every_seat_is_drawn_once_with_its_state_and_category():
    seat_map = parse_seat_map(HALL)
    states = bytes([AVAILABLE, HELD, SOLD, BLOCKED] * 4 + [AVAILABLE] * 2)
    picture = draw("A night <out>", "show-1", 7, Layout(seat_map), states)
    root = ET.fromstring(picture)  # well-formed XML, names escaped
    assert root.get("data-version") == "7" and root.get("role") == "img"
    assert root.find(f"{SVG}title").text == "Seat map of A night <out>"
    drawn = seats_of(picture)
    assert list(drawn) == [seat.id for seat in seat_map.seats]
    for seat, state in zip(seat_map.seats, states):
        assert drawn[seat.id][0] == ("AVAILABLE", "HELD", "SOLD", "BLOCKED")[state], seat
        assert drawn[seat.id][1] == ("c0" if seat.category == "VIP" else "c1")
    assert "4 held" in root.find(f"{SVG}desc").text and "6 available" in root.find(f"{SVG}desc").text


def test_rows_are_drawn_in_map_order_and_a_skipped_number_leaves_a_gap():
    seat_map = parse_seat_map(HALL)
    drawn = seats_of(draw("x", "s", 1, Layout(seat_map), bytes(seat_map.seat_count)))
    assert drawn["1-1-1"][3] < drawn["1-2-1"][3] < drawn["2-1-1"][3]  # A above B above the balcony's C
    assert drawn["1-2-5"][2] - drawn["1-2-3"][2] == 2 * PITCH  # no seat 4: one empty place
    assert drawn["1-1-2"][2] - drawn["1-1-1"][2] == PITCH


def test_the_legend_names_every_category_and_every_state_by_shape():
    seat_map = parse_seat_map(HALL)
    root = ET.fromstring(draw("x", "s", 1, Layout(seat_map), bytes(seat_map.seat_count)))
    legend = root.find(f"{SVG}g[@class='legend']")
    texts = [node.text for node in legend.iter(f"{SVG}text")]
    assert texts == ["VIP", "R", "Available", "Held", "Sold", "Blocked"]
    shapes = [use.get("href") for use in legend.iter(f"{SVG}use")]
    assert shapes == ["#a", "#a", "#a", "#h", "#s", "#b"]
    symbols = {symbol.get("id"): [child.tag for child in symbol] for symbol in root.iter(f"{SVG}symbol")}
    # Not colour alone: discs for seats to be had, squares for seats gone, a ring for a hold.
    assert symbols["a"] == [f"{SVG}circle"] and symbols["h"] == [f"{SVG}circle", f"{SVG}circle"]
    assert symbols["s"] == [f"{SVG}rect"] and symbols["b"] == [f"{SVG}rect", f"{SVG}path"]
    assert "Balcony &amp; &lt;Gods&gt;" in draw("x", "s", 1, Layout(seat_map), bytes(seat_map.seat_count)).decode()


def test_a_5000_seat_map_is_small_fast_and_legible():
    body = {"name": "Arena", "sections": [
        {"name": f"Block {block}", "rows": [{"name": f"R{row}", "seats": 100, "category": ("VIP", "R", "S")[block % 3]}
                                            for row in range(1, 11)]} for block in range(1, 6)]}
    seat_map = parse_seat_map(body)
    assert seat_map.seat_count == 5000
    layout = Layout(seat_map)
    states = bytes(index % 4 for index in range(5000))
    started = time.perf_counter()
    picture = draw("Arena night", "s", 3, layout, states)
    elapsed = time.perf_counter() - started
    assert elapsed < 0.1, f"drawing 5,000 seats took {elapsed:.3f} s"
    assert len(picture) < 400_000, len(picture)
    drawn = seats_of(picture)
    assert len(drawn) == 5000
    # Legible: seats do not overlap, and the whole map fits a screen-sized picture scaled at most ~2x.
    xs = sorted({x for _, _, x, _ in drawn.values()})
    ys = sorted({y for _, _, _, y in drawn.values()})
    assert min(b - a for a, b in zip(xs, xs[1:])) >= 2 * RADIUS + 2
    assert min(b - a for a, b in zip(ys, ys[1:])) >= 2 * RADIUS + 2
    root = ET.fromstring(picture)
    width, height = int(root.get("width")), int(root.get("height"))
    assert width <= 1600 and height <= 1200, (width, height)
    assert len(re.findall(r'class="c(\d)"', picture.decode())) == 5000 + 3  # the seats and the categories' legend
    assert {use[1] for use in drawn.values()} == {"c0", "c1", "c2"} and len(PALETTE) >= 3
