"""Inside the network (C3): filters and weights as images, feature maps layer by layer, per-layer
statistics, receptive fields. The public functions are exported lazily from :mod:`convscope`."""
