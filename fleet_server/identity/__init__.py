"""Device identity: the device CA (``device_ca``), enrollment tokens (``tokens``), their
tables (``tables``), the ``[enrollment]`` settings (``settings``) and the service that ties
them together (``service``: enroll, renew, revoke, broker policy files)."""
