"""Tests with the real upstream programs (issue 14): the vfo-otelcol collector built with ocb, Prometheus 3,
and a Go client on the upstream OTel Go SDK, all run as local processes (tests/upstream/support.py)."""
