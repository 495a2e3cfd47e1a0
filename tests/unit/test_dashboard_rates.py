"""The dashboard's rates (services/dashboard.py): per second between consecutive samples, only
where both samples know the value, never negative (a count that drops, as seats come back, is
no negative sale), and nothing from a pair taken at the same instant."""
from services.dashboard import _rates


def test_rates_are_per_second_between_consecutive_samples():
    samples = [{"t": 100.0, "seq": 10}, {"t": 102.0, "seq": 30}, {"t": 103.0, "seq": 35}]
    assert _rates(samples, lambda sample: sample["seq"]) == [[102.0, 10.0], [103.0, 5.0]]


def test_a_show_missing_from_a_sample_and_a_falling_count_make_no_false_rate():
    samples = [{"t": 1.0, "shows": {}}, {"t": 2.0, "shows": {"a": [4, 0]}}, {"t": 3.0, "shows": {"a": [2, 0]}},
               {"t": 3.0, "shows": {"a": [9, 0]}}]
    taken = lambda sample: (sample["shows"].get("a") or [None])[0]  # noqa: E731
    assert _rates(samples, taken) == [[3.0, 0.0]]
    assert _rates([], taken) == [] and _rates(samples[:1], taken) == []
