fn main() {
    println!("pingbot: not built yet");
}
