"""Reuse levers: semantic cache and prefix/KV-affinity replica choice."""
