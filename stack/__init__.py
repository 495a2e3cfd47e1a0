"""Start and supervise the whole boxoffice stack: `python -m stack up`."""
