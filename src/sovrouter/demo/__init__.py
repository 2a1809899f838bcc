"""``sovrouter demo``: the gateway on the embedded default, a real local model and recorded upstreams."""
