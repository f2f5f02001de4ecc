"""Device identity: the device CA (``device_ca``), enrollment tokens (``tokens``), their
tables (``tables``), the ``[enrollment]`` settings (``settings``), the issued certificates
(``certificates``: revoke, broker policy files, service certificates) and the service that
ties them together (``service``: tokens, enroll, renew)."""
