"""The queue: the item lifecycle (every transition), the scheduling policy, the scheduler,
the runner of attempts and the commands."""
