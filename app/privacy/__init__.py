"""Privacy by construction: keys, the declarative anonymization policy and its engine."""
