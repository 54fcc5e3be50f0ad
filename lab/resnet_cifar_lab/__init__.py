"""The resnet-cifar repository's measuring machinery: the results ledger, the tables rendered from it, the study
summaries and the finished kernel studies. It lives beside the package, uses only its public API, and is installed
by the repository's `make` targets, never with `pip install resnet-cifar`."""
