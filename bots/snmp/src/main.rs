fn main() {
    println!("snmpbot: not built yet");
}
