"""Analytics over the trajectory store: SQL views of the committed rows (DuckDB) and the files behind them."""

from automem.analytics.store import PHASE_ORDER_SQL, committed_files, connect, query, select_episodes

__all__ = ["PHASE_ORDER_SQL", "committed_files", "connect", "query", "select_episodes"]
