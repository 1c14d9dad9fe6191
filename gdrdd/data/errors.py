class DataNotFoundError(FileNotFoundError):
    """A data set's files are missing or incomplete; the message says what to put where."""
