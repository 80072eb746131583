# Makes `tests` this project's package: verl's wheel installs a top-level `tests` package too.
