"""The transport contract suite."""
