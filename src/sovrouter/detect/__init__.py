"""Personal-data detection (Presidio + spaCy + checksums). See ``docs/sovereignty.md``."""
