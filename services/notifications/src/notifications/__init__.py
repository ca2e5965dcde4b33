"""Samtal notifications service: contacts, messages, reminders and channels."""
