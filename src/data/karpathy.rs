//! Karpathy-split and per-split annotation loaders (to be written).
