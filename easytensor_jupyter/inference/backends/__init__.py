"""What runs the models: the backend protocol, local worker processes, Ray Serve."""
