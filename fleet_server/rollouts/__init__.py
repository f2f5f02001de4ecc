"""Staged rollouts: the strategy (spec), the pure decisions (policy), storage, the
tracking of device reports, the driver that ticks in the server, operator actions
(manage) and the API views."""
