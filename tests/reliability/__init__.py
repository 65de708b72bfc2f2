"""Failure-injection suite (issue 5): one module per promise, real processes, real gRPC, deadlines.

Shared helpers live in :mod:`tests.reliability.support`; the code that runs in child
processes (emitters, runners, flood senders) in :mod:`tests.reliability.workers`.
"""
