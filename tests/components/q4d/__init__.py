"""Tests for the q4d Home Assistant integration."""
