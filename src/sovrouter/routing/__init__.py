"""Routers (see ``protocols.Router``)."""
