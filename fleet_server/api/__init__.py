"""The REST API (``/api/v1``): ``core`` (auth dependencies; models, deployments, devices),
``fleet`` (labels, rollouts, audit, tokens), ``enroll`` (enrollment, device CA,
revocation) and ``schemas`` (request and response bodies). :mod:`fleet_server.app` wires
them up."""
