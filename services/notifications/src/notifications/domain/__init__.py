"""Pure domain rules of notifications: no I/O."""
