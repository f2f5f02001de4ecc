"""Sources: where lines come from (files, journald, MQTT topics)."""
