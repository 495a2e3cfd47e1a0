"""The chaos harness: a booking/cancel workload against the whole stack while it breaks things,
then a check of every SPEC §4 invariant. Run `python -m chaos --help`."""
