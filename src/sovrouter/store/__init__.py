"""Embedded stores (SQLite by default)."""
