"""Loaded at start-up by every Python process with this directory on PYTHONPATH (the
``inspect eval`` subprocess of tests/e2e/test_inspect_eval.py): loopback only."""

import loopback_only

loopback_only.install()
