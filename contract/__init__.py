"""The nanofleet contract: what the agent and the fleet server agree on.

Wire messages (:mod:`contract.messages`), MQTT topics (:mod:`contract.topics`),
the model bundle format (:mod:`contract.bundle`) and the delta format. Both
``agent`` and ``fleet_server`` import this package; neither imports the other.
"""

CONTRACT_VERSION = 1
