"""The chaos harness, small: a few hundred bookings through every fault, then every invariant."""
import json
import subprocess
import sys

import pytest

from tests.processes import ROOT

pytestmark = pytest.mark.server_independent  # CI runs it once (.ci/run)


def test_small_chaos_run_reports_all_zeros():
    out = subprocess.run(
        [sys.executable, "-m", "chaos", "--bookings", "200", "--customers", "15", "--shows", "4",
         "--fault-interval", "4", "--hold-minutes", "0.25", "--quiet-timeout", "240",
         "--time-limit", "480"],
        cwd=ROOT, capture_output=True, text=True, timeout=600)
    # The summary (faults, final states, each money problem) goes to the captured output, whole:
    # an assertion message would be cut short.
    print(out.stdout[-6000:])
    print(out.stderr[-3000:], file=sys.stderr)
    last = out.stdout.strip().splitlines()[-1]
    result = json.loads(last)
    # Each booking asked for was accepted, or refused because its show had been cancelled (SPEC §11)
    # or had sold out (every seat paid for: answered at once, no booking written).
    assert result["bookings"] + result["show_cancel_bookings_refused"] + result["sold_out_refused"] == 200, \
        out.stdout[-3000:]
    assert result["faults_missed"] == [], out.stdout[-3000:]  # every fault type really fired
    assert result["not_accepted"] == 0, out.stdout[-3000:]
    for key in ("lost", "stuck", "oversold", "double_charges", "missing_refunds", "issued_on_refunded",
                "mypage_mismatches", "money_mismatches", "checked_in_not_paid", "door_admitted_twice",
                "door_admitted_and_cancelled", "fee_mismatches", "show_cancel_refunds_pending",
                "show_cancel_accepted_after_cancel", "cancelled_show_live", "cancelled_show_tickets_valid"):
        assert result[key] == 0, key
    assert result["show_cancel_refunds"]["total"] > 0, out.stdout[-3000:]  # the cancelled show had bookings
    assert result["door_scanned"] > 0, out.stdout[-3000:]  # tickets really met the door
    assert out.returncode == 0
