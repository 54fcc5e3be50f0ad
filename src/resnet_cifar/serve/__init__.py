"""`resnet-cifar serve`: a local web page to try the model on one's own images, and a JSON API (FastAPI on uvicorn)."""
