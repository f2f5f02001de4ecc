"""Over-the-air model updates on the device.

- :mod:`.state`: the pure state machine of one slot's update (record, events, actions);
- :mod:`.engine`: its I/O shell (persist, then act), with :mod:`.hot_swap` (its base
  class) swapping the candidate in and out of the model slot; :mod:`.inbox` hands it the
  desired state, :mod:`.fetch` downloads and verifies, :mod:`.trial` watches the
  candidate live, :mod:`.store` keeps the record and bundles on disk;
- :mod:`.transport`: how bytes arrive (:class:`ArtifactTransport`, HTTP with resume;
  :mod:`.mqtt_transport` over the device's broker);
- :mod:`.tuf_client`: TUF metadata client (python-tuf ngclient); its verified, resumable
  downloads are in :mod:`.target_downloads` (its base class);
- :mod:`.policy`: pure decisions (allowed versions, delta or full, rebuilt-bundle check);
- :mod:`.errors`: :class:`UpdateRefused`; its reason codes are
  :class:`contract.reasons.OtaReason`, which the fleet server reads too;
- :mod:`.conformance_cli`: ``nanofleet-tuf-client`` over the same client.
"""
