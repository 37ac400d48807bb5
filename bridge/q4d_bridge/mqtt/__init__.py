"""MQTT: the link to the broker, the topics, the payloads on the wire (in and out), command
handling and everything the bridge publishes."""
