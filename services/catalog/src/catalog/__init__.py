"""Samtal catalog service: therapists, methods and verified reviews."""
