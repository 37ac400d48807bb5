"""Tests for the automation blueprints in blueprints/automation/q4d/."""
