"""One module per source format; each has ``read(path, options) -> RawTrace`` and ``sniff``."""
