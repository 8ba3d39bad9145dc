"""Load tests and benchmarks of cardshop. The app never imports this package."""
