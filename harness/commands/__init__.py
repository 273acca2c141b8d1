"""The `harness` command (cli) and its subcommands: chat, doctor, and the task import (tasks)."""
