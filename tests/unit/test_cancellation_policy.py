"""SPEC §11: the cancellation policy's fee, by the hours left before the show."""
from datetime import datetime, timedelta, timezone

import pytest

from models.shows import MAX_POLICY_RULES, cancellation_fee, normalize_policy

KOREAN = [{"hours_before": 168, "fee_percent": 0}, {"hours_before": 72, "fee_percent": 10},
          {"hours_before": 24, "fee_percent": 20}, {"hours_before": 0, "fee_percent": 30}]
STARTS = datetime(2027, 3, 1, 19, 0, tzinfo=timezone.utc)


def fee(policy, hours_left, amount=100_000):
    return cancellation_fee(policy, STARTS, amount, STARTS - timedelta(hours=hours_left))


@pytest.mark.parametrize("hours_left, expected", [
    (400, 0), (168, 0), (167.99, 10_000), (72, 10_000), (71.5, 20_000), (24, 20_000), (23, 30_000), (0.01, 30_000),
])
def test_the_first_matching_rule_in_descending_hours_before_decides(hours_left, expected):
    assert fee(KOREAN, hours_left) == expected


def test_the_rules_order_as_given_does_not_matter():
    assert fee(list(reversed(KOREAN)), 100) == 10_000


def test_no_policy_or_no_matching_rule_is_free():
    assert fee(None, 1) == 0
    assert fee([], 1) == 0
    assert fee([{"hours_before": 48, "fee_percent": 50}], 10) == 0


def test_the_fee_is_rounded_down_to_the_currency_unit():
    assert fee(KOREAN, 30, amount=99_999) == 19_999  # 20% of 99,999 is 19,999.8
    assert fee([{"hours_before": 0, "fee_percent": 33}], 1, amount=10) == 3
    assert fee([{"hours_before": 0, "fee_percent": 100}], 1, amount=55_000) == 55_000


def test_a_policy_is_stored_in_descending_hours_before_and_an_empty_one_is_none():
    assert normalize_policy(list(reversed(KOREAN))) == KOREAN
    assert normalize_policy([]) is None
    assert normalize_policy(None) is None


def test_a_policy_with_repeated_hours_or_too_many_rules_is_refused():
    with pytest.raises(ValueError, match="hours_before"):
        normalize_policy([{"hours_before": 24, "fee_percent": 10}, {"hours_before": 24, "fee_percent": 20}])
    with pytest.raises(ValueError, match="at most"):
        normalize_policy([{"hours_before": hours, "fee_percent": 1} for hours in range(MAX_POLICY_RULES + 1)])
