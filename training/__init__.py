"""GPL domain adaptation of a dense retriever on the review corpus."""
