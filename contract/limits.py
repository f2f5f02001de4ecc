"""Packet sizes the agent, the fleet server and the broker agree on (MQTT v5).

The broker refuses (disconnects) any client that sends a packet larger than
:data:`BROKER_MAX_PACKET_BYTES` (``max_packet_size`` in the configuration
``nanofleet broker-config`` writes), so one device identity cannot make the broker,
the fleet server or another device hold a 256 MB message. Each client also announces
the largest packet *it* accepts in CONNECT (Maximum Packet Size); the broker then
drops a larger message for that client instead of sending it, so the limit is
enforced before a byte of it reaches the client's parser.
"""

from __future__ import annotations

from contract.artifacts import MAX_CHUNK_BYTES

BROKER_MAX_PACKET_BYTES = 1024 * 1024
"""Largest MQTT packet any client may send through the broker (payload, topic and
properties). Bigger than every legitimate message: artifact chunks (256 KiB at most),
result batches (batch_size x max_line_bytes with the defaults: 128 KiB), reports
(the server takes 256 KiB)."""

AGENT_RECEIVE_MAX_BYTES = MAX_CHUNK_BYTES + 16 * 1024
"""The Maximum Packet Size the agent announces: one artifact chunk (the largest message a
device is ever sent) with its JSON header and topic. Desired states and queries are
far smaller (queries: :data:`contract.messages.MAX_QUERY_BYTES`)."""

MAX_ALERT_TEXT_CHARS = 8 * 1024
"""Of a line an alert carries (``truncated`` set when cut). Escaped as JSON a character can
take 6 bytes, so an alert stays well under the 256 KiB a report may be at the fleet server
(which keeps 500 characters of it). Before (review, December 2026) an alert carried the
whole line, up to ``max_line_bytes`` (1 MiB allowed): the broker took it, the outbox let
it go, and the server refused it — an alert lost with nothing counted."""

PACKET_OVERHEAD_BYTES = 4 * 1024
"""Room for the fixed header, topic and properties on top of a payload limit."""

MAX_STORED_INT = 2**31 - 1
"""The largest integer a message or an API request may carry where the fleet server stores
it (versions, revisions, sequence numbers, byte counts): the database columns are 32-bit
INTEGERs in PostgreSQL (SQLite's are 64-bit). A larger one would fail the insert (and with
it the whole batch of reports it came in) instead of being refused at the door."""
