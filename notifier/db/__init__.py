"""Storage: tables, the engine with its transactions, and migrations."""
