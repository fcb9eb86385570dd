//! Grafolean snmp bot: protocol code on the collector framework.
