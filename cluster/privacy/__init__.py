"""Privacy mechanisms the server composes with any strategy that trains one global model: the
clipping, the noise and the accountant of user-level differential privacy."""
