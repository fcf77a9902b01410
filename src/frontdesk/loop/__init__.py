"""The loop that compounds: retrain and promote, distillation, drift, discovery, labelling round trips."""
