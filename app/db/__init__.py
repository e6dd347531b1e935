"""Storage: SQLAlchemy models, engine and session set-up, and the repositories.

This package is the only place that issues queries. Repository functions
flush but never commit: the request (or job) that calls them owns the
transaction.
"""
