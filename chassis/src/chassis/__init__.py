"""What every Samtal service stands on."""
