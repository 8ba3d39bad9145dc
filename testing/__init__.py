"""Support shared by the test suite and bench/: never imported by the app
(apps/, cardshop/), and not shipped in the image (.dockerignore)."""
