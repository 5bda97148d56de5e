"""Job entry points and the automem CLI: one recipe per job."""
