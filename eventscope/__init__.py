"""Eventscope: an observability dashboard for Kafka, Redis Streams and RabbitMQ."""
import os
from importlib.metadata import PackageNotFoundError, version

# Arrow's C++ side (a Parquet read with filters goes through its dataset scanner) takes its
# memory pool from this variable when it first allocates, whatever pyarrow.set_memory_pool
# says later. Its bundled allocators keep freed pages: a process that read a few hundred kB of
# filtered Parquet held 70 MiB more than with the system allocator, which eventscope.memory
# trims between passes. Set here, before anything imports pyarrow; a user's choice stands.
os.environ.setdefault("ARROW_DEFAULT_MEMORY_POOL", "system")

try:
    __version__ = version("eventscope")
except PackageNotFoundError:  # run from a checkout that was never installed
    __version__ = "0+unknown"
