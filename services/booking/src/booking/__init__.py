"""Samtal booking service: availability, treatment courses, sessions and course completion."""
