//! Grafolean ping bot: protocol code on the collector framework.
