"""Printing Arrow tables for people and machines (``render``). SQL over the store is ``automem.trajectory.sql``."""
