"""Pure domain rules of booking: no I/O."""
