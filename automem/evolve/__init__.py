"""Loop 1: scaffold evolution."""
