"""Pure domain rules of matching: no I/O."""
