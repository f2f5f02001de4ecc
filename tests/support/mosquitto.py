from hil.broker import Mosquitto, free_port, wait_port

__all__ = ["Mosquitto", "free_port", "wait_port"]
