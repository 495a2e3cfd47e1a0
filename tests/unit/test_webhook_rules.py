"""Webhook signatures and the retry schedule (models/webhooks.py): pure rules, no I/O."""
import random

import pytest

from models.errors import InvalidInput
from models.webhooks import backoff_delay, check_url, signature, signature_header, verify_signature

SECRET = "whsec_test"
BODY = b'{"id":"e1","type":"booking.paid","created_at":"2026-12-01T00:00:00+00:00","data":{}}'


def test_the_signature_is_hmac_sha256_of_timestamp_dot_body_as_stripe_does():
    import hashlib
    import hmac
    header = signature_header(SECRET, BODY, timestamp=1_700_000_000)
    expected = hmac.new(SECRET.encode(), b"1700000000." + BODY, hashlib.sha256).hexdigest()
    assert header == f"t=1700000000,v1={expected}"
    assert signature(SECRET, 1_700_000_000, BODY) == expected


def test_a_receiver_verifies_the_body_the_secret_and_the_time():
    header = signature_header(SECRET, BODY, timestamp=1_700_000_000)
    assert verify_signature(SECRET, header, BODY, now=1_700_000_010)
    assert not verify_signature("whsec_other", header, BODY, now=1_700_000_010)
    assert not verify_signature(SECRET, header, BODY + b" ", now=1_700_000_010)
    assert not verify_signature(SECRET, header, BODY, now=1_700_000_000 + 301)  # an old one replayed
    assert not verify_signature(SECRET, "garbage", BODY)
    assert not verify_signature(SECRET, "t=abc,v1=00", BODY)


def test_backoff_grows_exponentially_with_jitter_up_to_its_cap():
    rng = random.Random(7)
    for failures in range(1, 20):
        ceiling = min(3600, 10 * 2 ** (failures - 1))
        delays = [backoff_delay(failures, 10, 3600, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len({round(d, 6) for d in delays}) > 100  # jittered, not one fixed value


def test_the_default_schedule_keeps_trying_for_at_least_24_hours_then_gives_up():
    """A delivery fails only on an attempt after its retry window (24 h); with the defaults
    (10 s doubling to 1 h, half of each wait random) that is about 40 attempts, the last some
    24 to 25 hours in."""
    for seed in range(20):
        rng, elapsed, attempts = random.Random(seed), 0.0, 0
        while True:
            attempts += 1
            if elapsed >= 24 * 3600:  # this attempt fails past the window: FAILED
                break
            elapsed += backoff_delay(attempts, 10, 3600, rng)
        assert 24 * 3600 <= elapsed <= 25 * 3600
        assert 30 <= attempts <= 50


@pytest.mark.parametrize("url", ["ftp://example.com/", "http://", "file:///etc/passwd", "example.com/hook",
                                 "http://user:pw@example.com/", "http://example.com:99999999/"])
def test_only_http_urls_with_a_host_are_endpoints(url):
    with pytest.raises(InvalidInput):
        check_url(url, refuse_private=False)


@pytest.mark.parametrize("url", ["http://127.0.0.1/", "http://10.1.2.3/", "http://192.168.0.1/",
                                 "http://169.254.169.254/", "http://[::1]/", "http://[fd00::1]/",
                                 "http://0.0.0.0/", "http://100.64.0.1/", "http://224.0.0.1/",
                                 "http://[::ffff:127.0.0.1]/"])
def test_private_ranges_are_refused_when_asked(url):
    assert check_url(url, refuse_private=False) == url  # development: loopback receivers allowed
    with pytest.raises(InvalidInput):
        check_url(url, refuse_private=True)


def test_a_public_address_is_allowed_when_private_ones_are_refused():
    assert check_url("https://8.8.8.8/hook", refuse_private=True) == "https://8.8.8.8/hook"
