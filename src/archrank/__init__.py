"""archrank: predictor-based neural architecture search.

Learn, from a few evaluated architectures, a graph model that ranks every other architecture
of a search space, and use it to find the best one after evaluating as few as possible.
"""

from archrank.errors import ArchrankError, InvalidArchitecture

__version__ = "0.1.0"

__all__ = ["ArchrankError", "InvalidArchitecture", "__version__"]
