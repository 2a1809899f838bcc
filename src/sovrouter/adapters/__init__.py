"""Model adapters: the contract the model team implements (see ``protocols.ModelAdapter``)."""
