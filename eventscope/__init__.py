"""Eventscope: an observability dashboard for Kafka and Redis Streams."""
from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("eventscope")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
