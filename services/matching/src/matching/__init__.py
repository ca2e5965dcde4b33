"""Samtal matching service: intakes, screening with crisis routing, the matcher and the waitlist."""
