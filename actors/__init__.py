"""Ray-facing wrappers: domain classes from automem/ made remote, scheduling, the Serve app builder."""
