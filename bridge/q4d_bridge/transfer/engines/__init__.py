"""Transfer engines: move one remote payload into a local staging path. No MQTT here."""
