"""Notifications sent about pipeline runs."""
