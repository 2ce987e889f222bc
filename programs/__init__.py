"""Reference programs: plain ``dspy.Module``s with typed signatures, each with its metric and data."""
