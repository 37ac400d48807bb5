"""q4d seedbox side: the completion hook with its durable outbox, and the label daemon.

Runs on shared seedbox hosts without root: Python 3.8+, stdlib plus paho-mqtt (>= 2.0).
"""

__version__ = "0.1.0"
