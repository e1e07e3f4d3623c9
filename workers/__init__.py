"""Process entry points and the `tasksync` command line: parse configuration, wire the parts of
`bridge`, run."""
