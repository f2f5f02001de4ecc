"""nanofleet fleet server: signed model repository, deltas, inventory, rollouts."""
