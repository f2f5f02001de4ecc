"""The fleet's TUF repository: keys, metadata, publishing (python-tuf Metadata API only).

- :mod:`.keys`: key files (offline root/targets, online snapshot/timestamp/deltas);
- :mod:`.metadata_store`: reading and writing the signed metadata on disk, re-signing
  what the online keys own (refresh);
- :mod:`.repo`: :class:`Repository` (server side: create, publish, deltas), built on it;
- :mod:`.operator`: :func:`add_targets` (operator side: sign a release);
- :mod:`.rotation`: root rotation.
"""
