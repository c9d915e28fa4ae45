"""Domain errors of the recommender; the CLI and the API translate them at the edge."""


class RecommenderError(Exception):
    """Base class: a problem the user can fix, reported as one line."""

    code = "error"


class InvalidQueryError(RecommenderError):
    """The query is empty, blank or otherwise unusable."""

    code = "invalid_query"


class InvalidParameterError(RecommenderError):
    """A numeric or named parameter is out of range or unknown."""

    code = "invalid_parameter"


class UnknownAggregationError(InvalidParameterError):
    """No aggregation of that name exists."""

    code = "unknown_aggregation"


class IndexNotFoundError(RecommenderError):
    """The index directory is missing or incomplete."""

    code = "index_not_found"


class IndexMismatchError(RecommenderError):
    """The index was built with another model, format or settings than the ones in use."""

    code = "index_mismatch"


class ModelNotFoundError(RecommenderError):
    """The encoder model could not be resolved or loaded."""

    code = "model_not_found"


class BackendUnavailableError(ModelNotFoundError):
    """The encoder backend's runtime is not installed, or its exported model cannot be written or loaded."""

    code = "backend_unavailable"


class UnknownAnimeError(RecommenderError):
    """No anime with that id is in the index."""

    code = "unknown_anime"


class EmptyCorpusError(RecommenderError):
    """There is nothing to index."""

    code = "empty_corpus"
