"""Test support shared by the suites: a Loki-protocol receiver and its message definitions."""
