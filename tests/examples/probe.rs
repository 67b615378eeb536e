fn main() {
    let addr: std::net::SocketAddr = std::env::args().nth(1).unwrap().parse().unwrap();
    let mut c = integration_tests::Conn::connect(addr);
    let id = c.send(&wire::StatsRequest { shards: vec![] });
    match c.read_frame() {
        Some(f) => println!(
            "frame id {} flags {} len {}",
            f.header.correlation_id, f.header.flags, f.header.body_len
        ),
        None => println!("closed"),
    }
    let _ = id;
}
