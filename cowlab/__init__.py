"""cowlab: an executable model of Linux anonymous-memory copy-on-write and GUP."""
__version__ = "0.1.0"
