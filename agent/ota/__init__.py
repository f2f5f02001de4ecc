"""Over-the-air model updates on the device.

- :mod:`.transport`: how bytes arrive (:class:`ArtifactTransport`, HTTP with resume);
- :mod:`.tuf_client`: TUF metadata client (python-tuf ngclient) and verified downloads;
- :mod:`.policy`: pure decisions (allowed versions, delta or full, rebuilt-bundle check);
- :mod:`.errors`: :class:`UpdateRefused` and its reason codes;
- :mod:`.conformance_cli`: ``nanofleet-tuf-client`` over the same client.
"""
