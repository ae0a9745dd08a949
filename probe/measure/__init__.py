"""Measuring: a run of a list (runner, session, slots, workers), one URL (url.py) and its steps (steps/), and what
the run needs to know first (targets, the network survey, the vantage, which addresses are public)."""
