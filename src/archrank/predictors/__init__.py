"""Performance predictors: fit on evaluated architectures, rank the rest."""
