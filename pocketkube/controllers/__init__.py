"""Controllers (issue 3): one module per control loop, talking to the API through core's client."""
