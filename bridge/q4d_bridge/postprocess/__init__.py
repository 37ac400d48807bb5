"""Post-processing: the steps after a payload landed (extraction, the *arr import
trigger, the hand-off to a home torrent client, the seedbox clean-up), per rule and
destination (`plan`), each recorded on the item through lifecycle/. Ownership, modes and
excludes apply earlier, in transfer/. See docs/post-processing.md."""
