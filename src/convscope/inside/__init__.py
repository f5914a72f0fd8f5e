"""Inside the network (capability C3): filters, activations, layer statistics, receptive fields."""
