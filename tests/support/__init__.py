"""Helpers shared by the test suites: fake kubelet logs, a Loki-protocol receiver, agent runners."""
