"""nanofleet agent: the device daemon (sources -> pipeline -> runtime -> publisher)."""

__version__ = "0.1.0"
