"""Command-line commands for the continual capability (registered on the main group in cli.py)."""

from __future__ import annotations

import click

COMMANDS: list[click.Command] = []
