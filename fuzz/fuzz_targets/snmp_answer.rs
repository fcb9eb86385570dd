//! What an SNMP agent (or anyone who can send to the bot's socket) can answer: the bytes are
//! decoded by async-snmp's message decoder, as its client does for every datagram, and every
//! value that comes out goes through the bot's own handling: conversion, numbers for
//! expressions, text for slugs and output paths, the index of a walked row.
#![no_main]

use async_snmp::message::Message;
use async_snmp::DecodeConfig;
use libfuzzer_sys::fuzz_target;
use snmpbot::expression::Expression;
use snmpbot::output_path::OutputTemplate;
use snmpbot::walk::{index_text, SnmpValue};

fuzz_target!(|data: &[u8]| {
    let Ok(outcome) = Message::decode(bytes::Bytes::copy_from_slice(data), DecodeConfig::default())
    else {
        return;
    };
    if let Message::V3(v3) = &outcome.value {
        let params = v3.security_params().clone();
        let _ = async_snmp::v3::UsmSecurityParams::decode(params, DecodeConfig::default());
    }
    let Some(pdu) = outcome.value.into_pdu() else {
        return;
    };
    let expression = Expression::compile("$1 * 8").expect("constant expression");
    let template = OutputTemplate::compile("if.{$index}.{$1}", 1).expect("constant template");
    for varbind in pdu.into_varbinds() {
        let index = index_text(varbind.oid.arcs());
        let Some(value) = SnmpValue::from_value(varbind.value) else {
            continue;
        };
        let number = value.as_number();
        let _ = expression.evaluate(|_| number);
        let text = value.text();
        let _ = template.render(&index, |_| Some(text.as_ref()));
        let _ = value.is_counter();
    }
});
