"""Training data: schema, validation, builders from public data sets, teacher generation."""
