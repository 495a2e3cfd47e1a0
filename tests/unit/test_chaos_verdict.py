"""The chaos run's verdict: it passes only when every count is 0, every booking asked for was
accepted, and every scheduled fault type fired at least once."""
from types import SimpleNamespace

from chaos.harness import Chaos, passed

ALL_ZERO = {
    "bookings": 10, "faults": 12, "faults_missed": [], "lost": 0, "stuck": 0, "oversold": 0,
    "double_charges": 0, "missing_refunds": 0, "money_mismatches": 0, "issued_on_refunded": 0,
    "mypage_mismatches": 0, "workload_errors": 0, "not_accepted": 0,
}


def chaos(fault_interval=4.0, hold_minutes=0.25):
    return Chaos(SimpleNamespace(seed=1, fault_interval=fault_interval, hold_minutes=hold_minutes))


def test_a_clean_run_passes():
    assert passed(ALL_ZERO)


def test_a_run_fails_when_a_fault_type_never_fired():
    assert not passed({**ALL_ZERO, "faults_missed": ["gateway outage"]})


def test_a_run_fails_when_bookings_were_not_accepted():
    assert not passed({**ALL_ZERO, "not_accepted": 3})
    assert not passed({**ALL_ZERO, "not_accepted": None})  # the workload never finished


def test_a_run_fails_on_any_count_or_an_error():
    for key in ("lost", "stuck", "missing_refunds", "workload_errors"):
        assert not passed({**ALL_ZERO, key: 1}), key
    assert not passed({**ALL_ZERO, "error": "RuntimeError()"})
    assert not passed({**ALL_ZERO, "faults": 0})


def test_repeats_of_one_fault_do_not_stand_in_for_another():
    run = chaos()
    names = [name for name, *_ in run.fault_schedule()]
    for name in names[1:]:
        run.faults[name] += 1
    run.faults[names[1]] += 20  # plenty of faults in all, but the first type never fired
    assert run.faults_missed() == [names[0]]


def test_the_schedule_has_a_gateway_slower_than_the_client_timeout_for_longer_than_a_hold():
    run = chaos(hold_minutes=0.25)
    lasting = {name: lasts for name, _, _, lasts in run.fault_schedule()}
    assert lasting["gateway slower than the client timeout"] > 0.25 * 60
    assert "gateway answers 408/409/5xx with no body" in lasting
