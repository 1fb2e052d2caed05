"""maskray's commands, one module per family; `maskray.cli` puts them in one group.

Each command is thin: it parses flags and calls one function of `jobs/` or `pipeline/`,
importing it inside the command so `maskray --help` stays instant.
"""
