"""Performance harness behind `make bench`: the wrapper against a raw ASGI floor and Racetrack's
own runner, side by side in one run. See benchmarks/README.md."""
