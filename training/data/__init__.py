"""Training data: face crops prepared with the service's detector and alignment, datasets and samplers."""
