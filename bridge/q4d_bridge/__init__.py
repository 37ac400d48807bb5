"""Q4D bridge: seedbox completion events in, verified payloads and Home Assistant state out."""

# The one place the version is set. pyproject.toml reads it from here (setuptools'
# dynamic version); tests/test_version.py holds the integration's manifest, the seedbox
# side, the add-on and CHANGELOG.md to it. A literal rather than installed metadata, so
# a source checkout and an installed wheel report the same version.
__version__ = "0.1.0"
