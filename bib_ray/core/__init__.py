"""The algorithm core: sufficient statistics, bidirectional losses, auxiliary ensemble and the
batched BIB optimiser. Plain PyTorch; nothing here imports Ray."""
