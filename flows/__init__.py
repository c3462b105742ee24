"""Pure state machines for Teeka's conversations (see README.md: no I/O here)."""
