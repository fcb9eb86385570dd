//! Grafolean netflow bot: protocol code on the collector framework.
