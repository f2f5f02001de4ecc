"""The fleet's TUF repository: keys, metadata, publishing (python-tuf Metadata API only).

- :mod:`.keys`: key files (offline root/targets, online snapshot/timestamp/deltas);
- :mod:`.repo`: :class:`Repository` on disk (server side: publish, deltas, refresh);
- :mod:`.operator`: :func:`add_targets` (operator side: sign a release);
- :mod:`.rotation`: root rotation.
"""
