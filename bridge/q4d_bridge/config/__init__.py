"""The bridge's configuration: its schema (voluptuous), the typed result, and loading
from YAML with `Q4D_*` environment overrides and secret files."""
