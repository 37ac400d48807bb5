"""Post-processing (next): the steps after a payload landed (permissions and owner,
extraction, excludes, *arr import, hand-off, seedbox clean-up), each recorded on the
item through lifecycle/. See docs/architecture.md."""
