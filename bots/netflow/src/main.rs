fn main() {
    println!("netflowbot: not built yet");
}
