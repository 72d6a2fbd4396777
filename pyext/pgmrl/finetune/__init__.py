"""Fine-tuning an embedding model on a set's own documents: query-document pairs (pairs), training with
MatryoshkaLoss and the comparison with the base model (run)."""
