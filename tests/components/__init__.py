"""Tests for the Home Assistant integrations in custom_components/."""
