"""What every backend shares: a bundle loaded into a callable model, and the worker frames."""
