"""Pure domain rules of catalog: no I/O."""
