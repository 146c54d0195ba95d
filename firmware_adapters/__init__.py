"""Device protocols: pure framers (bytes in, frames out, no I/O) and serial transports."""

class AdapterError(Exception):
    """Base exception of firmware_adapters."""
