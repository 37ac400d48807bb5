#!/bin/sh
# The add-on's entry point. Everything happens in the bridge's tested Python
# (q4d_bridge/addon/): /data/options.json and the Supervisor's MQTT service become
# /data/bridge.yaml, then it execs `q4d-bridge run`, so the SIGTERM that Docker's
# init forwards on stop reaches the bridge itself.
set -eu
exec /opt/q4d/bin/q4d-bridge addon-run "$@"
