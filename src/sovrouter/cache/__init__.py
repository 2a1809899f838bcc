"""Response reuse: exact cache (this package) and, later, the semantic cache."""
