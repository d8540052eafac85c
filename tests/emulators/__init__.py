"""Local stand-ins for the external systems b24sign talks to.

Each emulator is a real HTTP server on 127.0.0.1 that enforces the documented contract of the system it
plays (required fields, error codes, rate limits, token expiry).  They are used by the test suite, the
benchmarks and ``make demo``; nothing in the product imports them.
"""
