//! Test support: the Grafolean test backend and helpers to run the bot binaries.
