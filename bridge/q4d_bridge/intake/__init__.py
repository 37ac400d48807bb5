"""Intake: completions from seedboxes (and from reconciliation) become stored items, and
the seedboxes' event numbers are checked for events that never came."""
