"""Fixtures of the store tests: a real MongoDB wire-protocol server (tests/mongo_server.py)."""

from mongo_server import mongo_server, mongo_uri

__all__ = ["mongo_server", "mongo_uri"]
