"""督办 duban: the command line and configuration around the engine and the web app."""

__version__ = "0.1.0"
